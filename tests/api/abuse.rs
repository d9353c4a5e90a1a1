//! Abuse resistance: what strangers can do to the server without an account — password
//! guessing is throttled per address and per account, and a flood of sign-ins cannot grow
//! the server's memory (hashing is bounded).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{ChildGuard, TestApp, assert_error, fresh_database, spawn_app_with};

async fn login(app: &TestApp, email: &str, forwarded_for: &str) -> reqwest::Response {
    let body = json!({"email": email, "password": "a wrong password"});
    app.anon(Method::POST, "/api/account/login").header("X-Forwarded-For", forwarded_for).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn password_guessing_is_throttled_per_address_and_per_account() {
    let app = spawn_app_with(|s| {
        s.trust_proxy = true;
        s.auth_per_minute_per_addr = std::num::NonZeroU32::new(5).unwrap();
        s.login_per_minute_per_account = std::num::NonZeroU32::new(3).unwrap();
    })
    .await;
    for _ in 0..3 {
        assert_eq!(login(&app, &app.user.email, "198.51.100.1").await.status(), StatusCode::UNAUTHORIZED);
    }
    // The account is locked for guessing from any address; even the right password waits.
    let refused = login(&app, &app.user.email, "198.51.100.2").await;
    let retry: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_error(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let right = app.anon(Method::POST, "/api/account/login").header("X-Forwarded-For", "198.51.100.3");
    let right = right.json(&json!({"email": app.user.email, "password": crate::helpers::PASSWORD})).send().await.unwrap();
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);

    // One address spraying many accounts is stopped by its own limit (5 a minute).
    for n in 0..5 {
        let status = login(&app, &format!("spray{n}@example.com"), "203.0.113.50").await.status();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {n}");
    }
    assert_error(login(&app, "spray9@example.com", "203.0.113.50").await, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    let register = app
        .anon(Method::POST, "/api/account/register")
        .header("X-Forwarded-For", "203.0.113.50")
        .json(&json!({"email": "new@example.com", "password": "a long passphrase", "invite_code": "MADE-UP"}))
        .send()
        .await
        .unwrap();
    assert_error(register, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Other addresses and accounts are unaffected.
    assert_eq!(login(&app, "someone@example.com", "203.0.113.51").await.status(), StatusCode::UNAUTHORIZED);
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
}

#[tokio::test]
async fn a_sign_in_flood_does_not_grow_the_server() {
    let (_pool, database_url) = fresh_database().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("ocaas-flood-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // A real server process (its memory is what is measured), with the limits out of the way so
    // that every attempt is hashed.
    let child = crate::helpers::same_host_policy(&mut Command::new(env!("CARGO_BIN_EXE_ocaas")))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &database_url)
        .env("OCAAS_DATA_DIR", &dir)
        .env("OCAAS_SANDBOX_IMAGE", "ocaas-sandbox:not-used-here")
        .env("OCAAS_AUTH_PER_MINUTE_PER_ADDR", "1000000")
        .env("OCAAS_LOGIN_PER_MINUTE_PER_ACCOUNT", "1000000")
        .env("OCAAS_ADDR_MAX_INFLIGHT", "1000")
        .env("OCAAS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let _server = ChildGuard(child, dir);
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !matches!(reqwest::get(format!("{base}/healthz")).await, Ok(r) if r.status().is_success()) {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let idle = peak_rss_mib(pid);

    // 1,000 wrong sign-ins from 200 concurrent clients (bounded in count and time).
    let client = reqwest::Client::builder().pool_max_idle_per_host(200).build().unwrap();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..200 {
        let (client, next, url) = (client.clone(), next.clone(), format!("{base}/api/account/login"));
        workers.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 1000 {
                let body = json!({"email": "victim@example.com", "password": "guess number whatever"});
                let response = client.post(&url).json(&body).timeout(Duration::from_secs(120)).send().await;
                statuses.push(response.map(|r| r.status().as_u16()).unwrap_or(0));
            }
            statuses
        }));
    }
    let mut statuses = Vec::new();
    for worker in workers {
        statuses.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    let peak = peak_rss_mib(pid);
    println!("1000 wrong sign-ins in {elapsed:?}: idle RSS {idle:.1} MiB, peak {peak:.1} MiB");
    assert_eq!(statuses.len(), 1000);
    assert!(
        statuses.iter().all(|s| *s == 401),
        "every attempt answered 401: {:?}",
        statuses.iter().filter(|s| **s != 401).take(5).collect::<Vec<_>>()
    );
    assert!(peak < 150.0, "peak RSS {peak:.1} MiB (idle {idle:.1} MiB) is over 150 MiB");
}

/// Resuming an event feed far behind (10,000 messages) answers at once and replays all of it
/// page by page, by `Last-Event-ID` and by `after`.
#[tokio::test]
async fn an_event_feed_resumed_far_behind_answers_at_once_and_replays_everything() {
    let app = crate::helpers::spawn_app().await;
    let instance = app.ready_instance_row().await;
    let session = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO chat_sessions (id, instance_id, next_seq) VALUES ($1, $2, 10001)")
        .bind(session)
        .bind(instance)
        .execute(&app.db)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO chat_messages (id, session_id, seq, role, content, status)
         SELECT gen_random_uuid(), $1, n, CASE WHEN n % 2 = 1 THEN 'user' ELSE 'assistant' END, 'message ' || n, 'complete'
         FROM generate_series(1, 10000) AS n",
    )
    .bind(session)
    .execute(&app.db)
    .await
    .unwrap();
    let first: uuid::Uuid = sqlx::query_scalar("SELECT id FROM chat_messages WHERE seq = 1").fetch_one(&app.db).await.unwrap();
    let events = format!("/api/instances/{instance}/chat/events?session_id={session}");

    for (request, expected) in
        [(app.api(Method::GET, &events).header("Last-Event-ID", "0"), 10_000), (app.api(Method::GET, &format!("{events}&after={first}")), 9_999)]
    {
        let started = Instant::now();
        let response = tokio::time::timeout(Duration::from_secs(5), request.send()).await.expect("headers within 5 s").unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let head = started.elapsed();
        let mut reader = crate::sse::SseReader::new(response);
        assert_eq!(reader.next(Duration::from_secs(5)).await.unwrap().event, "ready");
        let mut contents = Vec::new();
        while contents.len() < expected {
            let event = reader.next(Duration::from_secs(10)).await.unwrap_or_else(|| panic!("only {} of {expected} replayed", contents.len()));
            assert_eq!(event.event, "message");
            contents.push(event.data["message"]["content"].as_str().unwrap().to_owned());
        }
        assert_eq!(contents.last().unwrap(), "message 10000");
        assert_eq!(contents[0], format!("message {}", 10_001 - expected));
        println!("replayed {expected} messages: headers after {head:?}, all after {:?}", started.elapsed());
    }
}

/// Reads until the server closes the connection (EOF or reset); how long that took.
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<Duration> {
    use tokio::io::AsyncReadExt;
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

#[tokio::test]
async fn slow_headers_idle_connections_and_too_many_connections_are_closed() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|s| {
        s.limits.header_timeout = Duration::from_secs(1);
        s.limits.max_connections = 60;
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    // 50 clients that send half a request header and then nothing.
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        slow.push(stream);
    }
    for stream in &mut slow {
        let closed = closed_within(stream, Duration::from_secs(5)).await;
        assert!(closed.is_some(), "a slow-header connection was still open after 5 s");
    }
    // A keep-alive connection that goes quiet after a request is closed too.
    let mut idle = tokio::net::TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    tokio::io::AsyncReadExt::read_exact(&mut idle, &mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await.is_some(), "an idle keep-alive connection stayed open");

    // Over the connection cap, new connections are closed at once; the server still answers
    // once the hogs are gone.
    let mut hogs = Vec::new();
    for _ in 0..60 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"GET /api HTTP/1.1\r\n").await.unwrap();
        hogs.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut extra = tokio::net::TcpStream::connect(&address).await.unwrap();
    let refused = closed_within(&mut extra, Duration::from_millis(800)).await;
    assert!(refused.is_some(), "a connection over the cap was not closed");
    drop(hogs);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.anon(Method::GET, "/healthz").send().await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn requests_beyond_the_in_flight_cap_get_503_server_busy() {
    let app = crate::helpers::spawn_app_with_docker(|s| s.limits.max_inflight = 1).await;
    let (id, _) = crate::helpers::ready_instance(&app).await;
    let slow = app.api(Method::POST, &format!("/api/instances/{id}/terminal/exec")).json(&json!({"command": "sleep 2"})).send();
    let slow = tokio::spawn(slow);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = app.api(Method::GET, "/api/instances").send().await.unwrap();
    assert_eq!(busy.headers()["retry-after"], "1");
    assert_error(busy, StatusCode::SERVICE_UNAVAILABLE, "server_busy").await;
    assert_eq!(slow.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(app.api(Method::GET, "/api/instances").send().await.unwrap().status(), StatusCode::OK);
    app.settle().await;
}

#[tokio::test]
async fn one_user_cannot_hold_more_streams_or_commands_than_the_caps() {
    let app = crate::helpers::spawn_app_with_docker(|s| {
        s.user_limits.stream = 2;
        s.user_limits.exec = 1;
    })
    .await;
    let (id, _) = crate::helpers::ready_instance(&app).await;
    let created = app.api(Method::POST, &format!("/api/instances/{id}/chat/sessions")).send().await.unwrap();
    let session = crate::helpers::json(created, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    let events = format!("/api/instances/{id}/chat/events?session_id={session}");
    let first = app.api(Method::GET, &events).send().await.unwrap();
    let second = app.api(Method::GET, &events).send().await.unwrap();
    assert_eq!((first.status(), second.status()), (StatusCode::OK, StatusCode::OK));
    let third = app.api(Method::GET, &events).send().await.unwrap();
    assert_eq!(third.headers()["retry-after"], "1");
    let refused = assert_error(third, StatusCode::TOO_MANY_REQUESTS, "too_many_concurrent").await;
    assert!(refused["message"].as_str().unwrap().contains("event streams"), "{refused}");
    // Closing a stream gives its slot back.
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let again = app.api(Method::GET, &events).send().await.unwrap();
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "the slot never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One command at a time for this user.
    let exec = format!("/api/instances/{id}/terminal/exec");
    let running = tokio::spawn(app.api(Method::POST, &exec).json(&json!({"command": "sleep 2"})).send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = app.api(Method::POST, &exec).json(&json!({"command": "true"})).send().await.unwrap();
    assert_error(second, StatusCode::TOO_MANY_REQUESTS, "too_many_concurrent").await;
    assert_eq!(running.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(app.api(Method::POST, &exec).json(&json!({"command": "true"})).send().await.unwrap().status(), StatusCode::OK);
    app.settle().await;
}

/// Peak resident memory of this process (the test's own server runs in it), in MiB.
fn own_peak_rss_mib() -> f64 {
    peak_rss_mib(std::process::id())
}

/// A gateway that answers 100 MB: the turn ends `error` at the answer cap with a notification,
/// the stored message stays at the cap, and memory stays flat — also for a listener that
/// reads slowly.
#[tokio::test]
async fn a_gateway_that_floods_its_answer_cannot_grow_the_server() {
    let app = crate::helpers::spawn_app_with_docker(|_| {}).await;
    let (id, _) = crate::helpers::ready_instance(&app).await;
    let before = own_peak_rss_mib();
    let response = app.api(Method::POST, &format!("/api/instances/{id}/chat/stream")).json(&json!({"message": "/flood 100"})).send().await.unwrap();
    let mut events = crate::sse::SseReader::new(response);
    let (mut notice, mut complete) = (None, None);
    let mut read = 0;
    while let Some(event) = events.next(Duration::from_secs(60)).await {
        read += 1;
        // A slow reader: a pause now and then.
        if read % 50 == 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match event.event.as_str() {
            "system_notification" => notice = Some(event.data),
            "complete" => {
                complete = Some(event.data);
                break;
            }
            _ => {}
        }
    }
    let complete = complete.expect("the turn completed");
    assert_eq!(complete["assistant_message"]["status"], "error", "{}", complete["assistant_message"]["error"]);
    assert!(complete["assistant_message"]["error"].as_str().unwrap().contains("OCAAS_MAX_ANSWER_BYTES"));
    let notice = notice.expect("a system_notification");
    assert_eq!(notice["level"], "error");
    let stored: i32 = sqlx::query_scalar("SELECT max(length(content)) FROM chat_messages").fetch_one(&app.db).await.unwrap();
    assert!(stored <= 1 << 20, "{stored}");
    let grown = own_peak_rss_mib() - before;
    println!("flood: {read} events read, peak RSS grew {grown:.1} MiB");
    assert!(grown < 100.0, "the test process (server included) grew {grown:.1} MiB");
    app.settle().await;
}
