//! Scoped keys against the live server: every operation of the OpenAPI document, called with a
//! key of each scope, passes the scope check with exactly the scope it is documented for here
//! and answers 403 `insufficient_scope` (never a 2xx) to every other; a key bound to one
//! instance cannot touch another; a key cannot mint a broader key.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, json, ready_instance, spawn_app_with_docker};

const SCOPES: [&str; 9] = ["instances:read", "instances:write", "chat", "files:read", "files:write", "exec", "snapshots", "agent", "account"];

/// The scope a user would expect an operation to need, written out independently of the server's
/// table: by what the operation is about.
fn expected(method: &str, path: &str) -> &'static str {
    let rest = path.strip_prefix("/api/instances/{instanceId}").unwrap_or(path);
    let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    let read = method == "get";
    match first {
        _ if path.starts_with("/api/account") || path.starts_with("/api/orgs") => "account",
        "api" | "" if read => "instances:read",
        "api" | "" => "instances:write",
        "status" | "logs" | "usage" => "instances:read",
        "model" | "limits" if read => "instances:read",
        "model" | "limits" | "pause" | "resume" | "reboot" | "shutdown" | "start" | "upgrade" => "instances:write",
        "snapshots" | "restore" => "snapshots",
        "chat" => "chat",
        "files" if read => "files:read",
        "files" => "files:write",
        "terminal" | "vnc-url" | "vnc" => "exec",
        _ => "agent",
    }
}

async fn key(app: &TestApp, body: Value) -> String {
    let created = json(app.api(Method::POST, "/api/account/keys").json(&body).send().await.unwrap(), StatusCode::CREATED).await;
    created["key"].as_str().unwrap().to_owned()
}

/// Whether the answer is the scope check's refusal.
async fn refused(response: reqwest::Response) -> bool {
    if response.status() != StatusCode::FORBIDDEN {
        return false;
    }
    let body: Value = response.json().await.unwrap_or_default();
    body["error"] == "insufficient_scope"
}

#[tokio::test]
async fn every_operation_answers_only_inside_its_scope_and_bound_keys_stay_on_their_instance() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let spec: Value = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().json().await.unwrap();
    let mut keys = BTreeMap::new();
    for scope in SCOPES {
        keys.insert(scope, key(&app, json!({"name": scope, "scopes": [scope]})).await);
    }
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        // Public probes, websockets (their handshake is checked in `terminal`), and the call that
        // would delete the subject of the rest.
        if !path.starts_with("/api/")
            || path == "/api"
            || path.ends_with("/ws")
            || path.starts_with("/api/account/log")
            || path == "/api/account/register"
        {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) || operation.get("security") == Some(&json!([{}])) {
                continue;
            }
            if method == "delete" && path == "/api/instances/{instanceId}" {
                continue;
            }
            let want = expected(method, path);
            let filled = path
                .replace("{instanceId}", &id)
                .replace("{snapshotId}", &uuid::Uuid::new_v4().to_string())
                .replace("{id}", &uuid::Uuid::new_v4().to_string())
                .replace("{kind}", "telegram")
                .replace(['{', '}'], "");
            let url = app.url(&filled);
            // A key may only make keys within its own grant: ask for the `account` scope alone.
            let body = if path == "/api/account/keys" { json!({"scopes": ["account"]}) } else { json!({}) };
            for scope in SCOPES {
                let method_ = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                let mut request = client.request(method_, &url).bearer_auth(&keys[scope]).header("Accept", "application/json");
                if operation.get("requestBody").is_some() {
                    request = request.json(&body);
                }
                let outcome = match request.send().await {
                    // A slow answer (a wait on the gateway) is past the check: not refused.
                    Err(error) if error.is_timeout() => false,
                    Err(error) => panic!("{method} {path}: {error}"),
                    Ok(response) => {
                        assert!(
                            scope == want || !response.status().is_success(),
                            "{method} {path} answered {} to a `{scope}` key",
                            response.status()
                        );
                        refused(response).await
                    }
                };
                assert_eq!(outcome, scope != want, "{method} {path} with a `{scope}` key (it needs `{want}`)");
            }
            checked += 1;
        }
    }
    assert!(checked > 60, "only {checked} operations were checked");

    // Bound to one instance: that one only (a fresh one: the calls above stopped the first).
    let (fresh, _) = ready_instance(&app).await;
    let (id, other) = (fresh, id);
    let bound = key(&app, json!({"name": "bound", "scopes": ["instances:read", "exec"], "instance_id": id})).await;
    let mine = app.with_key(Method::GET, &format!("/api/instances/{id}"), &bound).send().await.unwrap();
    assert_eq!(mine.status(), StatusCode::OK);
    let theirs = app.with_key(Method::GET, &format!("/api/instances/{other}"), &bound).send().await.unwrap();
    let body = assert_error(theirs, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert!(body["message"].as_str().unwrap().contains(&id), "{body}");
    let exec =
        app.with_key(Method::POST, &format!("/api/instances/{other}/terminal/exec"), &bound).json(&json!({"command": "id"})).send().await.unwrap();
    assert_error(exec, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let list = app.with_key(Method::GET, "/api/instances", &bound).send().await.unwrap();
    assert_error(list, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let ran = app
        .with_key(Method::POST, &format!("/api/instances/{id}/terminal/exec"), &bound)
        .json(&json!({"command": "echo bound"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json(ran, StatusCode::OK).await["stdout"], "bound\n");

    // No key makes a broader one; a full one makes any; bad scopes and foreign instances refused.
    let account_only = key(&app, json!({"name": "keys", "scopes": ["account"]})).await;
    let broader = app.with_key(Method::POST, "/api/account/keys", &account_only).json(&json!({"scopes": ["exec"]})).send().await.unwrap();
    assert_error(broader, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let unscoped = app.with_key(Method::POST, "/api/account/keys", &account_only).json(&json!({"name": "all"})).send().await.unwrap();
    assert_error(unscoped, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let narrower = app.with_key(Method::POST, "/api/account/keys", &account_only).json(&json!({"scopes": ["account"]})).send().await.unwrap();
    assert_eq!(narrower.status(), StatusCode::CREATED);
    let unknown = app.api(Method::POST, "/api/account/keys").json(&json!({"scopes": ["root"]})).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let foreign = app.api(Method::POST, "/api/account/keys").json(&json!({"instance_id": uuid::Uuid::new_v4()})).send().await.unwrap();
    assert_error(foreign, StatusCode::NOT_FOUND, "instance_not_found").await;
    let past = app.api(Method::POST, "/api/account/keys").json(&json!({"expires_at": "2020-01-01T00:00:00Z"})).send().await.unwrap();
    assert_error(past, StatusCode::BAD_REQUEST, "invalid_request").await;
    // The audit log names the key behind an action (the matrix created an instance with the
    // `instances:write` key; the seeded user's own key made the ready ones).
    let audit = json(app.api(Method::GET, "/api/account/audit?limit=200").send().await.unwrap(), StatusCode::OK).await;
    let created: Vec<&Value> = audit["events"].as_array().unwrap().iter().filter(|e| e["action"] == "instance_created").collect();
    assert!(created.iter().any(|e| e["key_name"] == "instances:write" && e["key_id"].is_string()), "{audit}");
    let listed = json(app.api(Method::GET, "/api/account/keys").send().await.unwrap(), StatusCode::OK).await;
    let shown = listed.as_array().unwrap().iter().find(|k| k["name"] == "bound").unwrap().clone();
    assert_eq!((shown["scopes"].clone(), shown["instance_id"].as_str()), (json!(["instances:read", "exec"]), Some(id.as_str())));
    app.settle().await;
}
