//! The terminal websocket against a real sandbox: a PTY shell both ways, resize, exit frames,
//! no shell left behind, several terminals at once, and every handshake refusal.

use std::time::Duration;

use futures_util::StreamExt;

use ocaas::auth::service;
use reqwest::{Method, StatusCode};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::{TestApp, json, ready_instance, sandbox_sh, spawn_app_with_docker};
use crate::ws::{self, assert_refused, next_control, read_number, read_until, send_bytes, send_text};

fn terminal_url(app: &TestApp, id: &str) -> String {
    app.url(&format!("/api/instances/{id}/terminal/ws"))
}

/// Pids of processes in the sandbox whose session is `sid` (a terminal's shell and its children).
fn session_processes(sandbox: &str, sid: &str) -> String {
    sandbox_sh(sandbox, &format!("ps -eo pid=,sid=,args= | awk '$2 == {sid}'"))
}

#[tokio::test]
async fn a_terminal_runs_commands_resizes_and_reports_the_exit_code() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let mut term = ws::open_with_key(&terminal_url(&app, &id), &app.user.key).await.expect("handshake");

    send_bytes(&mut term, b"echo hello-$((6*7))\n").await;
    read_until(&mut term, "hello-42").await;

    send_text(&mut term, r#"{"type":"resize","cols":120,"rows":40}"#).await;
    send_bytes(&mut term, b"stty size\n").await;
    read_until(&mut term, "40 120").await;
    send_bytes(&mut term, b"echo \"pwd=$(pwd) term=$TERM user=$(id -u)\"\n").await;
    read_until(&mut term, "pwd=/workspace term=xterm-256color user=1000").await;
    send_bytes(&mut term, b"echo SID:$(ps -o sid= -p $$ | tr -d ' '):\n").await;
    let sid = read_number(&mut term, "SID").await;
    assert!(session_processes(&sandbox, &sid).contains("bash"), "the shell leads its session");

    // JSON input frames are typed too.
    send_text(&mut term, r#"{"type":"input","data":"echo typed-$((1+1))\n"}"#).await;
    read_until(&mut term, "typed-2").await;

    send_bytes(&mut term, b"exit 3\n").await;
    let exit = next_control(&mut term).await.expect("an exit frame");
    let Message::Text(text) = exit else { panic!("expected the exit frame, got {exit:?}") };
    let exit: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(exit, serde_json::json!({"type": "exit", "code": 3}));
    match next_control(&mut term).await {
        Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected a normal close, got {other:?}"),
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(session_processes(&sandbox, &sid), "", "the terminal's shell is gone");
}

#[tokio::test]
async fn closing_the_websocket_ends_the_shell_and_what_it_started() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let url = terminal_url(&app, &id);
    let (mut first, mut second) = tokio::join!(ws::open_with_key(&url, &app.user.key), ws::open_with_key(&url, &app.user.key));
    let (first, second) = (first.as_mut().unwrap(), second.as_mut().unwrap());

    // Two terminals at once, each with its own shell.
    send_bytes(first, b"echo SID:$(ps -o sid= -p $$ | tr -d ' '):\n").await;
    send_bytes(second, b"echo two-$((2*2))\n").await;
    let sid = read_number(first, "SID").await;
    read_until(second, "two-4").await;

    // A background job and a foreground one, then the client just goes away.
    send_bytes(first, b"sleep 4242 & sleep 4343\n").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(session_processes(&sandbox, &sid).contains("sleep 4343"));
    first.close(None).await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !session_processes(&sandbox, &sid).is_empty() {
        assert!(std::time::Instant::now() < deadline, "left behind: {}", session_processes(&sandbox, &sid));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(sandbox_sh(&sandbox, "pgrep -f 'sleep 4[23]4[23]' || true"), "");

    // The other terminal is unaffected.
    send_bytes(second, b"echo still-$((3*3))\n").await;
    read_until(second, "still-9").await;
}

#[tokio::test]
async fn terminal_handshakes_are_refused_before_upgrading() {
    let app = spawn_app_with_docker(|settings| settings.ticket_ttl = Duration::from_secs(1)).await;
    let (id, _) = ready_instance(&app).await;
    let url = terminal_url(&app, &id);

    assert_refused(ws::open(&url, &[]).await, StatusCode::UNAUTHORIZED, "unauthorized");
    let bad_key = format!("ocaas_{}", "x".repeat(43));
    assert_refused(ws::open_with_key(&url, &bad_key).await, StatusCode::UNAUTHORIZED, "unauthorized");

    let stranger = service::create_user(&app.db, "stranger@example.com", crate::helpers::PASSWORD, None).await.unwrap();
    let stranger_key = service::create_api_key(&app.db, stranger.id, None, None).await.unwrap().key;
    assert_refused(ws::open_with_key(&url, &stranger_key).await, StatusCode::NOT_FOUND, "instance_not_found");
    let unknown = terminal_url(&app, &uuid::Uuid::new_v4().to_string());
    assert_refused(ws::open_with_key(&unknown, &app.user.key).await, StatusCode::NOT_FOUND, "instance_not_found");

    // A key without `exec`, or bound to another instance, opens no terminal.
    let chat_only = service::create_scoped_key(&app.db, app.user.id, Some("chat"), None, &scoped(&["chat"], None)).await.unwrap().key;
    assert_refused(ws::open_with_key(&url, &chat_only).await, StatusCode::FORBIDDEN, "insufficient_scope");
    let elsewhere = service::create_scoped_key(&app.db, app.user.id, Some("elsewhere"), None, &scoped(&["exec"], Some(uuid::Uuid::new_v4()))).await;
    assert!(elsewhere.is_err(), "a key cannot be bound to an instance that is not the user's");
    let exec_key = service::create_scoped_key(&app.db, app.user.id, Some("exec"), None, &scoped(&["exec"], None)).await.unwrap().key;
    let sized_ok = format!("{url}?cols=0&rows=40");
    assert_refused(ws::open_with_key(&sized_ok, &exec_key).await, StatusCode::BAD_REQUEST, "invalid_request");

    let sized = format!("{url}?cols=0&rows=40");
    assert_refused(ws::open_with_key(&sized, &app.user.key).await, StatusCode::BAD_REQUEST, "invalid_request");

    let plain = app.api(Method::GET, &format!("/api/instances/{id}/terminal/ws")).send().await.unwrap();
    crate::helpers::assert_error(plain, StatusCode::UPGRADE_REQUIRED, "websocket_required").await;

    // A ticket from vnc-url is for the desktop: it opens no terminal, and is not spent trying.
    let ticket = |body: serde_json::Value| body["ws_url"].as_str().unwrap().split("ticket=").nth(1).unwrap().to_owned();
    let vnc_url = json(app.api(Method::GET, &format!("/api/instances/{id}/vnc-url")).send().await.unwrap(), StatusCode::OK).await;
    let (fresh, vnc_ws) = (ticket(vnc_url.clone()), vnc_url["ws_url"].as_str().unwrap().to_owned());
    let refused = ws::open(&format!("{url}?ticket={fresh}"), &[]).await;
    let Err((status, body)) = refused else { panic!("a vnc-url ticket opened a terminal") };
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"].as_str().unwrap().contains("desktop"), "{body}");
    let desktop = ws::open(&vnc_ws, &[]).await;
    assert!(desktop.is_ok(), "the ticket still opens the desktop it is for: {:?}", desktop.err());
    assert_refused(ws::open(&vnc_ws, &[]).await, StatusCode::UNAUTHORIZED, "unauthorized");

    let vnc = url.replace("/terminal/ws", "/vnc/ws");
    let stale = ticket(json(app.api(Method::GET, &format!("/api/instances/{id}/vnc-url")).send().await.unwrap(), StatusCode::OK).await);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let expired = ws::open(&format!("{vnc}?ticket={stale}"), &[]).await;
    let Err((status, body)) = expired else { panic!("an expired ticket is refused") };
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["message"].as_str().unwrap().contains("expired"), "{body}");
    assert_refused(ws::open(&format!("{vnc}?ticket=made-up"), &[]).await, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn cookie_handshakes_must_come_from_this_origin() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let (cookie, _) = app.login().await;
    let url = terminal_url(&app, &id);
    let foreign = ws::open(&url, &[("cookie", &cookie), ("origin", "http://evil.example")]).await;
    assert_refused(foreign, StatusCode::FORBIDDEN, "origin_mismatch");
    assert_refused(ws::open(&url, &[("cookie", &cookie)]).await, StatusCode::FORBIDDEN, "origin_mismatch");

    let mut term = ws::open(&url, &[("cookie", &cookie), ("origin", &app.address)]).await.expect("same-origin cookie handshake");
    send_bytes(&mut term, b"echo cookie-$((7*7))\n").await;
    read_until(&mut term, "cookie-49").await;
}

#[tokio::test]
async fn a_client_that_stops_reading_holds_the_shell_back() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let mut term = ws::open_with_key(&terminal_url(&app, &id), &app.user.key).await.expect("handshake");
    send_bytes(&mut term, b"stty -echo; echo READY:$((1+1)):\n").await;
    read_number(&mut term, "READY").await;

    // 100 MB of output is far more than every buffer on the way (PTY, engine, ocaas, TCP) holds:
    // while nobody reads, the producer has to stay blocked instead of ocaas buffering it all.
    send_bytes(&mut term, b"yes 0123456789abcdefghijklmnopqrstuvwxyz | head -c 100000000; echo DONE:$((6*7)):\n").await;
    let written = || sandbox_sh(&sandbox, "awk '/^wchar/ {print $2}' /proc/$(pgrep -x head)/io").parse::<u64>().expect("head is running");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = written();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = written();
    eprintln!("head wrote {before} then {after} bytes while the client did not read");
    assert!(after < 50_000_000, "only what the buffers hold was written: {after} bytes");
    assert!(after - before < 1_000_000, "the writer is held back while the client does not read: {before} → {after} bytes");

    let drain = async {
        let mut tail = String::new();
        let mut total = 0usize;
        while let Some(message) = term.next().await {
            if let Message::Binary(bytes) = message.unwrap() {
                total += bytes.len();
                tail.push_str(&String::from_utf8_lossy(&bytes));
                if tail.contains("DONE:42:") {
                    return total;
                }
                let keep = tail.len().saturating_sub(64);
                tail = tail.split_off(tail.floor_char_boundary(keep));
            }
        }
        total
    };
    let total = tokio::time::timeout(Duration::from_secs(120), drain).await.expect("the output drains once the client reads");
    assert!(total >= 100_000_000, "all of it arrives: {total} bytes");
    assert_eq!(sandbox_sh(&sandbox, "pgrep -x head || true"), "");
}

fn scoped(scopes: &[&str], instance_id: Option<uuid::Uuid>) -> ocaas::auth::scopes::Grant {
    let scopes = scopes.iter().map(|s| ocaas::auth::scopes::Scope::parse(s).unwrap()).collect();
    ocaas::auth::scopes::Grant { scopes: Some(scopes), instance_id }
}
