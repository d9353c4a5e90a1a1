//! Bad request bodies on every JSON endpoint get 4xx JSON errors, never a 500 or plain text,
//! and leave stored data untouched.

use reqwest::{Method, StatusCode};

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_with};

/// (path, whether the request is sent with the seeded user's key)
const JSON_ENDPOINTS: [(&str, bool); 3] = [("/api/account/register", false), ("/api/account/login", false), ("/api/account/keys", true)];

fn request(app: &TestApp, path: &str, authed: bool) -> reqwest::RequestBuilder {
    if authed { app.api(Method::POST, path) } else { app.anon(Method::POST, path) }
}

async fn send_raw(app: &TestApp, path: &str, authed: bool, content_type: Option<&str>, body: impl Into<reqwest::Body>) -> reqwest::Response {
    let mut builder = request(app, path, authed).body(body);
    if let Some(content_type) = content_type {
        builder = builder.header("content-type", content_type);
    }
    builder.send().await.unwrap()
}

#[tokio::test]
async fn malformed_json_is_400_on_every_endpoint() {
    let app = spawn_app().await;
    for (path, authed) in JSON_ENDPOINTS {
        for body in ["{", "{\"email\": }", "not json", "[1,2", "\u{0}"] {
            let response = send_raw(&app, path, authed, Some("application/json"), body).await;
            assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
    }
}

#[tokio::test]
async fn missing_fields_and_wrong_types_are_400_naming_the_field() {
    let app = spawn_app().await;
    let cases: [(&str, bool, &str, &str); 8] = [
        ("/api/account/register", false, r#"{"password":"correct horse battery"}"#, "email"),
        ("/api/account/register", false, r#"{"email":"a@example.com"}"#, "password"),
        ("/api/account/register", false, r#"{"email":5,"password":"correct horse battery"}"#, "email"),
        ("/api/account/register", false, r#"{"email":"a@example.com","password":"correct horse battery","invite_code":[]}"#, "invite_code"),
        ("/api/account/login", false, r#"{"email":"seed@example.com"}"#, "password"),
        ("/api/account/login", false, r#"{"email":null,"password":"x"}"#, "email"),
        ("/api/account/keys", true, r#"{"name":42}"#, "name"),
        ("/api/account/keys", true, r#"{"expires_in_days":"soon"}"#, "expires_in_days"),
    ];
    for (path, authed, body, field) in cases {
        let response = send_raw(&app, path, authed, Some("application/json"), body).await;
        let error = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(error["message"].as_str().unwrap().contains(field), "{path} {body}: {error}");
    }
    for (path, authed) in JSON_ENDPOINTS {
        for body in ["[]", "\"text\"", "42", "null"] {
            let response = send_raw(&app, path, authed, Some("application/json"), body).await;
            assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app().await;
    let huge = format!(r#"{{"email":"a@example.com","password":"{}"}}"#, "p".repeat(200 * 1024));
    for (path, authed) in JSON_ENDPOINTS {
        let response = send_raw(&app, path, authed, Some("application/json"), huge.clone()).await;
        assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
}

#[tokio::test]
async fn bodies_that_are_not_json_are_415() {
    let app = spawn_app().await;
    for (path, authed) in JSON_ENDPOINTS {
        for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            let response = send_raw(&app, path, authed, content_type, r#"{"email":"a@example.com"}"#).await;
            assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        }
    }
}

/// JSON endpoints under an instance: the body is checked before the instance is looked up, so
/// an unknown instance id still shows the body errors.
const INSTANCE_JSON_ENDPOINTS: [&str; 6] = ["files/write", "files/upload", "files/mkdir", "files/rename", "files/delete", "terminal/exec"];

#[tokio::test]
async fn instance_endpoints_reject_bad_bodies_the_same_way() {
    let app = spawn_app().await;
    let id = app.ready_instance_row().await;
    let foreign = uuid::Uuid::new_v4();
    for endpoint in INSTANCE_JSON_ENDPOINTS {
        // Ownership is checked before the body is looked at.
        let response = send_raw(&app, &format!("/api/instances/{foreign}/{endpoint}"), true, Some("application/json"), "{").await;
        assert_error(response, StatusCode::NOT_FOUND, "instance_not_found").await;
        let path = format!("/api/instances/{id}/{endpoint}");
        for body in ["{", "[]", "null", r#"{"path": 5, "command": 5, "from": 5, "targetDir": 5}"#] {
            let response = send_raw(&app, &path, true, Some("application/json"), body).await;
            assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        }
        let response = send_raw(&app, &path, true, Some("text/plain"), "{}").await;
        assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
        let response = send_raw(&app, &path, true, Some("application/json"), "{}").await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    // Creating an instance takes an optional body: none is fine, a bad one is not.
    for body in ["{", "[]", r#"{"invite_code": 5}"#, r#"{"name": []}"#] {
        let response = send_raw(&app, "/api/instances", true, Some("application/json"), body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let response = send_raw(&app, "/api/instances", true, Some("text/plain"), "x").await;
    assert_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let response = send_raw(&app, "/api/instances", true, None, "").await;
    assert_error(response, StatusCode::FORBIDDEN, "subscription_required").await;
}

#[tokio::test]
async fn file_bodies_have_their_own_larger_limit() {
    let app = spawn_app_with(|s| s.instances.max_json_upload_bytes = 300 << 10).await;
    // A `ready` row without a container: the body is read, then the missing sandbox answers.
    let id = app.ready_instance_row().await;
    // Over the general JSON limit (64 KiB in tests) but within the upload limit: accepted as far
    // as the body goes.
    let fits = format!(r#"{{"path":"/workspace/x","content":"{}"}}"#, "a".repeat(200 << 10));
    let response = send_raw(&app, &format!("/api/instances/{id}/files/write"), true, Some("application/json"), fits.clone()).await;
    assert_error(response, StatusCode::CONFLICT, "instance_not_running").await;
    let response = send_raw(&app, &format!("/api/instances/{id}/terminal/exec"), true, Some("application/json"), fits).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let too_big = format!(r#"{{"path":"/workspace/x","content":"{}"}}"#, "a".repeat(600 << 10));
    let response = send_raw(&app, &format!("/api/instances/{id}/files/write"), true, Some("application/json"), too_big.clone()).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    // A JSON upload over the cap is told to use multipart.
    let upload = format!(r#"{{"targetDir":"/workspace","fileName":"x","content":"{}"}}"#, "a".repeat(600 << 10));
    let response = send_raw(&app, &format!("/api/instances/{id}/files/upload"), true, Some("application/json"), upload).await;
    let refused = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(refused["message"].as_str().unwrap().contains("multipart"), "{refused}");
    // Someone else's (or no) instance: refused before the body is read.
    let foreign = uuid::Uuid::new_v4();
    let response = send_raw(&app, &format!("/api/instances/{foreign}/files/write"), true, Some("application/json"), too_big).await;
    assert_error(response, StatusCode::NOT_FOUND, "instance_not_found").await;
}

#[tokio::test]
async fn bad_requests_change_nothing() {
    let app = spawn_app().await;
    let count = || async {
        sqlx::query_scalar::<_, i64>("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM api_keys)").fetch_one(&app.db).await.unwrap()
    };
    let before = count().await;
    for (path, authed) in JSON_ENDPOINTS {
        send_raw(&app, path, authed, Some("application/json"), "{").await;
        send_raw(&app, path, authed, Some("application/json"), r#"{"name":1,"email":2}"#).await;
    }
    assert_eq!(count().await, before);
}
