//! The server's own seams against one hostile client: request bodies that never finish,
//! many requests in flight from one address or one user, sessions without end. Loopback only,
//! bounded in count and time.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app_with};

/// Opens a connection and sends a request head promising a body it never sends in full.
async fn stall(app: &TestApp, path: &str, key: Option<&str>) -> TcpStream {
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{\"na");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Reads what the server answers on a stalled connection until it closes it (or `until`);
/// the status code and body, or `None` if it was still open at `until`.
async fn answer(stream: &mut TcpStream, until: Instant) -> Option<(u16, String)> {
    let mut raw = Vec::new();
    let read = tokio::time::timeout_at(until.into(), stream.read_to_end(&mut raw)).await;
    if read.is_err() {
        return None;
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Some((status, text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned()))
}

#[tokio::test]
async fn eleven_hundred_stalled_bodies_from_one_address_leave_the_server_answering_and_are_closed_within_a_minute() {
    let app = spawn_app_with(|s| s.limits.body_timeout = Duration::from_secs(5)).await;
    let mut stalled = Vec::new();
    for _ in 0..1100 {
        stalled.push(stall(&app, "/api/account/login", None).await);
    }
    // Meanwhile probes and an authenticated user are served.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let health = app.anon(Method::GET, "/healthz").send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK, "/healthz while 1,100 bodies stall");
    let read = app.api(Method::GET, "/api/instances").send().await.unwrap();
    assert_eq!(read.status(), StatusCode::OK, "an authenticated read while 1,100 bodies stall");

    let until = Instant::now() + Duration::from_secs(60);
    let (mut refused, mut timed_out, mut other) = (0, 0, Vec::new());
    for stream in &mut stalled {
        match answer(stream, until).await {
            Some((429, body)) if body.contains("too_many_in_flight") => refused += 1,
            Some((408, body)) if body.contains("\"error\":\"body_too_slow\"") => timed_out += 1,
            answered => other.push(answered),
        }
    }
    println!("1,100 stalled bodies: {refused} refused at once, {timed_out} cut after the grace period");
    assert!(other.is_empty(), "{} connections ended otherwise or were still open after a minute: {:?}", other.len(), &other[..other.len().min(3)]);
    assert_eq!(timed_out, 32, "OCAAS_ADDR_MAX_INFLIGHT bodies were waited for, the rest refused");
}

#[tokio::test]
async fn one_user_cannot_hold_more_requests_than_its_cap_and_others_are_not_affected() {
    let app = spawn_app_with(|s| {
        s.user_limits.request = 4;
        s.limits.body_timeout = Duration::from_secs(3);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(stall(&app, "/api/account/keys", Some(&app.user.key)).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let over = app.api(Method::POST, "/api/account/keys").json(&serde_json::json!({"name": "fifth"})).send().await.unwrap();
    crate::helpers::assert_error(over, StatusCode::TOO_MANY_REQUESTS, "too_many_in_flight").await;
    let stranger = ocaas::auth::service::create_user(&app.db, "stranger@example.com", crate::helpers::PASSWORD, None).await.unwrap();
    let other = ocaas::auth::service::create_api_key(&app.db, stranger.id, None, None).await.unwrap().key;
    assert_eq!(app.with_key(Method::GET, "/api/account", &other).send().await.unwrap().status(), StatusCode::OK);
    // The stalled ones are cut after the grace period, and the user's slots come back.
    let until = Instant::now() + Duration::from_secs(30);
    for stream in &mut held {
        assert_eq!(answer(stream, until).await.map(|a| a.0), Some(408));
    }
    assert_eq!(app.api(Method::GET, "/api/account").send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn an_instance_has_at_most_a_thousand_chat_sessions() {
    let app = crate::helpers::spawn_app().await;
    let instance = app.ready_instance_row().await;
    sqlx::query("INSERT INTO chat_sessions (id, instance_id) SELECT gen_random_uuid(), $1 FROM generate_series(1, 999)")
        .bind(instance)
        .execute(&app.db)
        .await
        .unwrap();
    let path = format!("/api/instances/{instance}/chat/sessions");
    let last = app.api(Method::POST, &path).json(&serde_json::json!({"title": "the thousandth"})).send().await.unwrap();
    assert_eq!(last.status(), StatusCode::CREATED);
    let over = app.api(Method::POST, &path).json(&serde_json::json!({})).send().await.unwrap();
    crate::helpers::assert_error(over, StatusCode::CONFLICT, "session_limit_reached").await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_sessions WHERE instance_id = $1").bind(instance).fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1000);
}
