//! Idle policy, pause/resume and wake on use against real sandboxes: an idle instance is
//! paused then stopped (short intervals here), a streaming turn or an open terminal keeps it
//! awake, a pause keeps every process and its memory, and chat wakes a paused or stopped one.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, json, ready_instance, sandbox_sh, spawn_app_with_docker};
use crate::sse::SseReader;

pub fn docker_state(sandbox: &str) -> String {
    let output = std::process::Command::new("docker").args(["inspect", "-f", "{{.State.Status}}", sandbox]).output().expect("docker inspect");
    let state = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if state.is_empty() { "missing".into() } else { state }
}

pub async fn instance(app: &TestApp, id: &str) -> Value {
    json(app.api(Method::GET, &format!("/api/instances/{id}")).send().await.unwrap(), StatusCode::OK).await
}

/// Waits (up to `limit`) until the instance's status is `want`; returns it.
pub async fn wait_status(app: &TestApp, id: &str, want: &str, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let body = instance(app, id).await;
        if body["status"] == want {
            return body;
        }
        assert!(Instant::now() < deadline, "instance did not become {want} within {limit:?}: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn post(app: &TestApp, id: &str, action: &str) -> reqwest::Response {
    app.api(Method::POST, &format!("/api/instances/{id}/{action}")).send().await.unwrap()
}

fn quick_idle(pause: u64, stop: u64) -> impl FnOnce(&mut ocaas::config::Settings) {
    move |settings| {
        settings.idle.pause_after = Duration::from_secs(pause);
        settings.idle.stop_after = Duration::from_secs(stop);
        settings.idle.check_interval = Duration::from_millis(500);
    }
}

#[tokio::test]
async fn an_idle_instance_is_paused_then_stopped_by_the_policy_and_says_why() {
    let app = spawn_app_with_docker(quick_idle(3, 8)).await;
    let (id, sandbox) = ready_instance(&app).await;
    let ready = instance(&app, &id).await;
    assert_eq!(ready["stop_reason"], Value::Null);
    assert_eq!(ready["keep_awake"], false);

    let paused = wait_status(&app, &id, "paused", Duration::from_secs(15)).await;
    assert_eq!(paused["stop_reason"], "idle", "{paused}");
    assert_eq!(docker_state(&sandbox), "paused", "the engine froze the sandbox");
    let status = json(app.api(Method::GET, &format!("/api/instances/{id}/status")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!((status["status"].as_str(), status["container"]["state"].as_str()), (Some("paused"), Some("paused")), "{status}");

    let stopped = wait_status(&app, &id, "stopped", Duration::from_secs(20)).await;
    assert_eq!(stopped["stop_reason"], "idle", "{stopped}");
    assert_eq!(docker_state(&sandbox), "exited");
    let last_active: chrono::DateTime<chrono::Utc> = stopped["last_active_at"].as_str().unwrap().parse().unwrap();
    assert!(chrono::Utc::now() - last_active >= chrono::Duration::seconds(8), "stopped after 8 s idle: {stopped}");

    // A file call on a stopped instance says so; starting it clears the reason.
    let refused = app.api(Method::GET, &format!("/api/instances/{id}/files?path=/workspace")).send().await.unwrap();
    assert_error(refused, StatusCode::CONFLICT, "instance_stopped").await;
    json(post(&app, &id, "start").await, StatusCode::ACCEPTED).await;
    let again = wait_status(&app, &id, "ready", Duration::from_secs(90)).await;
    assert_eq!(again["stop_reason"], Value::Null, "{again}");
}

#[tokio::test]
async fn a_stranger_calling_someone_elses_instance_does_not_keep_it_awake() {
    let app = spawn_app_with_docker(quick_idle(3, 600)).await;
    let (id, _) = ready_instance(&app).await;
    let stranger = ocaas::auth::service::create_user(&app.db, "stranger@example.com", crate::helpers::PASSWORD, None).await.unwrap();
    let key = ocaas::auth::service::create_api_key(&app.db, stranger.id, None, None).await.unwrap().key;
    let poller = {
        let (client, url) = (app.client.clone(), app.url(&format!("/api/instances/{id}/files?path=/workspace")));
        tokio::spawn(async move {
            for _ in 0..200 {
                let answer = client.get(&url).bearer_auth(&key).send().await.unwrap();
                assert_eq!(answer.status(), StatusCode::NOT_FOUND);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let paused = wait_status(&app, &id, "paused", Duration::from_secs(15)).await;
    assert_eq!(paused["stop_reason"], "idle", "{paused}");
    poller.abort();
}

#[tokio::test]
async fn a_turn_streaming_longer_than_the_idle_interval_and_an_open_terminal_keep_it_awake() {
    let app = spawn_app_with_docker(quick_idle(2, 0)).await;
    let (id, sandbox) = ready_instance(&app).await;

    // 12 pieces 500 ms apart: a 6 s turn, three times the idle interval.
    let started = Instant::now();
    let response = app
        .api(Method::POST, &format!("/api/instances/{id}/chat/stream"))
        .json(&json!({"message": "/slow 500 a b c d e f g h i j k l"}))
        .send()
        .await
        .unwrap();
    let events = SseReader::new(response).all(Duration::from_secs(30)).await;
    assert!(started.elapsed() > Duration::from_secs(5), "the turn took {:?}", started.elapsed());
    let complete = events.iter().find(|e| e.event == "complete").expect("the turn completed");
    assert_eq!(complete.data["assistant_message"]["status"], "complete", "{:?}", complete.data);
    assert_eq!(instance(&app, &id).await["status"], "ready", "never paused during the turn");

    // An open terminal, idle itself, keeps the instance awake for as long as it is open.
    let url = app.url(&format!("/api/instances/{id}/terminal/ws"));
    let terminal = crate::ws::open_with_key(&url, &app.user.key).await.expect("terminal handshake");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(instance(&app, &id).await["status"], "ready", "an open terminal keeps it awake");
    assert_eq!(docker_state(&sandbox), "running");
    drop(terminal);
    let paused = wait_status(&app, &id, "paused", Duration::from_secs(10)).await;
    assert_eq!(paused["stop_reason"], "idle");
}

#[tokio::test]
async fn pause_keeps_every_process_and_its_memory_and_resume_brings_them_back() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    // A process holding 64 MiB it wrote, started before the pause.
    let script = "nohup python3 -c 'import time; b = bytearray(64 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\ntime.sleep(3600)' \
                  >/dev/null 2>&1 & echo $!";
    let pid = sandbox_sh(&sandbox, script);
    assert!(pid.parse::<u32>().is_ok(), "{pid}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = |sandbox: &str| sandbox_sh(sandbox, &format!("grep VmRSS /proc/{pid}/status"));
    let before = rss(&sandbox);
    assert!(before.contains("kB"), "{before}");

    let paused = json(post(&app, &id, "pause").await, StatusCode::OK).await;
    assert_eq!((paused["status"].as_str(), paused["stop_reason"].clone()), (Some("paused"), Value::Null), "a user's pause has no reason");
    assert_eq!(docker_state(&sandbox), "paused");
    assert_error(post(&app, &id, "pause").await, StatusCode::CONFLICT, "invalid_state").await;

    let resumed = json(post(&app, &id, "resume").await, StatusCode::OK).await;
    assert_eq!(resumed["status"], "ready");
    assert_eq!(docker_state(&sandbox), "running");
    assert_eq!(rss(&sandbox), before, "same process, same memory");
    assert_error(post(&app, &id, "resume").await, StatusCode::CONFLICT, "invalid_state").await;

    // Starting a paused instance resumes it, processes and all.
    json(post(&app, &id, "pause").await, StatusCode::OK).await;
    assert_eq!(json(post(&app, &id, "start").await, StatusCode::ACCEPTED).await["status"], "ready");
    assert_eq!(rss(&sandbox), before, "start from paused keeps the process too");

    // Reboot and delete work from paused too.
    json(post(&app, &id, "pause").await, StatusCode::OK).await;
    json(post(&app, &id, "reboot").await, StatusCode::ACCEPTED).await;
    wait_status(&app, &id, "ready", Duration::from_secs(90)).await;
    json(post(&app, &id, "pause").await, StatusCode::OK).await;
    let deleted = app.api(Method::DELETE, &format!("/api/instances/{id}")).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    assert_eq!(docker_state(&sandbox), "missing");
}

#[tokio::test]
async fn chat_wakes_a_paused_and_a_stopped_instance() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _sandbox) = ready_instance(&app).await;
    let chat = format!("/api/instances/{id}/chat");

    json(post(&app, &id, "pause").await, StatusCode::OK).await;
    let answer = json(app.api(Method::POST, &chat).json(&json!({"message": "/echo from paused"})).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(answer["assistant_message"]["content"], "from paused");
    assert_eq!(instance(&app, &id).await["status"], "ready");

    // Files and commands resume a paused instance too.
    json(post(&app, &id, "pause").await, StatusCode::OK).await;
    let listed = app.api(Method::GET, &format!("/api/instances/{id}/files?path=/workspace")).send().await.unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert_eq!(instance(&app, &id).await["status"], "ready");

    json(post(&app, &id, "shutdown").await, StatusCode::ACCEPTED).await;
    wait_status(&app, &id, "stopped", Duration::from_secs(30)).await;
    let response = app.api(Method::POST, &format!("{chat}/stream")).json(&json!({"message": "/echo from stopped"})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let events = SseReader::new(response).all(Duration::from_secs(120)).await;
    assert_eq!((events[0].event.as_str(), events[0].data["state"].as_str()), ("status", Some("starting")), "{events:?}");
    let complete = events.iter().find(|e| e.event == "complete").unwrap_or_else(|| panic!("no complete event: {events:?}"));
    assert_eq!(complete.data["assistant_message"]["content"], "from stopped");
    assert_eq!(instance(&app, &id).await["status"], "ready");
}

#[tokio::test]
async fn without_wake_on_use_a_paused_instance_answers_409_and_keep_awake_is_limited_by_the_plan() {
    let app = spawn_app_with_docker(|settings| {
        settings.idle.wake_on_use = false;
        settings.idle.keep_awake_max = 1;
    })
    .await;
    let (id, _sandbox) = ready_instance(&app).await;
    json(post(&app, &id, "pause").await, StatusCode::OK).await;
    let refused = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/echo hi"})).send().await.unwrap();
    assert_error(refused, StatusCode::CONFLICT, "instance_not_running").await;
    assert_eq!(instance(&app, &id).await["status"], "paused");

    let patch = |id: String, body: Value| app.api(Method::PATCH, &format!("/api/instances/{id}")).json(&body).send();
    let pinned = json(patch(id.clone(), json!({"keep_awake": true, "name": "pinned"})).await.unwrap(), StatusCode::OK).await;
    assert_eq!((pinned["keep_awake"].as_bool(), pinned["name"].as_str()), (Some(true), Some("pinned")));
    let second = app.ready_instance_row().await.to_string();
    assert_error(patch(second.clone(), json!({"keep_awake": true})).await.unwrap(), StatusCode::FORBIDDEN, "keep_awake_limit").await;
    assert_error(patch(second, json!({"keep_wake": true})).await.unwrap(), StatusCode::BAD_REQUEST, "invalid_request").await;
    let unpinned = json(patch(id, json!({"keep_awake": false})).await.unwrap(), StatusCode::OK).await;
    assert_eq!((unpinned["keep_awake"].as_bool(), unpinned["name"].as_str()), (Some(false), Some("pinned")), "absent fields stay");
}
