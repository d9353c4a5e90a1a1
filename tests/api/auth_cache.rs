//! Authenticated requests are served from an in-process credential cache; a revocation made
//! through one server process (or the admin command) reaches every other at once through the
//! database's notifications. Stated bound: a revoked key or ended session is refused by another
//! server process within 1 s (in practice a few milliseconds).

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::helpers::{json, serve_process, spawn_app};

const BOUND: Duration = Duration::from_secs(1);

/// Polls `url` with `auth` until it answers 401; returns how long that took.
async fn until_refused(request: impl Fn() -> reqwest::RequestBuilder) -> Duration {
    let started = Instant::now();
    loop {
        if request().send().await.unwrap().status() == StatusCode::UNAUTHORIZED {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(35), "still accepted 35 s after the revocation");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_revoked_key_and_an_ended_session_are_refused_by_another_server_process_within_a_second() {
    let app = spawn_app().await;
    let data_dir = std::env::temp_dir().join(format!("ocaas-auth-cache-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let other = serve_process(&app.database_url, &data_dir, "ocaas-sandbox:not-needed").ready().await;
    let other_url = |path: &str| format!("http://127.0.0.1:{}{path}", other.port);
    let client = reqwest::Client::new();

    let created =
        json(app.api(Method::POST, "/api/account/keys").json(&serde_json::json!({"name": "short-lived"})).send().await.unwrap(), StatusCode::CREATED)
            .await;
    let (key, key_id) = (created["key"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
    // Used on the other process: now cached there.
    for _ in 0..3 {
        assert_eq!(client.get(other_url("/api/instances")).bearer_auth(&key).send().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(app.api(Method::DELETE, &format!("/api/account/keys/{key_id}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let took = until_refused(|| client.get(other_url("/api/instances")).bearer_auth(&key)).await;
    assert!(took < BOUND, "the revoked key was accepted for {took:?} by the other process");

    // A browser session ended on this process is ended on the other one too.
    let (cookie, csrf) = app.login().await;
    assert_eq!(client.get(other_url("/api/account")).header("cookie", &cookie).send().await.unwrap().status(), StatusCode::OK);
    let logout = app.anon(Method::POST, "/api/account/logout").header("cookie", &cookie).header("x-csrf-token", &csrf).send().await.unwrap();
    assert!(logout.status().is_success(), "{}", logout.status());
    let took = until_refused(|| client.get(other_url("/api/account")).header("cookie", &cookie)).await;
    assert!(took < BOUND, "the ended session was accepted for {took:?} by the other process");
    drop(other);
    let _ = std::fs::remove_dir_all(&data_dir);
}
