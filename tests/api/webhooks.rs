//! Outbound webhooks against a receiver that verifies every delivery with the official Standard
//! Webhooks library (`standardwebhooks` on PyPI, `tests/fixtures/webhook_receiver.py`): every
//! kind of event arrives signed and as the document describes it; a rotated secret overlaps;
//! a receiver down for 30 s gets every event afterwards, across a kill and restart of the server;
//! private and redirecting receivers are refused.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{ChildGuard, TestApp, assert_error, json, ready_instance, serve_process_with, spawn_app_with, spawn_app_with_docker};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The receiver on `port`, logging to `dir/log`, verifying with `secrets`; killed when dropped.
async fn receiver(port: u16, dir: &Path, secrets: &[&str], redirect: Option<&str>) -> ChildGuard {
    std::fs::create_dir_all(dir).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/webhook_receiver.py");
    let mut command = std::process::Command::new("python3");
    command.arg(script).arg(port.to_string()).arg(dir.join("log")).args(secrets);
    if let Some(url) = redirect {
        command.args(["--redirect", url]);
    }
    let child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "the receiver did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The folder outlives a restart of the receiver: the guard removes nothing of it.
    ChildGuard(child, dir.join("none"))
}

fn received(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Waits up to `within` until the log holds an entry of each of `types`; the log.
async fn until_received(dir: &Path, types: &[&str], within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let log = received(dir);
        if types.iter().all(|t| log.iter().any(|e| e["payload"]["type"] == *t)) {
            return log;
        }
        let seen: Vec<_> = log.iter().map(|e| e["payload"]["type"].clone()).collect();
        assert!(Instant::now() < deadline, "not all of {types:?} arrived within {within:?}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn scratch() -> PathBuf {
    std::env::temp_dir().join(format!("ocaas-webhooks-{}", uuid::Uuid::new_v4().simple()))
}

async fn endpoint(app: &TestApp, url: &str, events: Option<Value>) -> (String, String) {
    let mut body = json!({"url": url, "description": "test receiver"});
    if let Some(events) = events {
        body["events"] = events;
    }
    let created = json(app.api(Method::POST, "/api/account/webhooks").json(&body).send().await.unwrap(), StatusCode::CREATED).await;
    (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn every_event_arrives_signed_and_as_documented() {
    crate::helpers::python_package("standardwebhooks");
    let provider = crate::broker::scripted_provider().await;
    let llm = provider.url.clone();
    let app = spawn_app_with_docker(move |s| {
        s.webhook_allow_private = true;
        s.instances.model_allow_private = true;
        s.instances.llm.base_url = llm;
        s.instances.llm.api_key = crate::broker::OPERATOR_KEY.to_owned().into();
        s.instances.llm.model = crate::broker::MODEL.to_owned();
        s.idle.pause_after = Duration::from_secs(12);
        s.idle.check_interval = Duration::from_millis(500);
    })
    .await;
    let (port, dir) = (free_port(), scratch());
    let (hook, secret) = endpoint(&app, &format!("http://127.0.0.1:{port}/hook"), None).await;
    let mut listening = receiver(port, &dir, &[&secret], None).await;

    let (id, _) = ready_instance(&app).await;
    let limit = app.api(Method::PUT, &format!("/api/instances/{id}/limits")).json(&json!({"monthly_token_limit": 20})).send().await.unwrap();
    assert_eq!(limit.status(), StatusCode::OK);
    let turn = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/exec echo hooked"})).send().await.unwrap();
    let message_id = json(turn, StatusCode::OK).await["assistant_message"]["id"].as_str().unwrap().to_owned();
    // 17 of 20 tokens: past 80 %.
    let llm_turn = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/llm count me"})).send().await.unwrap();
    assert_eq!(llm_turn.status(), StatusCode::OK);
    let snapshot = app.api(Method::POST, &format!("/api/instances/{id}/snapshots")).json(&json!({"name": "hooked"})).send().await.unwrap();
    assert_eq!(snapshot.status(), StatusCode::CREATED);

    let all = ["instance.status_changed", "chat.tool.completed", "chat.message.completed", "usage.threshold", "snapshot.ready", "instance.idle"];
    let log = until_received(&dir, &all, Duration::from_secs(90)).await;
    assert!(log.iter().all(|e| e["verified_with"] == json!([0])), "every delivery verifies: {log:?}");
    let spec: Value = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().json().await.unwrap();
    let payloads: Vec<Value> = log.iter().map(|e| e["payload"].clone()).collect();
    crate::conformance::values_match(&spec, "#/components/schemas/WebhookEvent", &payloads).unwrap();
    let of = |kind: &str| payloads.iter().filter(|p| p["type"] == kind).map(|p| p["data"].clone()).collect::<Vec<_>>();
    assert!(of("instance.status_changed").iter().any(|d| d["instance_id"] == id.as_str() && d["status"] == "ready"), "{payloads:?}");
    let tool = &of("chat.tool.completed")[0];
    assert_eq!(
        (tool["message_id"].as_str(), tool["name"].as_str(), tool["status"].as_str()),
        (Some(message_id.as_str()), Some("exec"), Some("completed"))
    );
    let done = of("chat.message.completed");
    assert!(done.iter().any(|d| d["message_id"] == message_id.as_str() && d["content"].as_str().unwrap().contains("hooked")), "{done:?}");
    let usage = &of("usage.threshold")[0];
    assert_eq!((usage["subject"].as_str(), usage["used_tokens"].as_i64(), usage["limit_tokens"].as_i64()), (Some("instance"), Some(17), Some(20)));
    assert_eq!(of("snapshot.ready")[0]["name"], "hooked");
    assert_eq!(of("instance.idle")[0]["status"], "paused");
    // Each event once here (no retries were needed): the ids are distinct.
    let mut ids: Vec<_> = log.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), log.len());

    // The delivery log says what the receiver answered.
    let deliveries = json(app.api(Method::GET, &format!("/api/account/webhooks/{hook}/deliveries")).send().await.unwrap(), StatusCode::OK).await;
    let delivered = deliveries.as_array().unwrap().iter().filter(|d| d["status"] == "delivered").count();
    assert!(delivered >= all.len(), "{deliveries}");
    assert!(
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["status"] == "delivered")
            .all(|d| d["log"].as_array().unwrap().last().unwrap()["status_code"] == 204)
    );

    // Rotation: for the overlap both secrets sign each delivery.
    let rotated = json(app.api(Method::POST, &format!("/api/account/webhooks/{hook}/rotate-secret")).send().await.unwrap(), StatusCode::OK).await;
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, secret);
    assert!(rotated["previous_secret_until"].is_string());
    drop(listening);
    std::fs::remove_file(dir.join("log")).unwrap();
    listening = receiver(port, &dir, &[&secret, &new_secret], None).await;
    let test = app.api(Method::POST, &format!("/api/account/webhooks/{hook}/test")).send().await.unwrap();
    assert_eq!(test.status(), StatusCode::ACCEPTED);
    let log = until_received(&dir, &["webhook.test"], Duration::from_secs(20)).await;
    let entry = log.iter().find(|e| e["payload"]["type"] == "webhook.test").unwrap();
    assert_eq!(entry["verified_with"], json!([0, 1]), "old and new secret both verify: {entry}");
    assert_eq!(entry["headers"]["webhook-signature"].as_str().unwrap().split(' ').count(), 2);
    drop(listening);
    let _ = std::fs::remove_dir_all(&dir);
    app.settle().await;
}

#[tokio::test]
async fn a_receiver_down_for_30_s_gets_every_event_across_a_server_restart() {
    crate::helpers::python_package("standardwebhooks");
    let (db, database_url) = crate::helpers::fresh_database().await;
    let user = ocaas::auth::service::create_user(&db, "hooks@example.com", "a long passphrase", None).await.unwrap();
    let key = ocaas::auth::service::create_api_key(&db, user.id, Some("k"), None).await.unwrap().key;
    let secret_key = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let env = [("OCAAS_WEBHOOK_ALLOW_PRIVATE", "true"), ("OCAAS_SECRET_KEY", secret_key.as_str())];
    let (data_a, data_b, dir) = (scratch(), scratch(), scratch());
    let server = |data: &Path| serve_process_with(&database_url, data, "ocaas-sandbox:not-needed", &env);
    let first = server(&data_a).ready().await;
    let client = reqwest::Client::new();
    let api = |port: u16, method: Method, path: &str| client.request(method, format!("http://127.0.0.1:{port}{path}")).bearer_auth(&key);

    let port = free_port();
    let created =
        api(first.port, Method::POST, "/api/account/webhooks").json(&json!({"url": format!("http://127.0.0.1:{port}/")})).send().await.unwrap();
    let created = json(created, StatusCode::CREATED).await;
    let (hook, secret) = (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned());
    let down_since = Instant::now();
    for _ in 0..5 {
        let queued = api(first.port, Method::POST, &format!("/api/account/webhooks/{hook}/test")).send().await.unwrap();
        assert_eq!(queued.status(), StatusCode::ACCEPTED);
    }
    // Each tried and failed twice (the receiver is down), then the server is killed mid-retry.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_deliveries WHERE attempts >= 2").fetch_one(&db).await.unwrap() < 5 {
        assert!(Instant::now() < deadline, "the deliveries were not retried");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(first);
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(down_since.elapsed())).await;
    let _listening = receiver(port, &dir, &[&secret], None).await;
    let second = server(&data_b).ready().await;

    let deadline = Instant::now() + Duration::from_secs(90);
    let log = loop {
        let log = received(&dir);
        let mut ids: Vec<_> = log.iter().filter_map(|e| e["id"].as_str()).collect();
        ids.sort();
        ids.dedup();
        if ids.len() == 5 {
            break log;
        }
        assert!(Instant::now() < deadline, "{} of 5 events arrived after the outage: {log:?}", ids.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(log.iter().all(|e| e["verified_with"] == json!([0])), "{log:?}");
    let deliveries = api(second.port, Method::GET, &format!("/api/account/webhooks/{hook}/deliveries")).send().await.unwrap();
    let deliveries = json(deliveries, StatusCode::OK).await;
    for delivery in deliveries.as_array().unwrap() {
        assert_eq!(delivery["status"], "delivered", "{delivery}");
        let attempts = delivery["log"].as_array().unwrap();
        assert!(attempts.len() >= 3, "failed while down, then delivered: {delivery}");
        assert!(attempts[0]["status_code"].is_null() && attempts[0]["error"].as_str().unwrap().contains("could not be reached"), "{delivery}");
        assert_eq!(attempts.last().unwrap()["status_code"], 204);
    }
    drop(second);
    for folder in [data_a, data_b, dir] {
        let _ = std::fs::remove_dir_all(folder);
    }
}

#[tokio::test]
async fn private_and_redirecting_receivers_are_refused() {
    crate::helpers::python_package("standardwebhooks");
    let strict = crate::helpers::spawn_app().await;
    for url in [
        "http://127.0.0.1:9/",
        "http://localhost:9/",
        "https://10.1.2.3/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
        "ftp://93.184.216.34/",
        "nope",
    ] {
        let refused = strict.api(Method::POST, "/api/account/webhooks").json(&json!({"url": url})).send().await.unwrap();
        let body = assert_error(refused, StatusCode::BAD_REQUEST, "invalid_request").await;
        assert!(body["message"].as_str().unwrap().contains("`url`"), "{url}: {body}");
    }
    let none = strict.api(Method::POST, "/api/account/webhooks").json(&json!({"url": "https://93.184.216.34/", "events": []})).send().await.unwrap();
    assert_error(none, StatusCode::BAD_REQUEST, "invalid_request").await;
    let listed = json(strict.api(Method::GET, "/api/account/webhooks").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed, json!([]), "nothing was stored");

    // Allowed private receivers, but one that redirects: its redirect is never followed.
    let app = spawn_app_with(|s| s.webhook_allow_private = true).await;
    let (target_port, redirect_port, target_dir, redirect_dir) = (free_port(), free_port(), scratch(), scratch());
    let _target = receiver(target_port, &target_dir, &["whsec_AAAA"], None).await;
    let (hook, secret) = endpoint(&app, &format!("http://127.0.0.1:{redirect_port}/"), Some(json!(["snapshot.ready"]))).await;
    let target = format!("http://127.0.0.1:{target_port}/stolen");
    let _redirecting = receiver(redirect_port, &redirect_dir, &[&secret], Some(&target)).await;
    assert_eq!(app.api(Method::POST, &format!("/api/account/webhooks/{hook}/test")).send().await.unwrap().status(), StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivery = loop {
        let list = json(app.api(Method::GET, &format!("/api/account/webhooks/{hook}/deliveries")).send().await.unwrap(), StatusCode::OK).await;
        if list[0]["attempts"].as_i64() >= Some(1) && !list[0]["log"].as_array().unwrap().is_empty() {
            break list[0].clone();
        }
        assert!(Instant::now() < deadline, "no attempt: {list}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!((delivery["status"].as_str(), delivery["last_status_code"].as_i64()), (Some("pending"), Some(302)), "{delivery}");
    assert!(delivery["last_error"].as_str().unwrap().contains("redirect"), "{delivery}");
    assert_eq!(received(&redirect_dir).len(), 1);
    assert!(received(&target_dir).is_empty(), "the redirect's target got nothing");
    for folder in [target_dir, redirect_dir] {
        let _ = std::fs::remove_dir_all(folder);
    }
}

#[tokio::test]
async fn webhook_endpoints_are_each_accounts_own() {
    let app = crate::helpers::spawn_app_with(|s| s.webhook_allow_private = true).await;
    let (hook, _) = endpoint(&app, "http://127.0.0.1:9/", None).await;
    let other = ocaas::auth::service::create_user(&app.db, "other@example.com", "a long passphrase", None).await.unwrap();
    let other_key = ocaas::auth::service::create_api_key(&app.db, other.id, Some("k"), None).await.unwrap().key;
    for (method, path) in [
        (Method::GET, format!("/api/account/webhooks/{hook}")),
        (Method::PATCH, format!("/api/account/webhooks/{hook}")),
        (Method::DELETE, format!("/api/account/webhooks/{hook}")),
        (Method::POST, format!("/api/account/webhooks/{hook}/test")),
        (Method::GET, format!("/api/account/webhooks/{hook}/deliveries")),
        (Method::POST, format!("/api/account/webhooks/{hook}/rotate-secret")),
    ] {
        let response = app.with_key(method.clone(), &path, &other_key).json(&json!({"disabled": true})).send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "webhook_not_found").await;
    }
    let listed = json(app.with_key(Method::GET, "/api/account/webhooks", &other_key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed, json!([]));
    // A key subscribes only to what it could read: chat events need `chat`.
    let scoped = app.api(Method::POST, "/api/account/keys").json(&json!({"name": "hooks", "scopes": ["account"]})).send().await.unwrap();
    let scoped = json(scoped, StatusCode::CREATED).await["key"].as_str().unwrap().to_owned();
    let chat_hook = app
        .with_key(Method::POST, "/api/account/webhooks", &scoped)
        .json(&json!({"url": "http://127.0.0.1:9/", "events": ["chat.message.completed"]}));
    let refused = assert_error(chat_hook.send().await.unwrap(), StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert!(refused["message"].as_str().unwrap().contains("`chat`"), "{refused}");
    let changed = app
        .api(Method::PATCH, &format!("/api/account/webhooks/{hook}"))
        .json(&json!({"disabled": true, "events": ["snapshot.failed"]}))
        .send()
        .await
        .unwrap();
    let changed = json(changed, StatusCode::OK).await;
    assert_eq!((changed["disabled"].as_bool(), changed["events"].clone()), (Some(true), json!(["snapshot.failed"])));
    assert!(changed.get("secret").is_none(), "the secret is shown only on creation and rotation");
    assert_eq!(app.api(Method::DELETE, &format!("/api/account/webhooks/{hook}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
}

/// The Webhooks card in Chromium: an endpoint added on the page, its secret shown once, a test
/// send verified by the receiver with that secret, the delivery log with the receiver's answer.
#[tokio::test]
async fn the_dashboard_adds_an_endpoint_sends_a_test_and_shows_the_receivers_answer() {
    crate::helpers::python_package("standardwebhooks");
    let app = spawn_app_with(|s| s.webhook_allow_private = true).await;
    let browser = crate::dashboard::signed_in(&app).await;
    browser.wait_for("return document.getElementById('mcp-url').textContent.endsWith('/mcp')", 20).await;
    let (port, dir) = (free_port(), scratch());
    browser.fill("#webhook-url", &format!("http://127.0.0.1:{port}/from-the-page")).await;
    browser.click("#webhook-events input[value='usage.threshold']").await;
    browser.click("#webhook-add").await;
    let secret = browser.wait_for("return document.getElementById('webhook-secret-value').textContent", 20).await;
    let secret = secret.as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let _listening = receiver(port, &dir, &[&secret], None).await;
    let events = browser.wait_for("const c = document.querySelector('#webhooks td.scopes'); return c && c.textContent", 20).await;
    assert!(!events.as_str().unwrap().contains("usage.threshold") && events.as_str().unwrap().contains("snapshot.ready"), "{events}");

    browser.click("#webhooks button.test").await;
    until_received(&dir, &["webhook.test"], Duration::from_secs(20)).await;
    assert_eq!(received(&dir)[0]["verified_with"], json!([0]), "the secret the page showed verifies the delivery");
    browser.click("#webhooks button.deliveries").await;
    let answer = browser
        .wait_for("const a = document.querySelector('#webhook-deliveries td.answer'); return a && a.textContent === 'HTTP 204' && a.textContent", 20)
        .await;
    assert_eq!(answer, "HTTP 204");
    browser.screenshot(&crate::webdriver::artifact("dashboard-14-webhooks.png")).await;

    browser.eval("window.confirm = () => true; return true").await;
    browser.click("#webhooks button.delete").await;
    browser.wait_for("return document.querySelectorAll('#webhooks tr').length === 0", 20).await;
    let listed = json(app.api(Method::GET, "/api/account/webhooks").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed, json!([]));
    let _ = std::fs::remove_dir_all(&dir);
}
