//! The served spec equals the committed `openapi/` copies, documents every route with its
//! errors, and `/docs` serves Swagger UI from the binary.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{json, spawn_app};

const REGENERATE: &str = "regenerate with `cargo run -- openapi --out openapi`";

#[tokio::test]
async fn served_spec_equals_the_committed_copies() {
    let app = spawn_app().await;
    let served = json(app.anon(Method::GET, "/api/openapi.json").send().await.unwrap(), StatusCode::OK).await;
    let committed: Value = serde_json::from_str(include_str!("../../openapi/openapi.json")).unwrap();
    assert!(served == committed, "openapi/openapi.json is stale; {REGENERATE}");

    let response = app.anon(Method::GET, "/api/openapi.yaml").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"].to_str().unwrap().contains("yaml"));
    let yaml = response.text().await.unwrap();
    assert!(yaml == include_str!("../../openapi/openapi.yaml"), "openapi/openapi.yaml is stale; {REGENERATE}");
}

#[tokio::test]
async fn every_operation_is_documented_with_its_errors() {
    let spec = ocaas::router::openapi();
    let spec: Value = serde_json::to_value(&spec).unwrap();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let public = ["/api", "/healthz", "/readyz", "/api/account/register", "/api/account/login"];
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.contains_key("/api/account/keys/{id}"));
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let what = format!("{method} {path}");
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what} has no summary");
            assert!(op["description"].as_str().is_some_and(|s| !s.is_empty()), "{what} has no description");
            let responses = op["responses"].as_object().unwrap();
            if !public.contains(&path.as_str()) {
                assert!(responses.contains_key("401"), "{what} must document 401");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    assert_eq!(schema, "#/components/schemas/ErrorBody", "{what} {status}");
                }
            }
        }
    }
}

#[tokio::test]
async fn docs_serve_swagger_ui_from_the_binary_pointing_at_our_spec() {
    let app = spawn_app().await;
    let page = app.anon(Method::GET, "/docs/").send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    for attr in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
        assert!(!html.contains(attr), "the docs page must load nothing from other hosts: {attr}");
    }
    let init = app.anon(Method::GET, "/docs/swagger-initializer.js").send().await.unwrap().text().await.unwrap();
    assert!(init.contains("/api/openapi.json"), "{init}");
    assert!(init.contains("\"validatorUrl\": \"none\""), "no online validator: {init}");
    let bundle = app.anon(Method::GET, "/docs/swagger-ui-bundle.js").send().await.unwrap();
    assert_eq!(bundle.status(), StatusCode::OK);
    assert!(bundle.bytes().await.unwrap().len() > 100_000);
}

/// Whether a schema (inline or by reference) carries an example.
fn schema_has_example(spec: &Value, schema: &Value) -> bool {
    if schema.get("example").is_some() || schema.get("examples").is_some() {
        return true;
    }
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.rsplit('/').next().unwrap();
        return spec["components"]["schemas"][name].get("example").is_some();
    }
    schema.get("items").is_some_and(|items| schema_has_example(spec, items))
}

#[test]
fn every_operation_has_an_example_and_websockets_are_described() {
    let spec: Value = serde_json::to_value(ocaas::router::openapi()).unwrap();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut media: Vec<&Value> = op["requestBody"]["content"].as_object().map(|c| c.values().collect()).unwrap_or_default();
            for response in op["responses"].as_object().unwrap().values() {
                media.extend(response["content"].as_object().map(|c| c.values().collect::<Vec<_>>()).unwrap_or_default());
            }
            let example = media.iter().any(|m| m.get("example").is_some() || schema_has_example(&spec, &m["schema"]));
            assert!(example, "{method} {path} has no example");
        }
    }
    for path in ["/api/instances/{instanceId}/terminal/ws", "/api/instances/{instanceId}/vnc/ws"] {
        let op = &spec["paths"][path]["get"];
        assert!(op["x-websocket"].is_object(), "{path} describes its frames");
        assert!(op["responses"]["101"].is_object(), "{path} documents the upgrade");
    }
}

/// An independent validator (`openapi-spec-validator`, from PyPI; `.ci/run` installs it)
/// accepts the document the server serves: parameters in their right place, unique operation
/// ids, resolvable references. A missing validator fails the test.
#[tokio::test]
async fn the_served_document_passes_an_independent_validator() {
    let app = spawn_app().await;
    let served = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().text().await.unwrap();
    let path = std::env::temp_dir().join(format!("ocaas-openapi-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, served).unwrap();
    let output = std::process::Command::new("python3").args(["-m", "openapi_spec_validator"]).arg(&path).output().expect("running python3");
    let _ = std::fs::remove_file(&path);
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success(),
        "openapi-spec-validator rejects the served document (install it with `pip install openapi-spec-validator`):\n{text}"
    );
    assert!(text.contains("OK"), "{text}");
}

#[tokio::test]
async fn api_root_answers_with_and_without_a_trailing_slash() {
    let app = spawn_app().await;
    let plain = json(app.anon(Method::GET, "/api").send().await.unwrap(), StatusCode::OK).await;
    let slash = json(app.anon(Method::GET, "/api/").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(plain, slash);
}

#[test]
fn every_type_a_download_is_sent_with_is_documented() {
    let spec = serde_json::to_value(ocaas::router::openapi()).unwrap();
    let content = &spec["paths"]["/api/instances/{instanceId}/files/download"]["get"]["responses"]["200"]["content"];
    for name in
        ["a.txt", "a.log", "a.csv", "a.md", "a.html", "a.json", "a.png", "a.jpg", "a.gif", "a.svg", "a.pdf", "a.zip", "a.tgz", "a.bin", "noext"]
    {
        let sent = ocaas::files::handlers::content_type(name);
        assert!(content.get(sent).is_some(), "{name} is sent as {sent}, which the document does not list: {content}");
    }
}
