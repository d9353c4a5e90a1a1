//! Chat against a real sandbox and its stand-in gateway: sync and streamed turns, history,
//! the event feed across two server processes, failures and refusals.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, json, ready_instance, respawn, spawn_app_with_docker};
use crate::sse::SseReader;

const WAIT: Duration = Duration::from_secs(30);

fn chat(id: &str, op: &str) -> String {
    format!("/api/instances/{id}/chat{op}")
}

async fn send(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, &chat(id, "")).json(&body).send().await.unwrap()
}

async fn new_session(app: &TestApp, id: &str) -> String {
    let session = json(app.api(Method::POST, &chat(id, "/sessions")).json(&json!({"title": "t"})).send().await.unwrap(), StatusCode::CREATED).await;
    session["id"].as_str().unwrap().to_owned()
}

async fn history(app: &TestApp, id: &str, query: &[(&str, &str)]) -> reqwest::Response {
    app.api(Method::GET, &chat(id, "/messages")).query(query).send().await.unwrap()
}

#[tokio::test]
async fn sync_turns_persist_both_messages_and_keep_sessions_apart() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    // No session yet: the first turn creates one.
    let first = json(send(&app, &id, json!({"message": "My name is Ferris"})).await, StatusCode::OK).await;
    let session = first["session_id"].as_str().unwrap().to_owned();
    assert_eq!(first["user_message"]["role"], "user");
    assert_eq!(first["user_message"]["content"], "My name is Ferris");
    assert_eq!(first["user_message"]["status"], "complete");
    let answer = first["assistant_message"]["content"].as_str().unwrap();
    assert!(answer.ends_with("You said: My name is Ferris | history_turns=1"), "{answer}");
    assert_eq!(first["assistant_message"]["status"], "complete");

    // Same session (implicitly the most recent): the gateway saw the earlier turn.
    let second = json(send(&app, &id, json!({"message": "What is my name?"})).await, StatusCode::OK).await;
    assert_eq!(second["session_id"], session.as_str());
    assert!(second["assistant_message"]["content"].as_str().unwrap().ends_with("| history_turns=3"), "{second}");
    // Another session starts from nothing.
    let other = new_session(&app, &id).await;
    let third = json(send(&app, &id, json!({"session_id": other, "message": "Hi"})).await, StatusCode::OK).await;
    assert!(third["assistant_message"]["content"].as_str().unwrap().ends_with("| history_turns=1"), "{third}");

    let stored = json(history(&app, &id, &[("session_id", &session)]).await, StatusCode::OK).await;
    assert_eq!(stored.as_array().unwrap().len(), 4);
    assert_eq!(stored[3], second["assistant_message"]);
    let sessions = json(app.api(Method::GET, &chat(&id, "/sessions")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(sessions[0]["id"], other.as_str(), "most recently active first");
    assert_eq!(sessions[1]["message_count"], 4);
}

#[tokio::test]
async fn streams_events_in_order_and_deltas_add_up() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let response = app.api(Method::POST, &chat(&id, "/stream")).json(&json!({"message": "/echo one two three four"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = SseReader::new(response).all(WAIT).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let deltas = events.iter().filter(|e| e.event == "message" && e.data.get("delta").is_some()).count();
    assert!(deltas >= 2, "{names:?}");
    let mut expected = vec!["status", "message", "status", "status"];
    expected.extend(std::iter::repeat_n("message", deltas));
    expected.extend(["status", "complete"]);
    assert_eq!(names, expected);
    assert_eq!(events[0].data["state"], "queued");
    assert_eq!(events[1].data["message"]["content"], "/echo one two three four");
    assert_eq!(events[2].data["state"], "running");
    assert_eq!(events[3].data["state"], "streaming");
    assert_eq!(events[events.len() - 2].data["state"], "done");
    let joined: String = events.iter().filter_map(|e| e.data.get("delta").and_then(Value::as_str)).collect();
    assert_eq!(joined, "one two three four");
    let last_delta = events.iter().rev().find(|e| e.data.get("delta").is_some()).unwrap();
    assert_eq!(last_delta.data["message"]["content"], "one two three four");

    let complete = &events.last().unwrap().data;
    assert_eq!(complete["assistant_message"]["content"], "one two three four");
    assert_eq!(complete["assistant_message"]["status"], "complete");
    let stored = json(history(&app, &id, &[]).await, StatusCode::OK).await;
    assert_eq!(stored[0], complete["user_message"]);
    assert_eq!(stored[1], complete["assistant_message"]);
}

#[tokio::test]
async fn a_turn_finishes_and_is_stored_after_the_client_disconnects() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let response = app.api(Method::POST, &chat(&id, "/stream")).json(&json!({"message": "/slow 150 a b c d e f g h"})).send().await.unwrap();
    let mut reader = SseReader::new(response);
    while let Some(event) = reader.next(WAIT).await {
        if event.data.get("delta").is_some() {
            break;
        }
    }
    drop(reader);
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = json(history(&app, &id, &[]).await, StatusCode::OK).await;
        if stored[1]["status"] == "complete" {
            assert_eq!(stored[1]["content"], "a b c d e f g h");
            break;
        }
        assert_eq!(stored[1]["status"], "streaming", "{stored}");
        assert!(Instant::now() < deadline, "the turn never completed: {stored}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn gateway_failures_end_in_an_error_message_and_a_notification() {
    let app = spawn_app_with_docker(|s| s.chat_timeout = Duration::from_secs(2)).await;
    let (id, _) = ready_instance(&app).await;
    let response = app.api(Method::POST, &chat(&id, "/stream")).json(&json!({"message": "/fail please"})).send().await.unwrap();
    let events = SseReader::new(response).all(WAIT).await;
    let notice = events.iter().find(|e| e.event == "system_notification").expect("a system_notification");
    assert_eq!(notice.data["level"], "error");
    assert!(notice.data["message"].as_str().unwrap().contains("upstream provider timeout"), "{notice:?}");
    let complete = &events.last().unwrap();
    assert_eq!(complete.event, "complete");
    assert_eq!(complete.data["assistant_message"]["status"], "error");
    assert_eq!(events[events.len() - 2].data["state"], "error");

    // A hanging agent hits the turn timeout; the sync answer is still 200 with the error stored.
    let hung = json(send(&app, &id, json!({"message": "/slow 5000 late"})).await, StatusCode::OK).await;
    assert_eq!(hung["assistant_message"]["status"], "error");
    assert!(hung["assistant_message"]["error"].as_str().unwrap().contains("did not finish"), "{hung}");
    let stored = json(history(&app, &id, &[]).await, StatusCode::OK).await;
    let statuses: Vec<&str> = stored.as_array().unwrap().iter().map(|m| m["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["complete", "error", "complete", "error"], "user messages are kept");
    // The session is free again.
    json(send(&app, &id, json!({"message": "/echo ok"})).await, StatusCode::OK).await;
}

#[tokio::test]
async fn history_supports_tail_after_and_limit() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    assert_eq!(json(history(&app, &id, &[]).await, StatusCode::OK).await, json!([]), "no session yet");
    let session = new_session(&app, &id).await;
    assert_eq!(json(history(&app, &id, &[("session_id", &session)]).await, StatusCode::OK).await, json!([]));
    for n in 1..=3 {
        json(send(&app, &id, json!({"session_id": session, "message": format!("/echo answer {n}")})).await, StatusCode::OK).await;
    }
    let all = json(history(&app, &id, &[("session_id", &session)]).await, StatusCode::OK).await;
    let contents: Vec<&str> = all.as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents, ["/echo answer 1", "answer 1", "/echo answer 2", "answer 2", "/echo answer 3", "answer 3"]);
    let tail = json(history(&app, &id, &[("session_id", &session), ("tail", "true"), ("limit", "2")]).await, StatusCode::OK).await;
    assert_eq!(tail, json!([all[4], all[5]]));
    let first_two = json(history(&app, &id, &[("session_id", &session), ("limit", "2")]).await, StatusCode::OK).await;
    assert_eq!(first_two, json!([all[0], all[1]]));
    let after = all[1]["id"].as_str().unwrap();
    let later = json(history(&app, &id, &[("session_id", &session), ("after", after), ("limit", "3")]).await, StatusCode::OK).await;
    assert_eq!(later, json!([all[2], all[3], all[4]]));
    let last = all[5]["id"].as_str().unwrap();
    assert_eq!(json(history(&app, &id, &[("session_id", &session), ("after", last)]).await, StatusCode::OK).await, json!([]));

    for limit in ["0", "501", "-1", "many"] {
        let response = history(&app, &id, &[("session_id", &session), ("limit", limit)]).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let unknown = uuid::Uuid::now_v7().to_string();
    assert_error(history(&app, &id, &[("session_id", &session), ("after", &unknown)]).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_error(history(&app, &id, &[("session_id", &unknown)]).await, StatusCode::NOT_FOUND, "session_not_found").await;
}

#[tokio::test]
async fn events_reach_another_process_and_resume_from_last_event_id() {
    let a = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&a).await;
    let session = new_session(&a, &id).await;
    let b = respawn(&a).await;
    let subscribe = |last: Option<String>| {
        let mut request = b.api(Method::GET, &chat(&id, "/events")).query(&[("session_id", &session)]);
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        request.send()
    };
    let mut feed = SseReader::new(subscribe(None).await.unwrap());
    let ready = feed.next(WAIT).await.unwrap();
    assert_eq!(ready.event, "ready");
    assert_eq!(ready.data["session_id"], session.as_str());

    let turn = json(send(&a, &id, json!({"session_id": session, "message": "/echo across processes"})).await, StatusCode::OK).await;
    let assistant_id = turn["assistant_message"]["id"].as_str().unwrap();
    let mut seen = Vec::new();
    while let Some(event) = feed.next(WAIT).await {
        assert_eq!(event.event, "message");
        assert!(event.id.is_some(), "events carry ids");
        let done = event.data["message"]["id"] == assistant_id && event.data["message"]["status"] == "complete";
        seen.push(event);
        if done {
            break;
        }
    }
    assert_eq!(seen[0].data["message"], turn["user_message"], "the user message comes first");
    assert_eq!(seen.last().unwrap().data["message"], turn["assistant_message"]);
    drop(feed);

    // Missed: a second turn. Resuming after the last seen id yields only that turn.
    let missed = json(send(&a, &id, json!({"session_id": session, "message": "/echo while away"})).await, StatusCode::OK).await;
    let mut resumed = SseReader::new(subscribe(seen.last().unwrap().id.clone()).await.unwrap());
    assert_eq!(resumed.next(WAIT).await.unwrap().event, "ready");
    let mut replayed = Vec::new();
    while let Some(event) = resumed.next(Duration::from_secs(2)).await {
        replayed.push(event.data["message"].clone());
    }
    assert_eq!(replayed, vec![missed["user_message"].clone(), missed["assistant_message"].clone()]);
}

#[tokio::test]
async fn busy_sessions_unready_instances_and_strangers_are_refused() {
    let app = spawn_app_with_docker(|s| s.max_body_bytes = 1 << 20).await;
    let (id, _) = ready_instance(&app).await;
    let session = new_session(&app, &id).await;
    let slow =
        app.api(Method::POST, &chat(&id, "/stream")).json(&json!({"session_id": session, "message": "/slow 300 a b c d"})).send().await.unwrap();
    let busy = send(&app, &id, json!({"session_id": session, "message": "me too"})).await;
    assert_error(busy, StatusCode::CONFLICT, "session_busy").await;
    SseReader::new(slow).all(WAIT).await;

    for bad in
        [json!({"message": ""}), json!({"message": "   "}), json!({"message": "x".repeat(100_001)}), json!({"session_id": "nope", "message": "x"})]
    {
        assert_error(send(&app, &id, bad).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let unknown = json!({"session_id": uuid::Uuid::now_v7(), "message": "x"});
    assert_error(send(&app, &id, unknown).await, StatusCode::NOT_FOUND, "session_not_found").await;

    let stranger = ocaas::auth::service::create_user(&app.db, "stranger@example.com", PASSWORD, None).await.unwrap();
    let key = ocaas::auth::service::create_api_key(&app.db, stranger.id, None, None).await.unwrap().key;
    for (method, op) in
        [(Method::POST, ""), (Method::POST, "/stream"), (Method::GET, "/messages"), (Method::GET, "/sessions"), (Method::GET, "/events")]
    {
        let response = app.with_key(method, &chat(&id, op), &key).json(&json!({"message": "hi"})).send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "instance_not_found").await;
    }

    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.db).await.unwrap();
    json(app.api(Method::POST, &format!("/api/instances/{id}/shutdown")).send().await.unwrap(), StatusCode::ACCEPTED).await;
    assert_error(send(&app, &id, json!({"message": "anyone?"})).await, StatusCode::CONFLICT, "instance_not_running").await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages").fetch_one(&app.db).await.unwrap();
    assert_eq!(before, after, "nothing is stored for a refused turn");
}

#[tokio::test]
async fn a_turn_abandoned_by_a_dead_server_is_marked_interrupted() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let session = new_session(&app, &id).await;
    // What a server that died mid-answer leaves behind.
    sqlx::query(
        "WITH m AS (INSERT INTO chat_messages (id, session_id, seq, role, content, status, updated_at)
                    VALUES ($1, $2::uuid, 1, 'assistant', 'half an ans', 'streaming', now() - interval '10 minutes') RETURNING id)
         UPDATE chat_sessions SET active_turn = (SELECT id FROM m), next_seq = 2 WHERE id = $2::uuid",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(&session)
    .execute(&app.db)
    .await
    .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let stored = json(history(&app, &id, &[("session_id", &session)]).await, StatusCode::OK).await;
        if stored[0]["status"] == "error" {
            assert_eq!(stored[0]["error"], "interrupted");
            assert_eq!(stored[0]["content"], "half an ans", "what was said is kept");
            break;
        }
        assert!(Instant::now() < deadline, "never interrupted: {stored}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    json(send(&app, &id, json!({"session_id": session, "message": "/echo free again"})).await, StatusCode::OK).await;
}

/// A turn's start commits without waiting for the disk, for that one transaction only: the
/// claim is visible to every other connection at once, and the connection that made it is back
/// to durable commits for whatever it runs next.
#[tokio::test]
async fn a_turns_start_is_visible_at_once_and_leaves_its_connection_committing_durably() {
    let app = crate::helpers::spawn_app().await;
    let instance = app.ready_instance_row().await;
    let session = ocaas::chat::repo::insert_session(&app.db, instance, None).await.unwrap();
    let one = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&app.database_url).await.unwrap();
    let (user_message_id, assistant_id) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    let rows = ocaas::chat::repo::start_turn(&one, instance, Some(session.id), user_message_id, assistant_id, "hello").await.unwrap();
    assert_eq!(rows.len(), 2);
    let setting: String = sqlx::query_scalar("SHOW synchronous_commit").fetch_one(&one).await.unwrap();
    assert_eq!(setting, "on", "the relaxed commit leaked into the pooled connection");
    let claimed: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT active_turn FROM chat_sessions WHERE id = $1").bind(session.id).fetch_one(&app.db).await.unwrap();
    assert_eq!(claimed, Some(assistant_id), "another connection sees the claim");
    let busy = ocaas::chat::repo::start_turn(&app.db, instance, Some(session.id), uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), "again").await.unwrap();
    assert!(busy.is_empty(), "a second turn in the same session is refused");
}
