//! Chat over the gateway's own WebSocket protocol, against real sandboxes and the stand-in
//! gateway speaking it as captured: tool steps streamed, fed to a second replica and kept in
//! history across a restart; a turn stopped mid-tool; turns made on the gateway directly
//! imported; the device pairing kept across a reboot and redone after a wipe; lost frames
//! recovered; and the HTTP door used where the gateway has no WebSocket. (Facts written by
//! several callers at once: `concurrent_facts.rs`.)

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json, ready_instance, respawn, sandbox_sh, spawn_app_with_docker};
use crate::sse::{SseEvent, SseReader};

const WAIT: Duration = Duration::from_secs(30);

fn chat(id: &str, op: &str) -> String {
    format!("/api/instances/{id}/chat{op}")
}

async fn new_session(app: &TestApp, id: &str) -> String {
    let session = json(app.api(Method::POST, &chat(id, "/sessions")).json(&json!({})).send().await.unwrap(), StatusCode::CREATED).await;
    session["id"].as_str().unwrap().to_owned()
}

async fn stream(app: &TestApp, id: &str, session: &str, message: &str) -> SseReader {
    let response = app.api(Method::POST, &chat(id, "/stream")).json(&json!({"session_id": session, "message": message})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    SseReader::new(response)
}

async fn feed(app: &TestApp, id: &str, session: &str) -> SseReader {
    let response = app.api(Method::GET, &chat(id, "/events")).query(&[("session_id", session)]).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response);
    assert_eq!(reader.next(WAIT).await.unwrap().event, "ready");
    reader
}

async fn history(app: &TestApp, id: &str, session: &str) -> Vec<Value> {
    let body = json(app.api(Method::GET, &chat(id, "/messages")).query(&[("session_id", session)]).send().await.unwrap(), StatusCode::OK).await;
    body.as_array().unwrap().clone()
}

/// Events until one named `last` whose data satisfies `done` (or the wait ends).
async fn until(reader: &mut SseReader, done: impl Fn(&SseEvent) -> bool) -> Vec<SseEvent> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let Some(event) = reader.next(WAIT).await else { break };
        let last = done(&event);
        seen.push(event);
        if last {
            break;
        }
    }
    seen
}

fn tool_phases(events: &[SseEvent]) -> Vec<String> {
    events.iter().filter(|e| e.event == "tool").map(|e| e.data["phase"].as_str().unwrap().to_owned()).collect()
}

async fn restart(app: &TestApp, id: &str) {
    let response = app.api(Method::POST, &format!("/api/instances/{id}/reboot")).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    tokio::time::sleep(Duration::from_millis(500)).await;
    crate::idle::wait_status(app, id, "ready", Duration::from_secs(90)).await;
}

fn state_dir(sandbox: &str) -> String {
    sandbox_sh(sandbox, "readlink -f ~/.openclaw")
}

#[tokio::test]
async fn a_tool_step_streams_reaches_a_second_replica_and_stays_in_history() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let session = new_session(&app, &id).await;
    let other = respawn(&app).await;
    let mut replica_feed = feed(&other, &id, &session).await;

    let mut turn = stream(&app, &id, &session, "/exec echo one; sleep 0.3; echo two").await;
    let events = until(&mut turn, |e| e.event == "complete").await;
    let phases = tool_phases(&events);
    assert_eq!(phases.first().map(String::as_str), Some("start"), "{phases:?}");
    assert_eq!(phases.last().map(String::as_str), Some("result"), "{phases:?}");
    assert!(phases.iter().filter(|p| *p == "update").count() >= 1, "live output: {phases:?}");
    let tools: Vec<&SseEvent> = events.iter().filter(|e| e.event == "tool").collect();
    assert_eq!(tools[0].data["name"], "exec");
    assert_eq!(tools[0].data["args"]["command"], "echo one; sleep 0.3; echo two");
    let update = tools.iter().find(|e| e.data["phase"] == "update").unwrap();
    assert!(update.data["output"].as_str().unwrap().starts_with("one"), "{:?}", update.data);
    let result = tools.last().unwrap();
    assert_eq!((result.data["output"].as_str(), result.data["is_error"].as_bool()), (Some("one\ntwo"), Some(false)));
    let complete = &events.last().unwrap().data["assistant_message"];
    assert_eq!(complete["status"], "complete");
    assert_eq!(complete["content"], "Running a command.\n\nTool finished. Output was: one\ntwo");
    let step = &complete["tools"][0];
    assert_eq!((step["name"].as_str(), step["status"].as_str(), step["output"].as_str()), (Some("exec"), Some("completed"), Some("one\ntwo")));
    assert!(step["started_at"].is_string() && step["ended_at"].is_string(), "{step}");
    let message_id = complete["id"].clone();
    assert!(tools.iter().all(|t| t.data["message_id"] == message_id));

    // The other replica's feed saw the same step, from the database.
    let fed =
        until(&mut replica_feed, |e| e.event == "message" && e.data["message"]["status"] == "complete" && e.data["message"]["role"] == "assistant")
            .await;
    let fed_phases = tool_phases(&fed);
    assert_eq!((fed_phases.first().map(String::as_str), fed_phases.last().map(String::as_str)), (Some("start"), Some("result")), "{fed_phases:?}");
    assert!(fed.iter().any(|e| e.event == "tool" && e.data["phase"] == "result" && e.data["output"] == "one\ntwo"));

    // After a restart of ocaas, the history still holds the step.
    drop(other);
    let restarted = respawn(&app).await;
    let stored = history(&restarted, &id, &session).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1]["tools"], complete["tools"]);
}

#[tokio::test]
async fn abort_mid_tool_ends_the_turn_aborted_and_the_run_is_gone() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let session = new_session(&app, &id).await;
    // Nothing runs yet: nothing to stop.
    let none = app.api(Method::POST, &chat(&id, "/abort")).json(&json!({"session_id": session})).send().await.unwrap();
    crate::helpers::assert_error(none, StatusCode::CONFLICT, "no_active_turn").await;

    let mut turn = stream(&app, &id, &session, "/exec echo started; sleep 60").await;
    until(&mut turn, |e| e.event == "tool" && e.data["phase"] == "update").await;
    assert_eq!(sandbox_sh(&sandbox, "pgrep -xc sleep"), "1", "the tool runs");
    // Asked of another replica than the one running the turn.
    let other = respawn(&app).await;
    let asked = Instant::now();
    let stopped =
        json(other.api(Method::POST, &chat(&id, "/abort")).json(&json!({"session_id": session})).send().await.unwrap(), StatusCode::OK).await;
    let took = asked.elapsed();
    assert_eq!(stopped["status"], "aborted", "{stopped}");
    assert!(took < Duration::from_secs(2), "stopping took {took:?}");
    assert_eq!(stopped["tools"][0]["status"], "aborted");
    let rest = until(&mut turn, |e| e.event == "complete").await;
    assert!(rest.iter().any(|e| e.event == "status" && e.data["state"] == "aborted"), "{:?}", rest.iter().map(|e| &e.event).collect::<Vec<_>>());
    assert_eq!(rest.last().unwrap().data["assistant_message"]["status"], "aborted");
    // The gateway's run is gone: its command was killed, and the session takes a new turn.
    assert_eq!(sandbox_sh(&sandbox, "pgrep -xc sleep || true"), "0");
    let next = json(
        app.api(Method::POST, &chat(&id, "")).json(&json!({"session_id": session, "message": "/echo again"})).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(next["assistant_message"]["content"], "again");
}

#[tokio::test]
async fn turns_made_on_the_gateway_directly_appear_in_history_and_the_feed() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let session = new_session(&app, &id).await;
    let mut events = feed(&app, &id, &session).await;
    // The agent's own UI continues ocaas's session (same key), over its loopback WebSocket.
    let said = sandbox_sh(&sandbox, &format!("openclaw agent --session-id {session} --message '/exec echo from-the-ui'"));
    assert!(said.ends_with("Output was: from-the-ui"), "{said}");
    let fed =
        until(&mut events, |e| e.event == "message" && e.data["message"]["role"] == "assistant" && e.data["message"]["status"] == "complete").await;
    assert!(
        fed.iter().any(|e| e.event == "message" && e.data["message"]["content"] == "/exec echo from-the-ui"),
        "the user message: {:?}",
        fed.iter().map(|e| (&e.event, &e.data)).collect::<Vec<_>>()
    );
    let stored = history(&app, &id, &session).await;
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(stored[1]["tools"][0]["output"], "from-the-ui");
    assert_eq!(stored[1]["content"], "Running a command.\n\nTool finished. Output was: from-the-ui");

    // A session of the agent's own (its main key) becomes an imported session.
    let said = sandbox_sh(&sandbox, "openclaw agent --session-id main --message '/echo hello from main'");
    assert_eq!(said, "hello from main");
    let deadline = Instant::now() + WAIT;
    let imported = loop {
        let sessions = json(app.api(Method::GET, &chat(&id, "/sessions")).send().await.unwrap(), StatusCode::OK).await;
        let found = sessions.as_array().unwrap().iter().find(|s| s["origin"] == "gateway" && s["message_count"] == 2).cloned();
        if let Some(found) = found {
            break found;
        }
        assert!(Instant::now() < deadline, "no imported session: {sessions}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let messages = history(&app, &id, imported["id"].as_str().unwrap()).await;
    assert_eq!((messages[0]["role"].as_str(), messages[1]["content"].as_str()), (Some("user"), Some("hello from main")));
    // Imported once, whatever reloads happen (a second replica, a reconnect).
    let other = respawn(&app).await;
    sandbox_sh(&sandbox, "openclaw agent --session-id main --message '/echo second'");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(history(&other, &id, imported["id"].as_str().unwrap()).await.len(), 4);
    assert_eq!(history(&app, &id, &session).await.len(), 2);
}

#[tokio::test]
async fn the_pairing_survives_a_reboot_and_is_redone_after_the_state_is_wiped() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let session = new_session(&app, &id).await;
    let tool_turn = |message: &'static str| {
        let (app, id, session) = (&app, id.clone(), session.clone());
        async move { until(&mut stream(app, &id, &session, message).await, |e| e.event == "complete").await }
    };
    // Tool events prove the turn went over the WebSocket (HTTP carries only text).
    assert!(!tool_phases(&tool_turn("/exec true").await).is_empty());
    let paired = |sandbox: &str| -> Value { serde_json::from_str(&sandbox_sh(sandbox, "openclaw devices list --json")).unwrap() };
    let devices = paired(&sandbox);
    assert_eq!(devices["paired"].as_array().unwrap().len(), 1, "{devices}");
    let stored: String =
        sqlx::query_scalar("SELECT device_id FROM gateway_devices WHERE instance_id = $1::uuid").bind(&id).fetch_one(&app.db).await.unwrap();
    assert_eq!(devices["paired"][0]["deviceId"], stored.as_str());
    assert!(
        sqlx::query_scalar::<_, Option<Vec<u8>>>("SELECT device_token_sealed FROM gateway_devices WHERE instance_id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap()
            .is_some()
    );

    restart(&app, &id).await;
    assert!(!tool_phases(&tool_turn("/exec true").await).is_empty());
    let after_reboot = paired(&sandbox);
    assert_eq!(
        (after_reboot["paired"].as_array().unwrap().len(), after_reboot["pending"].as_array().unwrap().len()),
        (1, 0),
        "no new pairing: {after_reboot}"
    );

    // The gateway forgets every device: ocaas pairs again by itself.
    sandbox_sh(&sandbox, &format!("rm -rf {}/devices", state_dir(&sandbox)));
    restart(&app, &id).await;
    assert!(!tool_phases(&tool_turn("/exec true").await).is_empty());
    assert_eq!(paired(&sandbox)["paired"][0]["deviceId"], stored.as_str());
}

#[tokio::test]
async fn lost_frames_and_garbage_are_recovered_from_the_gateways_history() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let session = new_session(&app, &id).await;
    // The gateway cuts every socket mid-answer; the run goes on and ocaas picks it up.
    let dropped = until(&mut stream(&app, &id, &session, "/drop alpha beta gamma delta").await, |e| e.event == "complete").await;
    assert_eq!(dropped.last().unwrap().data["assistant_message"]["content"], "alpha beta gamma delta");
    assert_eq!(dropped.last().unwrap().data["assistant_message"]["status"], "complete");
    // Malformed frames and a `seq` jump: ignored, and the answer reloaded.
    let garbled = until(&mut stream(&app, &id, &session, "/garbage one two").await, |e| e.event == "complete").await;
    assert_eq!(garbled.last().unwrap().data["assistant_message"]["content"], "one two");
    let stored = history(&app, &id, &session).await;
    assert_eq!(stored.len(), 4, "nothing imported twice: {stored:?}");
}

#[tokio::test]
async fn a_gateway_without_the_websocket_protocol_is_reached_over_http() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    sandbox_sh(&sandbox, &format!("touch {}/standin-no-ws", state_dir(&sandbox)));
    restart(&app, &id).await;
    let session = new_session(&app, &id).await;
    let events = until(&mut stream(&app, &id, &session, "/exec echo over-http").await, |e| e.event == "complete").await;
    assert!(tool_phases(&events).is_empty());
    let done = &events.last().unwrap().data["assistant_message"];
    assert_eq!((done["status"].as_str(), done["content"].as_str()), (Some("complete"), Some("over-http\n")));
}
