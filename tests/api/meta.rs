//! `GET /api`, health, request ids and the JSON fallbacks.

use reqwest::{Method, StatusCode};

use crate::helpers::{assert_error, json, spawn_app, spawn_app_with};

const RESOURCES: [&str; 12] = [
    "/api/instances",
    "/api/instances/{instanceId}",
    "/api/instances/{instanceId}/chat",
    "/api/instances/{instanceId}/chat/stream",
    "/api/instances/{instanceId}/chat/events",
    "/api/instances/{instanceId}/chat/messages",
    "/api/instances/{instanceId}/files",
    "/api/instances/{instanceId}/files/read",
    "/api/instances/{instanceId}/files/write",
    "/api/instances/{instanceId}/terminal/exec",
    "/api/instances/{instanceId}/terminal/ws",
    "/api/instances/{instanceId}/vnc/ws",
];

#[tokio::test]
async fn api_root_lists_the_reference_resources_and_absolute_links() {
    let app = spawn_app().await;
    let response = app.anon(Method::GET, "/api").header("host", "ocaas.test:9000").send().await.unwrap();
    let body = json(response, StatusCode::OK).await;
    assert_eq!(body["name"], "ocaas");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let resources: Vec<&str> = body["resources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(resources, RESOURCES);
    assert_eq!(body["auth"]["type"], "bearer");
    assert_eq!(body["auth"]["keys_url"], "http://ocaas.test:9000/account");
    assert_eq!(body["links"]["docs"], "http://ocaas.test:9000/docs");
    assert_eq!(body["links"]["openapi_json"], "http://ocaas.test:9000/api/openapi.json");
    assert_eq!(body["links"]["openapi_yaml"], "http://ocaas.test:9000/api/openapi.yaml");
    assert_eq!(body["links"]["llms_txt"], "http://ocaas.test:9000/llms.txt");
}

#[tokio::test]
async fn public_url_wins_over_host_and_forwarded_headers_need_trust() {
    let app = spawn_app_with(|s| s.public_url = Some("https://ocaas.example.com".into())).await;
    let body = json(app.anon(Method::GET, "/api").header("host", "evil.test").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(body["links"]["docs"], "https://ocaas.example.com/docs");

    let untrusted = spawn_app().await;
    let response = untrusted
        .anon(Method::GET, "/api")
        .header("host", "inner:8080")
        .header("x-forwarded-host", "evil.test")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(json(response, StatusCode::OK).await["api_root"], "http://inner:8080/api");

    let trusted = spawn_app_with(|s| s.trust_proxy = true).await;
    let response = trusted
        .anon(Method::GET, "/api")
        .header("host", "inner:8080")
        .header("x-forwarded-host", "ocaas.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert_eq!(json(response, StatusCode::OK).await["api_root"], "https://ocaas.example.org/api");
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let health = json(app.anon(Method::GET, "/healthz").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(health["status"], "ok");
    let ready = json(app.anon(Method::GET, "/readyz").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(ready["database"], "ok");
}

#[tokio::test]
async fn readiness_fails_with_503_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.db.close().await;
    let response = app.anon(Method::GET, "/readyz").send().await.unwrap();
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "not_ready").await;
    // Any request that needs the database says so honestly: 503 with a retry hint, not a 500.
    let response = app.api(Method::GET, "/api/instances").send().await.unwrap();
    assert_eq!(response.headers()["retry-after"], "5");
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "database_unavailable").await;
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    let app = spawn_app().await;
    let response = app.anon(Method::GET, "/healthz").send().await.unwrap();
    let generated = response.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 36, "a UUID: {generated}");
    let response = app.anon(Method::GET, "/healthz").header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    assert_error(app.anon(Method::GET, "/api/nope").send().await.unwrap(), StatusCode::NOT_FOUND, "not_found").await;
    let response = app.anon(Method::PUT, "/api/account/login").send().await.unwrap();
    assert_error(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}
