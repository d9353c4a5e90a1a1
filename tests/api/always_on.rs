//! The always-on agent against real sandboxes and the stand-in gateway implementing the
//! gateway's methods as documented: configuration patched and visible, a patch that keeps the
//! gateway from starting rolled back by itself; a Telegram token set, never returned and kept
//! out of logs; the WhatsApp QR login; a DM pairing approved; a schedule due on a paused
//! instance run on time into history; a connected channel keeping its instance awake past the
//! idle timeout while another pauses; an approval request on the agent feed, approved, and the
//! tool then run. What ocaas writes into the gateway's configuration is checked against the
//! configuration schema.

use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, json, ready_instance, sandbox_sh, spawn_app_with_docker};
use crate::idle::{docker_state, wait_status};
use crate::sse::{SseEvent, SseReader};

const WAIT: Duration = Duration::from_secs(30);

fn at(id: &str, op: &str) -> String {
    format!("/api/instances/{id}/{op}")
}

async fn get(app: &TestApp, path: &str) -> Value {
    json(app.api(Method::GET, path).send().await.unwrap(), StatusCode::OK).await
}

async fn agent_feed(app: &TestApp, id: &str) -> SseReader {
    let response = app.api(Method::GET, &at(id, "agent/events")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut reader = SseReader::new(response);
    assert_eq!(reader.next(WAIT).await.unwrap().event, "ready");
    reader
}

/// The next event named `name` whose data satisfies `want`, within `limit`.
async fn next_event(reader: &mut SseReader, name: &str, limit: Duration, want: impl Fn(&Value) -> bool) -> SseEvent {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(event) = reader.next(deadline - Instant::now()).await
            && event.event == name
            && want(&event.data)
        {
            return event;
        }
    }
    panic!("no `{name}` event within {limit:?}");
}

#[tokio::test]
async fn a_config_patch_is_applied_and_one_that_stops_the_gateway_is_rolled_back_by_itself() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let config = get(&app, &at(&id, "config")).await;
    assert_eq!(config["config"]["gateway"]["auth"]["token"], "__OPENCLAW_REDACTED__", "secrets are redacted: {config}");
    assert_eq!(config["valid"], true);

    let patched = app.api(Method::PATCH, &at(&id, "config")).json(&json!({"logging": {"level": "debug"}})).send().await.unwrap();
    let patched = json(patched, StatusCode::OK).await;
    assert_eq!(patched["config"]["logging"]["level"], "debug");
    let seen = get(&app, &at(&id, "config")).await;
    assert_eq!(seen["config"]["logging"]["level"], "debug", "visible on the next read");
    assert!(sandbox_sh(&sandbox, "cat /agent-state/openclaw.json").contains("\"debug\""), "in the gateway's file");

    // Refused before anything is applied: unknown keys, keys ocaas manages, a stale version.
    let unknown = app.api(Method::PATCH, &at(&id, "config")).json(&json!({"bogus": 1})).send().await.unwrap();
    let body = assert_error(unknown, StatusCode::UNPROCESSABLE_ENTITY, "invalid_config").await;
    assert!(body["message"].as_str().unwrap().contains("bogus"), "{body}");
    let reserved = app.api(Method::PATCH, &at(&id, "config")).json(&json!({"gateway": {"auth": {"token": "mine"}}})).send().await.unwrap();
    assert_error(reserved, StatusCode::UNPROCESSABLE_ENTITY, "invalid_config").await;
    let stale =
        app.api(Method::PATCH, &at(&id, "config")).header("If-Match", config["hash"].as_str().unwrap()).json(&json!({"logging": {"level": "info"}}));
    assert_error(stale.send().await.unwrap(), StatusCode::PRECONDITION_FAILED, "config_changed").await;

    // Valid for the schema, fatal at start: the gateway cannot listen on an address it lacks.
    let mut feed = agent_feed(&app, &id).await;
    let started = Instant::now();
    let fatal = json!({"gateway": {"bind": "custom", "customBindHost": "203.0.113.7"}});
    let answer = json(app.api(Method::PATCH, &at(&id, "config")).json(&fatal).send().await.unwrap(), StatusCode::OK).await;
    assert!(answer["rollback_deadline"].is_string(), "on probation: {answer}");
    let notice = next_event(&mut feed, "system_notification", Duration::from_secs(60), |_| true).await;
    let spec: Value = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().json().await.unwrap();
    crate::conformance::frames_match(&spec, "/api/instances/{instanceId}/agent/events", "get", std::slice::from_ref(&notice));
    assert!(notice.data["message"].as_str().unwrap().contains("rolled back"), "{:?}", notice.data);
    wait_status(&app, &id, "ready", Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(75), "ready again within the stated time, took {took:?}");
    let back = get(&app, &at(&id, "config")).await;
    assert_eq!(back["config"]["gateway"]["bind"], "lan", "the last good configuration is back: {back}");
    assert_eq!(back["config"]["logging"]["level"], "debug", "with the confirmed change kept");
    assert!(back["last_rollback"]["reason"].as_str().unwrap().contains("configuration change"), "{back}");
    let chat = app.api(Method::POST, &at(&id, "chat")).json(&json!({"message": "/echo still here"})).send().await.unwrap();
    assert_eq!(json(chat, StatusCode::OK).await["assistant_message"]["content"], "still here");

    let doctor = get(&app, &at(&id, "doctor")).await;
    assert_eq!(doctor["ok"], true, "{doctor}");
    let restarted = json(app.api(Method::POST, &at(&id, "gateway/restart")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(restarted["ready"], true, "{restarted}");
    println!("rollback to ready: {took:?}; restart: {} ms", restarted["took_ms"]);
}

#[tokio::test]
async fn channels_tokens_stay_secret_whatsapp_links_by_qr_and_a_dm_pairing_is_approved() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let secret = "7301942257:AAHsecret-token-never-shown";
    let set = app.api(Method::PUT, &at(&id, "channels/telegram")).json(&json!({"bot_token": secret})).send().await.unwrap();
    let raw = set.text().await.unwrap();
    assert!(!raw.contains("AAHsecret"), "the token is never returned: {raw}");
    let channel: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!((channel["token_set"].as_bool(), channel["connected"].as_bool()), (Some(true), Some(true)), "{channel}");
    for path in ["channels", "config", "agent", "logs?tail=1000"] {
        let text = app.api(Method::GET, &at(&id, path)).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains("AAHsecret"), "GET {path} shows the token: {text:.300}");
    }
    let audit = app.api(Method::GET, "/api/account/audit").send().await.unwrap().text().await.unwrap();
    assert!(audit.contains("channel_set") && !audit.contains("AAHsecret"), "{audit:.500}");
    assert!(sandbox_sh(&sandbox, "cat /agent-state/openclaw.json").contains(secret), "the gateway's configuration has it");
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT secret_sealed FROM channel_secrets").fetch_one(&app.db).await.unwrap();
    assert!(!sealed.windows(9).any(|w| w == b"AAHsecret"), "sealed in the database");
    let bad = app.api(Method::PUT, &at(&id, "channels/telegram")).json(&json!({"bot_token": "has space"})).send().await.unwrap();
    assert_error(bad, StatusCode::BAD_REQUEST, "invalid_request").await;
    let unknown = app.api(Method::PUT, &at(&id, "channels/fax")).json(&json!({"bot_token": "x"})).send().await.unwrap();
    assert_error(unknown, StatusCode::BAD_REQUEST, "invalid_request").await;

    // WhatsApp: a QR code to scan, then linked.
    let login = json(app.api(Method::POST, &at(&id, "channels/whatsapp/login")).send().await.unwrap(), StatusCode::OK).await;
    let url = login["qr_data_url"].as_str().expect("a QR code");
    let png = base64::engine::general_purpose::STANDARD.decode(url.strip_prefix("data:image/png;base64,").unwrap()).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 200, "a PNG image");
    sandbox_sh(&sandbox, "openclaw standin scan-whatsapp");
    let linked = get(&app, &at(&id, "channels/whatsapp/login?timeout_ms=5000")).await;
    assert_eq!(linked["connected"], true, "{linked}");

    // A stranger writes to the bot; the user lets them in.
    let request: Value = serde_json::from_str(&sandbox_sh(&sandbox, "openclaw standin dm telegram 4242 Ann")).unwrap();
    let pairings = get(&app, &at(&id, "pairings")).await;
    assert_eq!(pairings[0]["id"], request["requestId"], "{pairings}");
    assert_eq!(pairings[0]["sender_label"], "Ann");
    let approve = app.api(Method::POST, &at(&id, &format!("pairings/{}", request["requestId"].as_str().unwrap()))).json(&json!({"approve": true}));
    assert_eq!(approve.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(get(&app, &at(&id, "pairings")).await, json!([]));
    let allowed = get(&app, &at(&id, "config")).await;
    assert_eq!(allowed["config"]["channels"]["telegram"]["allowFrom"], json!(["4242"]), "{allowed}");
    let gone = app.api(Method::POST, &at(&id, "pairings/nope")).json(&json!({"approve": true})).send().await.unwrap();
    assert_error(gone, StatusCode::NOT_FOUND, "pairing_not_found").await;

    // Disconnected: token gone from the configuration and the server.
    assert_eq!(app.api(Method::DELETE, &at(&id, "channels/telegram")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(!sandbox_sh(&sandbox, "cat /agent-state/openclaw.json").contains(secret));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM channel_secrets").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_schedule_due_on_a_paused_instance_runs_on_time_and_lands_in_history() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let due = chrono::Utc::now() + chrono::Duration::seconds(60);
    let body = json!({"name": "morning note", "at": due.to_rfc3339(), "message": "/echo scheduled hello"});
    let made = json(app.api(Method::POST, &at(&id, "schedules")).json(&body).send().await.unwrap(), StatusCode::CREATED).await;
    assert_eq!(made["next_run_at"].as_str().map(|s| s[..19].to_owned()), Some(due.format("%Y-%m-%dT%H:%M:%S").to_string()), "{made}");
    let status = get(&app, &at(&id, "agent")).await;
    assert!(status["next_run_at"].is_string(), "the idle policy knows the next run: {status}");
    let mut feed = agent_feed(&app, &id).await;
    assert_eq!(app.api(Method::POST, &at(&id, "pause")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(docker_state(&sandbox), "paused");

    // Woken ahead of the run by the server, not by a call.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut woken_at = None;
    let mut answered = None;
    while Instant::now() < deadline && answered.is_none() {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let state: String = sqlx::query_scalar("SELECT status FROM instances WHERE id = $1::uuid").bind(&id).fetch_one(&app.db).await.unwrap();
        if woken_at.is_none() && state == "ready" {
            woken_at = Some(chrono::Utc::now());
        }
        let text: Option<String> = sqlx::query_scalar(
            "SELECT m.content FROM chat_messages m JOIN chat_sessions s ON s.id = m.session_id
             WHERE s.instance_id = $1::uuid AND s.origin = 'gateway' AND m.role = 'assistant' AND m.content LIKE '%scheduled hello%'",
        )
        .bind(&id)
        .fetch_optional(&app.db)
        .await
        .unwrap();
        answered = text.map(|_| chrono::Utc::now());
    }
    let woken_at = woken_at.expect("the paused instance was woken for its schedule");
    let answered = answered.expect("the scheduled turn's answer landed in history");
    assert!(woken_at < due, "woken before the run ({woken_at} vs {due})");
    let late = (answered - due).num_milliseconds();
    assert!((-1000..10_000).contains(&late), "ran on time: answered {late} ms after it was due");
    let ran = next_event(&mut feed, "schedule_run", WAIT, |r| r["schedule_id"] == made["id"]).await;
    assert_eq!(ran.data["status"], "ok", "{:?}", ran.data);
    let spec: Value = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().json().await.unwrap();
    crate::conformance::frames_match(&spec, "/api/instances/{instanceId}/agent/events", "get", std::slice::from_ref(&ran));
    let runs = get(&app, &at(&id, &format!("schedules/{}/runs", made["id"].as_str().unwrap()))).await;
    assert_eq!(runs[0]["status"], "ok", "{runs}");
    let sessions = get(&app, &at(&id, "chat/sessions")).await;
    assert!(sessions.as_array().unwrap().iter().any(|s| s["origin"] == "gateway"), "{sessions}");
    println!("woken {} s before the run; answer in history {late} ms after it was due", (due - woken_at).num_seconds());
}

#[tokio::test]
async fn a_connected_channel_keeps_its_instance_awake_past_the_idle_timeout_while_another_pauses() {
    let app = spawn_app_with_docker(|settings| {
        settings.idle.pause_after = Duration::from_secs(6);
        settings.idle.check_interval = Duration::from_millis(500);
    })
    .await;
    let (with_channel, _) = ready_instance(&app).await;
    let (without, _) = ready_instance(&app).await;
    let set = app.api(Method::PUT, &at(&with_channel, "channels/discord")).json(&json!({"bot_token": "discord-bot-token-1"})).send().await.unwrap();
    assert_eq!(json(set, StatusCode::OK).await["connected"], true);
    wait_status(&app, &without, "paused", Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    let kept = get(&app, &format!("/api/instances/{with_channel}")).await;
    assert_eq!(kept["status"], "ready", "a connected channel keeps it awake: {kept}");
    let status = get(&app, &at(&with_channel, "agent")).await;
    assert_eq!((status["awake_reason"].as_str(), status["live_channels"].clone()), (Some("channel"), json!(["discord"])), "{status}");
}

#[tokio::test]
async fn an_approval_request_shows_on_the_feed_is_approved_and_the_tool_then_runs() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let policy = json!({"exec": "ask", "web": "allow", "browser": "deny"});
    let set = json(app.api(Method::PUT, &at(&id, "tool-policy")).json(&policy).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(set, policy);
    let mut feed = agent_feed(&app, &id).await;
    let turn = app.api(Method::POST, &at(&id, "chat/stream")).json(&json!({"message": "/exec echo approved-run"})).send().await.unwrap();
    let mut stream = SseReader::new(turn);
    let asked = next_event(&mut feed, "approval", WAIT, |a| a["status"] == "pending").await;
    assert_eq!(asked.data["command"], "echo approved-run", "{:?}", asked.data);
    let approval_id = asked.data["id"].as_str().unwrap().to_owned();
    let listed = get(&app, &at(&id, "approvals?pending=true")).await;
    assert_eq!(listed[0]["id"], approval_id.as_str());
    let answer = app.api(Method::POST, &at(&id, &format!("approvals/{approval_id}"))).json(&json!({"decision": "allow_once"}));
    let answered = json(answer.send().await.unwrap(), StatusCode::OK).await;
    assert_eq!((answered["status"].as_str(), answered["decision"].as_str()), (Some("allowed"), Some("allow_once")));
    let closed = next_event(&mut feed, "approval", WAIT, |a| a["status"] != "pending").await;
    assert_eq!(closed.data["id"], approval_id.as_str());
    let spec: Value = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().json().await.unwrap();
    crate::conformance::frames_match(&spec, "/api/instances/{instanceId}/agent/events", "get", &[asked.clone(), closed.clone()]);
    let again = app.api(Method::POST, &at(&id, &format!("approvals/{approval_id}"))).json(&json!({"decision": "deny"}));
    assert_error(again.send().await.unwrap(), StatusCode::CONFLICT, "approval_closed").await;
    let mut output = String::new();
    while let Some(event) = stream.next(WAIT).await {
        if event.event == "complete" {
            output = event.data["assistant_message"]["content"].as_str().unwrap_or_default().to_owned();
            break;
        }
    }
    assert!(output.contains("approved-run"), "the tool ran after the approval: {output}");
}

#[tokio::test]
async fn a_schema_bomb_from_the_sandbox_costs_the_server_a_bounded_helper_not_its_memory() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    // A few hundred bytes whose validation is exponential in the depth of the value checked.
    let branch = |key: &str| json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/n"}}, "required": [key]});
    let bomb =
        json!({"$defs": {"n": {"anyOf": [branch("b"), branch("c"), branch("d")]}}, "type": "object", "properties": {"meta": {"$ref": "#/$defs/n"}}});
    sandbox_sh(&sandbox, &format!("printf '%s' '{bomb}' > /agent-state/standin-schema.json"));
    let mut deep = json!({});
    for _ in 0..24 {
        deep = json!({"a": deep});
    }
    let rss_before = rss_kib();
    let started = Instant::now();
    let answer = app.api(Method::PATCH, &at(&id, "config")).json(&json!({"meta": deep})).send().await.unwrap();
    let took = started.elapsed();
    let body = assert_error(answer, StatusCode::UNPROCESSABLE_ENTITY, "gateway_rejected").await;
    assert!(body["message"].as_str().unwrap().contains("could not be checked"), "{body}");
    assert!(took < Duration::from_secs(15), "bounded in time: {took:?}");
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 100 * 1024, "the server's own memory grew by {grown} KiB");
    // Nothing was applied, and the instance still takes changes.
    assert!(!sandbox_sh(&sandbox, "cat /agent-state/openclaw.json").contains("\"meta\""));
    sandbox_sh(&sandbox, "rm /agent-state/standin-schema.json");
    let ok = app.api(Method::PATCH, &at(&id, "config")).json(&json!({"logging": {"level": "info"}})).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    println!("schema bomb refused in {took:?}; server RSS grew {grown} KiB");
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap()
}

#[tokio::test]
async fn what_ocaas_writes_into_the_gateway_configuration_passes_its_schema_and_keeps_the_users_keys() {
    let dir = tempdir();
    let path = dir.join("openclaw.json");
    let run = || {
        let status = std::process::Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/sandbox/write_config.py"))
            .arg(&path)
            .env("OPENCLAW_GATEWAY_TOKEN", "tok-123")
            .env("OCAAS_LLM_BASE_URL", "http://172.17.0.1:18800/v1")
            .env("OCAAS_LLM_API_KEY", "broker-key")
            .env("OCAAS_LLM_MODEL", "gpt-test")
            .status()
            .unwrap();
        assert!(status.success());
    };
    let validate = |path: &std::path::Path| {
        let script =
            "import json,sys,jsonschema; jsonschema.Draft202012Validator(json.load(open(sys.argv[1]))).validate(json.load(open(sys.argv[2])))";
        let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/offline/openclaw-config.schema.json");
        let out = std::process::Command::new("python3").args(["-c", script, schema]).arg(path).output().unwrap();
        assert!(out.status.success(), "the configuration fails the gateway's schema: {}", String::from_utf8_lossy(&out.stderr));
    };
    run();
    validate(&path);
    // A user's change survives the next start; ocaas's keys are written again.
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["channels"] = json!({"telegram": {"botToken": "1:x", "dmPolicy": "pairing"}});
    config["gateway"]["auth"]["token"] = json!("tampered");
    std::fs::write(&path, config.to_string()).unwrap();
    run();
    validate(&path);
    let after: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(after["channels"]["telegram"]["botToken"], "1:x");
    assert_eq!(after["gateway"]["auth"]["token"], "tok-123");
    assert_eq!(after["models"]["providers"]["operator"]["models"][0]["id"], "gpt-test");
    // The schema is strict: an unknown key is refused (as the gateway refuses to start).
    std::fs::write(&path, json!({"bogus": true}).to_string()).unwrap();
    let script = "import json,sys,jsonschema; jsonschema.Draft202012Validator(json.load(open(sys.argv[1]))).validate(json.load(open(sys.argv[2])))";
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/offline/openclaw-config.schema.json");
    let out = std::process::Command::new("python3").args(["-c", script, schema]).arg(&path).output().unwrap();
    assert!(!out.status.success(), "an unknown key must fail the schema");
    let _ = std::fs::remove_dir_all(dir);
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ocaas-config-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
