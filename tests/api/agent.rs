//! The agent-facing surfaces: the texts name every endpoint and only this server's origin, the
//! helper client (as served) drives a live server through every command, and every curl example
//! of the public API reference works against the running server.

use std::path::Path;
use std::process::Command;

use regex::Regex;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{TestApp, json, ready_instance, spawn_app_with, spawn_app_with_docker};

const TEXTS: [&str; 5] = [
    "/llms.txt",
    "/llms-full.md",
    "/agent.md",
    "/skills/openclaw-api-control/SKILL.md",
    "/skills/openclaw-api-control/scripts/openclaw_api_client.mjs",
];

async fn text(app: &TestApp, path: &str) -> String {
    let response = app.anon(Method::GET, path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    response.text().await.unwrap()
}

#[tokio::test]
async fn llms_full_mentions_every_path_of_the_spec() {
    let app = spawn_app_with(|_| {}).await;
    let full = text(&app, "/llms-full.md").await;
    let spec = serde_json::to_value(ocaas::router::openapi()).unwrap();
    for path in spec["paths"].as_object().unwrap().keys() {
        assert!(full.contains(path.as_str()), "llms-full.md does not mention {path}");
    }
    for path in ocaas::docs::root::RESOURCES {
        assert!(text(&app, "/llms.txt").await.contains(path), "llms.txt lacks {path}");
    }
}

#[tokio::test]
async fn agent_texts_name_only_the_public_origin() {
    let app = spawn_app_with(|s| s.public_url = Some("https://claw.example.test".into())).await;
    let urls = Regex::new(r#"(?:https?|wss?)://[^\s)`'"<>]+"#).unwrap();
    let mut bodies: Vec<(String, String)> = Vec::new();
    for path in TEXTS {
        bodies.push((path.to_owned(), text(&app, path).await));
    }
    bodies.push(("/api".into(), text(&app, "/api").await));
    for (path, body) in &bodies {
        let found: Vec<&str> = urls.find_iter(body).map(|m| m.as_str()).collect();
        assert!(!found.is_empty(), "{path} has no links");
        for url in found {
            assert!(url.starts_with("https://claw.example.test") || url.starts_with("wss://claw.example.test"), "{path} mentions {url}");
        }
    }
    let skill = &bodies[3].1;
    assert!(skill.starts_with("---\nname: openclaw-api-control\ndescription: "), "SKILL.md front matter");
    let client = &bodies[4].1;
    assert!(client.contains("'https://claw.example.test/api'"), "the client defaults to this server's API");
}

/// Runs the served helper client with `args`; returns (exit success, stdout, stderr).
fn node(script: &Path, env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let output = Command::new("node")
        .arg(script)
        .args(args)
        .env_remove("OPENCLAW_INSTANCE_ID")
        .envs(env.iter().copied())
        .output()
        .expect("the helper client needs Node >= 20 (`node` on PATH)");
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

fn ok(script: &Path, env: &[(&str, &str)], args: &[&str]) -> Value {
    let (success, stdout, stderr) = node(script, env, args);
    assert!(success, "client {args:?} failed: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|_| panic!("client {args:?} printed non-JSON: {stdout}"))
}

fn ndjson(script: &Path, env: &[(&str, &str)], args: &[&str]) -> Vec<Value> {
    let (success, stdout, stderr) = node(script, env, args);
    assert!(success, "client {args:?} failed: {stderr}");
    stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

fn wait_for_status(script: &Path, env: &[(&str, &str)], id: &str, want: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let instance = ok(script, env, &["instances", "get", "--instance", id]);
        if instance["status"] == want {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "instance never became {want}: {instance}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[tokio::test]
async fn the_served_helper_client_drives_every_command() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let dir = std::env::temp_dir().join(format!("ocaas-client-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("tree/sub")).unwrap();
    let script = dir.join("openclaw_api_client.mjs");
    std::fs::write(&script, text(&app, TEXTS[4]).await).unwrap();
    std::fs::write(dir.join("tree/a.txt"), "alpha").unwrap();
    std::fs::write(dir.join("tree/sub/b.bin"), [0u8, 159, 146, 150, 255]).unwrap();
    let base = app.address.clone();
    let key = app.user.key.clone();
    let tree = dir.join("tree").to_string_lossy().into_owned();
    let out = dir.join("back.bin").to_string_lossy().into_owned();
    let script2 = script.clone();
    let invite = app.invite(1, 5).await;

    tokio::task::spawn_blocking(move || {
        let script = script2.as_path();
        let env = [("OPENCLAW_API_KEY", key.as_str()), ("OPENCLAW_API_BASE_URL", base.as_str())];
        let env = &env[..];
        assert_eq!(ok(script, env, &["root"])["api_root"], format!("{base}/api"), "a base URL without /api gets it appended");
        assert_eq!(ok(script, env, &["instances", "list"])[0]["id"], id.as_str());
        let audit = ok(script, env, &["account", "audit", "--limit", "1"]);
        assert_eq!(audit["events"][0]["action"], "instance_created", "{audit}");
        assert_eq!(audit["events"][0]["target"], id.as_str());
        assert_eq!(ok(script, env, &["instances", "get"])["id"], id.as_str(), "the first ready instance is the default");
        assert_eq!(ok(script, env, &["instances", "status"])["agent"]["ready"], true);
        let from = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let usage = ok(script, env, &["instances", "usage", "--from", &from]);
        assert_eq!(ok(script, env, &["instances", "model"])["provider"], "operator");
        assert_eq!(ok(script, env, &["instances", "set-limit", "--monthly-tokens", "5000"])["monthly_token_limit"], 5000);
        assert_eq!(ok(script, env, &["instances", "limits"])["used_this_month"], 0);
        assert!(ok(script, env, &["instances", "set-limit", "--monthly-tokens", "none"])["monthly_token_limit"].is_null());
        let set = ok(
            script,
            env,
            &["instances", "set-model", "--provider", "custom", "--provider-url", "https://203.0.113.10/v1", "--model", "m1", "--api-key", "k1"],
        );
        assert_eq!((set["provider"].as_str(), set["api_key_set"].as_bool()), (Some("custom"), Some(true)), "{set}");
        assert_eq!(ok(script, env, &["instances", "set-model", "--provider", "operator"])["api_key_set"], false);
        assert_eq!(usage["totals"]["requests"], 0, "{usage}");
        let account_usage = ok(script, env, &["account", "usage"]);
        assert!(account_usage["days"].as_array().unwrap().is_empty(), "{account_usage}");
        let logs = ok(script, env, &["instances", "logs", "--tail", "500"]);
        assert!(logs["lines"].as_array().unwrap().iter().any(|l| l["text"].as_str().unwrap().starts_with("[gateway] listening")), "{logs}");
        assert!(ok(script, env, &["instances", "vnc-url"])["ws_url"].as_str().unwrap().contains("ticket="));

        let exchange = ok(script, env, &["chat", "send", "--message", "/echo hello from node"]);
        assert_eq!(exchange["assistant_message"]["status"], "complete");
        let session = exchange["session_id"].as_str().unwrap().to_owned();
        let events = ndjson(script, env, &["chat", "send", "--session", &session, "--stream", "--message", "/echo streamed"]);
        assert_eq!(events.first().unwrap()["event"], "status");
        assert_eq!(events.last().unwrap()["event"], "complete");
        assert!(events.iter().any(|e| e["event"] == "message"
            && e["data"]["message"]["role"] == "assistant"
            && e["data"]["message"]["content"].as_str().unwrap().contains("streamed")));
        let tail = ok(script, env, &["chat", "tail", "--session", &session, "--limit", "2"]);
        assert_eq!(tail.as_array().unwrap().len(), 2);
        let first_id = tail[0]["id"].as_str().unwrap().to_owned();
        let after = ok(script, env, &["chat", "messages", "--session", &session, "--after", &first_id]);
        assert_eq!(after.as_array().unwrap().len(), 1);
        let feed = ndjson(script, env, &["chat", "events", "--session", &session, "--max-events", "1", "--timeout-ms", "10000"]);
        assert_eq!(feed[0]["event"], "ready");
        assert!(ok(script, env, &["chat", "sessions"]).as_array().unwrap().iter().any(|s| s["id"] == session.as_str()));
        assert_eq!(ok(script, env, &["chat", "new-session", "--title", "from node"])["title"], "from node");

        ok(script, env, &["files", "mkdir", "--path", "/workspace/node"]);
        ok(script, env, &["files", "write", "--path", "/workspace/node/hi.txt", "--content", "héllo"]);
        assert_eq!(ok(script, env, &["files", "read", "--path", "/workspace/node/hi.txt"])["content"], "héllo");
        ok(script, env, &["files", "upload", "--src", &format!("{tree}/sub/b.bin"), "--dest", "/workspace/node"]);
        ok(script, env, &["files", "upload-tree", "--src", &tree, "--dest", "/workspace/node/tree"]);
        let listed = ok(script, env, &["files", "list", "--path", "/workspace/node/tree/sub"]);
        assert_eq!(listed["entries"][0]["name"], "b.bin");
        ok(script, env, &["files", "rename", "--from", "/workspace/node/b.bin", "--to", "/workspace/node/c.bin"]);
        ok(script, env, &["files", "download", "--path", "/workspace/node/c.bin", "--out", &out]);
        assert_eq!(std::fs::read(&out).unwrap(), [0u8, 159, 146, 150, 255]);
        ok(script, env, &["files", "delete", "--path", "/workspace/node/tree", "--recursive"]);
        let listed = ok(script, env, &["files", "list", "--path", "/workspace/node"]);
        assert!(listed["entries"].as_array().unwrap().iter().all(|e| e["name"] != "tree"));

        let exec = ok(script, env, &["terminal", "exec", "--command", "cat node/tree/a.txt 2>/dev/null; pwd; exit 4", "--timeout-ms", "5000"]);
        assert_eq!(exec["stdout"], "/workspace\n");
        assert_eq!(exec["exit_code"], 4);

        // Scoped keys: a chat-only key bound to this instance.
        let scoped = ok(script, env, &["account", "create-key", "--name", "chat only", "--scopes", "chat", "--key-instance", &id]);
        assert_eq!((scoped["scopes"].clone(), scoped["instance_id"].as_str()), (serde_json::json!(["chat"]), Some(id.as_str())), "{scoped}");
        let chat_env = [("OPENCLAW_API_KEY", scoped["key"].as_str().unwrap()), ("OPENCLAW_API_BASE_URL", base.as_str())];
        let refused = node(script, &chat_env, &["terminal", "exec", "--command", "id", "--instance", &id]);
        assert!(!refused.0 && refused.2.contains("insufficient_scope"), "{refused:?}");
        assert!(ok(script, env, &["account", "keys"]).as_array().unwrap().iter().any(|k| k["name"] == "chat only"));
        ok(script, env, &["account", "revoke-key", "--key", scoped["id"].as_str().unwrap()]);

        // Organisations and webhooks.
        let org = ok(script, env, &["orgs", "create", "--name", "From node"]);
        let org_id = org["id"].as_str().unwrap();
        let invited = ok(script, env, &["orgs", "invite", "--org", org_id, "--email", "someone@example.com", "--role", "viewer"]);
        assert_eq!(invited["role"], "viewer", "{invited}");
        assert_eq!(ok(script, env, &["orgs", "members", "--org", org_id])[0]["role"], "owner");
        assert_eq!(ok(script, env, &["orgs", "list"])[0]["name"], "From node");
        assert_eq!(ok(script, env, &["orgs", "usage", "--org", org_id])["totals"]["requests"], 0);
        let refused = node(script, env, &["webhooks", "create", "--url", "http://127.0.0.1:9/"]);
        assert!(!refused.0 && refused.2.contains("invalid_request"), "a private receiver is refused: {refused:?}");
        let hook = ok(script, env, &["webhooks", "create", "--url", "https://93.184.216.34/hook", "--events", "snapshot.ready"]);
        assert!(hook["secret"].as_str().unwrap().starts_with("whsec_"), "{hook}");
        let hook_id = hook["id"].as_str().unwrap();
        assert_eq!(ok(script, env, &["webhooks", "disable", "--webhook", hook_id])["disabled"], true);
        assert!(ok(script, env, &["webhooks", "rotate", "--webhook", hook_id])["previous_secret_until"].is_string());
        assert!(ok(script, env, &["webhooks", "deliveries", "--webhook", hook_id]).is_array());
        ok(script, env, &["webhooks", "delete", "--webhook", hook_id]);
        assert_eq!(ok(script, env, &["webhooks", "list"]), serde_json::json!([]));

        // The always-on agent.
        assert!(ok(script, env, &["agent", "status"])["pending_approvals"].is_number());
        assert_eq!(ok(script, env, &["config", "patch", "--json", r#"{"logging":{"level":"warn"}}"#])["config"]["logging"]["level"], "warn");
        assert_eq!(ok(script, env, &["config", "get"])["config"]["gateway"]["auth"]["token"], "__OPENCLAW_REDACTED__");
        assert_eq!(ok(script, env, &["config", "schema"])["type"], "object");
        assert!(ok(script, env, &["agent", "doctor"])["findings"].is_array());
        let channel = ok(script, env, &["channels", "set", "--kind", "slack", "--bot-token", "xoxb-1", "--app-token", "xapp-1"]);
        assert_eq!((channel["kind"].as_str(), channel["token_set"].as_bool()), (Some("slack"), Some(true)), "{channel}");
        assert!(ok(script, env, &["channels", "list"]).as_array().unwrap().iter().any(|c| c["kind"] == "slack" && c["connected"] == true));
        ok(script, env, &["channels", "remove", "--kind", "slack"]);
        assert!(ok(script, env, &["channels", "whatsapp-login"])["qr_data_url"].as_str().unwrap().starts_with("data:image/png"));
        assert_eq!(ok(script, env, &["channels", "whatsapp-wait", "--timeout-ms", "100"])["connected"], false);
        assert_eq!(ok(script, env, &["pairings", "list"]), serde_json::json!([]));
        let schedule = ok(script, env, &["schedules", "create", "--name", "daily", "--cron", "0 8 * * *", "--message", "/echo morning"]);
        let schedule_id = schedule["id"].as_str().unwrap().to_owned();
        assert_eq!(ok(script, env, &["schedules", "update", "--schedule", &schedule_id, "--enabled", "false"])["enabled"], false);
        assert_eq!(ok(script, env, &["schedules", "list"])[0]["cron"], "0 8 * * *");
        assert!(ok(script, env, &["schedules", "run", "--schedule", &schedule_id])["run_id"].is_string());
        ok(script, env, &["schedules", "runs", "--schedule", &schedule_id]);
        ok(script, env, &["schedules", "delete", "--schedule", &schedule_id]);
        assert!(ok(script, env, &["approvals", "list", "--pending"]).as_array().unwrap().is_empty());
        let policy = ok(script, env, &["tools", "set", "--exec", "allow", "--web", "deny", "--browser", "allow"]);
        assert_eq!(policy["web"], "deny");
        assert_eq!(ok(script, env, &["tools", "get"])["web"], "deny");
        let feed = ndjson(script, env, &["agent", "events", "--max-events", "1", "--timeout-ms", "10000"]);
        assert_eq!(feed[0]["event"], "ready");
        assert_eq!(ok(script, env, &["agent", "restart"])["ready"], true);

        let extra = ok(script, env, &["instances", "create", "--invite-code", &invite]);
        let extra_id = extra["id"].as_str().unwrap().to_owned();
        wait_for_status(script, env, &extra_id, "ready");
        ok(script, env, &["instances", "reboot", "--instance", &extra_id]);
        wait_for_status(script, env, &extra_id, "ready");
        ok(script, env, &["instances", "shutdown", "--instance", &extra_id]);
        wait_for_status(script, env, &extra_id, "stopped");
        ok(script, env, &["instances", "start", "--instance", &extra_id]);
        wait_for_status(script, env, &extra_id, "ready");
        assert_eq!(ok(script, env, &["instances", "pause", "--instance", &extra_id])["status"], "paused");
        assert_eq!(ok(script, env, &["instances", "resume", "--instance", &extra_id])["status"], "ready");
        assert_eq!(ok(script, env, &["instances", "keep-awake", "--on", "true", "--instance", &extra_id])["keep_awake"], true);
        assert_eq!(ok(script, env, &["instances", "keep-awake", "--on", "false", "--instance", &extra_id])["keep_awake"], false);
        let snapshot = ok(script, env, &["snapshots", "create", "--name", "from node", "--instance", &extra_id]);
        let sid = snapshot["id"].as_str().unwrap().to_owned();
        assert_eq!((snapshot["status"].as_str(), snapshot["kind"].as_str()), (Some("ready"), Some("manual")), "{snapshot}");
        assert_eq!(ok(script, env, &["snapshots", "list", "--instance", &extra_id])[0]["id"], sid.as_str());
        let saved = ok(script, env, &["snapshots", "download", "--snapshot", &sid, "--out", &out, "--instance", &extra_id]);
        assert_eq!(saved["size"], snapshot["size_bytes"]);
        assert_eq!(ok(script, env, &["snapshots", "restore", "--snapshot", &sid, "--instance", &extra_id])["status"], "restoring");
        wait_for_status(script, env, &extra_id, "ready");
        let upgrade = node(script, env, &["instances", "upgrade", "--instance", &extra_id]);
        assert!(!upgrade.0 && upgrade.2.contains("invalid_state"), "already on the server's image: {upgrade:?}");
        ok(script, env, &["snapshots", "delete", "--snapshot", &sid, "--instance", &extra_id]);
        ok(script, env, &["instances", "delete", "--instance", &extra_id]);

        let bad = [("OPENCLAW_API_KEY", "ocaas_not-a-real-key"), ("OPENCLAW_API_BASE_URL", base.as_str())];
        let (success, _, stderr) = node(script, &bad, &["instances", "list"]);
        assert!(!success, "a bad key fails");
        let error: Value = serde_json::from_str(stderr.trim()).unwrap();
        assert_eq!(error["error"], "unauthorized");
        assert!(error["message"].as_str().unwrap().contains("API key is not valid"), "{error}");
    })
    .await
    .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The ```bash blocks of the API reference that run curl.
fn curl_examples(reference: &str) -> Vec<String> {
    reference
        .split("```bash\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .filter(|block| block.trim_start().starts_with("curl"))
        .map(|block| block.replace("\\\n", " ").trim().to_owned())
        .collect()
}

#[test]
fn the_reference_copy_matches_the_shared_contract() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/api-reference.md");
    if let Ok(contract) = std::fs::read_to_string(shared) {
        assert_eq!(contract, include_str!("../fixtures/api-reference.md"), "tests/fixtures/api-reference.md is out of date");
    }
    assert_eq!(curl_examples(include_str!("../fixtures/api-reference.md")).len(), 15);
}

#[tokio::test]
async fn every_curl_example_of_the_api_reference_works() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let invite = app.invite(1, 5).await;
    json(
        app.api(Method::POST, &format!("/api/instances/{id}/files/write"))
            .json(&serde_json::json!({"path": "/workspace/README.md", "content": "# demo\n"}))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    let exchange = json(
        app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&serde_json::json!({"message": "/echo first"})).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    let session = exchange["session_id"].as_str().unwrap().to_owned();
    let message = exchange["user_message"]["id"].as_str().unwrap().to_owned();

    for example in curl_examples(include_str!("../fixtures/api-reference.md")) {
        let command = example
            .replace("https://openclaw-as-a-service.com", &app.address)
            .replace("YOUR_API_KEY", &app.user.key)
            .replace("YOUR_INVITE_CODE_IF_NEEDED", &invite)
            .replace("CHAT_SESSION_ID", &session)
            .replace("MESSAGE_ID", &message)
            .replace("INSTANCE_ID", &id);
        let follows = command.contains("/chat/events");
        let streams = command.contains("/chat/stream");
        let limit = if follows { "3" } else { "60" };
        let output = tokio::task::spawn_blocking(move || {
            Command::new("bash").arg("-c").arg(format!("{command} -sS --max-time {limit} -w '\\nHTTP %{{http_code}}'")).output().unwrap()
        })
        .await
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let status = stdout.rsplit("HTTP ").next().unwrap().trim();
        assert!(status == "200" || status == "201", "{example}\n→ {status}: {stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        if follows {
            assert!(stdout.contains("event: ready"), "{stdout}");
        } else {
            assert!(output.status.success(), "{example}: {}", String::from_utf8_lossy(&output.stderr));
        }
        if streams {
            assert!(stdout.contains("event: complete"), "{stdout}");
        }
    }
    app.settle().await;
}
