//! The model broker end to end: chat → ocaas → the sandbox's (stand-in) gateway → the broker on
//! the sandbox network → a scripted OpenAI-compatible provider this test runs on loopback →
//! back. Usage rows equal what the provider reported; the operator's key never reaches the
//! sandbox or an API answer; the broker refuses strangers, copied tokens and the public listener.

use std::sync::{Arc, Mutex};

use axum::response::IntoResponse;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, json as json_body, ready_instance, spawn_app_with_docker};
use crate::isolation::{SECRET_SEARCH, tenant_sh};

pub const OPERATOR_KEY: &str = "sk-operator-S3CRET-broker-91c2";
pub const MODEL: &str = "scripted-model";
pub const ANSWER: [&str; 3] = ["Hi ", "from the ", "provider"];

/// What the provider was sent: (Authorization header, JSON body), in order.
type Seen = Arc<Mutex<Vec<(Option<String>, Value)>>>;

/// A provider that streams `ANSWER` with a usage chunk, and remembers what it was sent.
pub struct Provider {
    pub url: String,
    requests: Seen,
}

pub async fn scripted_provider() -> Provider {
    let requests: Seen = Arc::default();
    let seen = requests.clone();
    let handler = move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
        let seen = seen.clone();
        async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let refused = auth.as_deref() == Some(concat!("Bearer ", "sk-user-bad"));
            let asked = body["messages"][0]["content"].as_str().unwrap_or_default().to_owned();
            seen.lock().unwrap().push((auth, body));
            if asked == "slow" {
                // Long enough for calls sent together to be in flight together.
                tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            }
            if asked == "fail-500" {
                let error = json!({"error": {"message": "The provider is overloaded", "type": "server_error"}});
                return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, axum::Json(error)).into_response();
            }
            if asked == "malformed" {
                return ([("content-type", "text/event-stream")], "data: {\"choices\": [{\"delta\"\n\n").into_response();
            }
            if refused {
                let error = json!({"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}});
                return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(error)).into_response();
            }
            let mut events: Vec<String> = vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}).to_string()];
            events.extend(ANSWER.iter().map(|piece| json!({"choices": [{"index": 0, "delta": {"content": piece}}]}).to_string()));
            events.push(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string());
            if asked != "no-usage" {
                events.push(json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}).to_string());
            }
            events.push("[DONE]".into());
            let body: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
            ([("content-type", "text/event-stream")], body).into_response()
        }
    };
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Provider { url, requests }
}

async fn app_with_provider(provider: &Provider) -> TestApp {
    let url = provider.url.clone();
    spawn_app_with_docker(move |settings| {
        // The scripted provider is on loopback, which users' own endpoints may not be by default.
        settings.instances.model_allow_private = true;
        settings.instances.llm.base_url = url;
        settings.instances.llm.api_key = OPERATOR_KEY.to_owned().into();
        settings.instances.llm.model = MODEL.to_owned();
    })
    .await
}

/// From inside the sandbox: the broker's answer status and body for `token` (None: no header).
async fn call_broker(app: &TestApp, id: &str, token: Option<&str>) -> (u16, String) {
    let auth = token.map(|t| format!("req.add_header('Authorization', 'Bearer {t}')")).unwrap_or_default();
    let script = format!(
        "python3 - <<'EOF'\nimport json, os, urllib.request, urllib.error\n\
         req = urllib.request.Request(os.environ.get('OCAAS_PROBE_URL') or json.load(open(os.path.expanduser('~/.openclaw/openclaw.json')))['models']['providers']['operator']['baseUrl'] + '/models')\n\
         {auth}\n\
         try:\n    r = urllib.request.urlopen(req, timeout=5); print(r.status, r.read().decode())\n\
         except urllib.error.HTTPError as e: print(e.code, e.read().decode())\nEOF"
    );
    let out = tenant_sh(app, id, &script).await;
    let text = out["stdout"].as_str().unwrap().trim().to_owned();
    let (status, body) = text.split_once(' ').unwrap_or_else(|| panic!("no answer from the broker: {out}"));
    (status.parse().unwrap(), body.to_owned())
}

fn sandbox_env(sandbox: &str, name: &str) -> String {
    let out = std::process::Command::new("docker").args(["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", sandbox]).output().unwrap();
    let env = String::from_utf8_lossy(&out.stdout).into_owned();
    env.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_chat_turn_is_answered_by_the_provider_through_the_broker_and_metered() {
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (id, _) = ready_instance(&app).await;
    let response = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/llm hello provider"})).send().await.unwrap();
    let turn = json_body(response, StatusCode::OK).await;
    assert_eq!(turn["assistant_message"]["content"], ANSWER.concat(), "{turn}");

    // The provider was called the way OpenClaw calls it, with the operator's key added by ocaas.
    let (auth, body) = provider.requests.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some(format!("Bearer {OPERATOR_KEY}").as_str()));
    assert_eq!((body["model"].as_str(), body["stream"].as_bool()), (Some(MODEL), Some(true)), "{body}");
    assert_eq!(body["stream_options"]["include_usage"], true, "{body}");
    assert_eq!(body["messages"][0]["content"], "hello provider", "{body}");

    // One usage row, exactly as the provider reported it, for the instance and the account.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let usage = loop {
        let usage = json_body(app.api(Method::GET, &format!("/api/instances/{id}/usage")).send().await.unwrap(), StatusCode::OK).await;
        if usage["totals"]["requests"] == 1 || std::time::Instant::now() > deadline {
            break usage;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(usage["totals"], json!({"requests": 1, "prompt_tokens": 12, "completion_tokens": 5}), "{usage}");
    assert_eq!(usage["days"][0]["model"], MODEL);
    assert_eq!(usage["days"][0]["estimated_requests"], 0);
    let account = json_body(app.api(Method::GET, "/api/account/usage").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(account["totals"], usage["totals"]);
    let bad = app.api(Method::GET, "/api/account/usage?from=2026-12-01T00:00:00Z&to=2026-11-01T00:00:00Z").send().await.unwrap();
    crate::helpers::assert_error(bad, StatusCode::BAD_REQUEST, "invalid_request").await;

    // The operator's key: not in the sandbox (environment, processes, files), not in API answers.
    let found = tenant_sh(&app, &id, SECRET_SEARCH).await;
    assert_eq!(found["stdout"].as_str().unwrap().trim(), "0\nsearched", "{found}");
    for path in [format!("/api/instances/{id}"), format!("/api/instances/{id}/status"), format!("/api/instances/{id}/logs"), "/api/account".into()] {
        let text = app.api(Method::GET, &path).send().await.unwrap().text().await.unwrap();
        assert!(!text.contains("S3CRET"), "{path} shows the operator key");
    }
}

#[tokio::test]
async fn the_broker_refuses_strangers_copied_tokens_and_the_public_listener() {
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (id, sandbox) = ready_instance(&app).await;
    let (_, other_sandbox) = ready_instance(&app).await;
    let (own, other) =
        tokio::task::spawn_blocking(move || (sandbox_env(&sandbox, "OCAAS_LLM_API_KEY"), sandbox_env(&other_sandbox, "OCAAS_LLM_API_KEY")))
            .await
            .unwrap();
    assert!(own.starts_with("ocb_") && other.starts_with("ocb_") && own != other, "each instance has its own broker token");

    let (status, body) = call_broker(&app, &id, Some(&own)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["data"][0]["id"], MODEL);
    for (token, why) in [(None, "no token"), (Some("ocb_made_up"), "a wrong token"), (Some(other.as_str()), "another instance's token")] {
        let (status, body) = call_broker(&app, &id, token).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert!(serde_json::from_str::<Value>(&body).unwrap()["error"]["message"].is_string(), "OpenAI-style error: {body}");
    }
    // The public listener has no broker at all.
    let public = app.client.post(app.url("/v1/chat/completions")).bearer_auth(&own).json(&json!({"messages": []})).send().await.unwrap();
    assert_eq!(public.status(), StatusCode::NOT_FOUND);
    assert!(provider.requests.lock().unwrap().is_empty(), "nothing refused reached the provider");
}

/// The dashboard shows what the broker metered (the account's Model usage card, the open
/// instance's tokens this month) and sets the instance's own model in its Model tab.
#[tokio::test]
async fn the_dashboard_shows_model_usage_and_sets_the_instances_own_model() {
    use crate::webdriver::{Browser, artifact};
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (id, _) = ready_instance(&app).await;
    let response = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/llm count me"})).send().await.unwrap();
    json_body(response, StatusCode::OK).await;

    let browser = Browser::start().await;
    browser.goto_until_loaded(&app.url("/account"), "return !document.getElementById('auth').hidden", 3).await;
    browser.fill("#login-form input[name=email]", &app.user.email).await;
    browser.fill("#login-form input[name=password]", crate::helpers::PASSWORD).await;
    browser.click("#login-form button[type=submit]").await;
    let summary =
        browser.wait_for("const s = document.getElementById('usage-summary').textContent; return s.includes('1 model request') && s", 20).await;
    assert!(summary.as_str().unwrap().contains("12 prompt + 5 completion tokens"), "{summary}");
    let row = browser.eval("const r = document.querySelector('#usage tr'); return r.dataset.model + ' ' + r.textContent").await;
    assert!(row.as_str().unwrap().starts_with(&format!("{MODEL} ")), "{row}");
    browser.click(".instance[data-status=ready] button[data-action=open]").await;
    browser.wait_for("return document.getElementById('panel-usage').textContent.includes('Model: 17 tokens this month')", 20).await;
    browser.screenshot(&artifact("dashboard-9-model-usage.png")).await;

    // The Model tab: bring your own key.
    browser.click(".tabs button[data-tab=model]").await;
    browser.wait_for("return document.getElementById('model-state').dataset.provider === 'operator'", 20).await;
    browser.eval("document.querySelector('#model-form select[name=provider]').value = 'custom'; return true").await;
    browser.fill("#model-form input[name=base_url]", &provider.url).await;
    browser.fill("#model-form input[name=model]", "browser-model").await;
    browser.fill("#model-form input[name=api_key]", "sk-from-the-browser").await;
    browser.click("#model-save").await;
    browser.wait_for("return document.getElementById('model-state').dataset.provider === 'custom'", 20).await;
    let model = json_body(app.api(Method::GET, &format!("/api/instances/{id}/model")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(model, json!({"provider": "custom", "base_url": provider.url, "model": "browser-model", "api_key_set": true}));
    let placeholder = browser.eval("return document.querySelector('#model-form input[name=api_key]').placeholder").await;
    assert!(placeholder.as_str().unwrap().starts_with("Stored"), "{placeholder}");
    browser.fill("#limits-form input[name=monthly_token_limit]", "5000").await;
    browser.click("#limits-save").await;
    browser.wait_for("return document.getElementById('limits-state').dataset.cap === '5000'", 20).await;
    let limits = json_body(app.api(Method::GET, &format!("/api/instances/{id}/limits")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!((limits["monthly_token_limit"].as_i64(), limits["used_this_month"].as_i64()), (Some(5000), Some(17)), "{limits}");
    browser.screenshot(&artifact("dashboard-10-own-model.png")).await;
}

async fn llm_turn(app: &TestApp, id: &str) -> Value {
    let response = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/llm which key?"})).send().await.unwrap();
    json_body(response, StatusCode::OK).await
}

fn container_id(sandbox: &str) -> String {
    let out = std::process::Command::new("docker").args(["inspect", "-f", "{{.Id}}", sandbox]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test]
async fn users_bring_their_own_key_without_a_restart_and_a_bad_key_is_a_clear_error() {
    const USER_KEY: &str = "sk-user-good-S3CRET-77";
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (id, sandbox) = ready_instance(&app).await;
    let name = sandbox.clone();
    let before = tokio::task::spawn_blocking(move || container_id(&name)).await.unwrap();
    tenant_sh(&app, &id, "echo kept > /workspace/keep.txt").await;
    let model_path = format!("/api/instances/{id}/model");
    let current = json_body(app.api(Method::GET, &model_path).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(current, json!({"provider": "operator", "base_url": null, "model": MODEL, "api_key_set": false}));

    let no_key = json!({"provider": "custom", "base_url": provider.url, "model": "users-model"});
    crate::helpers::assert_error(app.api(Method::PUT, &model_path).json(&no_key).send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid_request")
        .await;
    let custom = json!({"provider": "custom", "base_url": provider.url, "model": "users-model", "api_key": USER_KEY});
    let set = app.api(Method::PUT, &model_path).json(&custom).send().await.unwrap().text().await.unwrap();
    assert!(!set.contains("S3CRET"), "the key is write-only: {set}");
    assert_eq!(serde_json::from_str::<Value>(&set).unwrap()["api_key_set"], true);
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT api_key_sealed FROM instance_models").fetch_one(&app.db).await.unwrap();
    assert!(!sealed.windows(USER_KEY.len()).any(|w| w == USER_KEY.as_bytes()), "sealed at rest");

    // Set: the next call goes to the user's provider with the user's key and model.
    assert_eq!(llm_turn(&app, &id).await["assistant_message"]["content"], ANSWER.concat());
    // The user's key is not in the sandbox either: only the server holds it.
    assert_eq!(tenant_sh(&app, &id, SECRET_SEARCH).await["stdout"].as_str().unwrap().trim(), "0\nsearched");
    let last = |provider: &Provider| provider.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last(&provider).0.as_deref(), Some(format!("Bearer {USER_KEY}").as_str()));
    assert_eq!(last(&provider).1["model"], "users-model");
    // Changed (the key left out is kept).
    let renamed = json!({"provider": "custom", "base_url": provider.url, "model": "users-model-2"});
    json_body(app.api(Method::PUT, &model_path).json(&renamed).send().await.unwrap(), StatusCode::OK).await;
    llm_turn(&app, &id).await;
    assert_eq!((last(&provider).0.unwrap(), last(&provider).1["model"].clone()), (format!("Bearer {USER_KEY}"), json!("users-model-2")));
    // A bad key: the turn ends with the provider's reason, not a hang.
    let bad = json!({"provider": "custom", "base_url": provider.url, "model": "users-model", "api_key": "sk-user-bad"});
    json_body(app.api(Method::PUT, &model_path).json(&bad).send().await.unwrap(), StatusCode::OK).await;
    let refused = llm_turn(&app, &id).await;
    assert_eq!(refused["assistant_message"]["status"], "error", "{refused}");
    assert!(refused["assistant_message"]["error"].as_str().unwrap().contains("Incorrect API key"), "{refused}");
    // Cleared: back to the operator.
    let operator = json_body(app.api(Method::PUT, &model_path).json(&json!({"provider": "operator"})).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(operator["api_key_set"], false);
    llm_turn(&app, &id).await;
    assert_eq!(last(&provider).0.as_deref(), Some(format!("Bearer {OPERATOR_KEY}").as_str()));

    // Nothing restarted: the same container, the workspace as it was.
    let after = tokio::task::spawn_blocking(move || container_id(&sandbox)).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(tenant_sh(&app, &id, "cat /workspace/keep.txt").await["stdout"], "kept\n");
}

#[tokio::test]
async fn own_endpoints_must_be_public_unless_the_operator_allows_private_ones() {
    let app = crate::helpers::spawn_app().await;
    let id = app.ready_instance_row().await;
    for url in ["http://127.0.0.1:11434/v1", "http://169.254.169.254/latest", "http://10.0.0.5/v1", "http://[::1]:8080/v1", "ftp://example.com/v1"] {
        let body = json!({"provider": "custom", "base_url": url, "model": "m", "api_key": "k"});
        let response = app.api(Method::PUT, &format!("/api/instances/{id}/model")).json(&body).send().await.unwrap();
        crate::helpers::assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    let stranger = app.api(Method::GET, &format!("/api/instances/{}/model", uuid::Uuid::new_v4())).send().await.unwrap();
    crate::helpers::assert_error(stranger, StatusCode::NOT_FOUND, "instance_not_found").await;
}

async fn system_messages(app: &TestApp, id: &str) -> Vec<String> {
    let messages =
        json_body(app.api(Method::GET, &format!("/api/instances/{id}/chat/messages?limit=200")).send().await.unwrap(), StatusCode::OK).await;
    messages.as_array().unwrap().iter().filter(|m| m["role"] == "system").map(|m| m["content"].as_str().unwrap().to_owned()).collect()
}

/// Polls until `check` holds for the instance's system messages (they are written after the call).
async fn wait_for_system_messages(app: &TestApp, id: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let messages = system_messages(app, id).await;
        if check(&messages) || std::time::Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn spend_limits_warn_at_eighty_percent_refuse_at_the_limit_and_reset_each_month() {
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (id, _) = ready_instance(&app).await;
    let limits_path = format!("/api/instances/{id}/limits");
    // Every call costs 17 tokens (12 + 5, as the provider reports). A cap of 40: 17, 34 (85 %: warned), 51, then refused.
    let set = json_body(app.api(Method::PUT, &limits_path).json(&json!({"monthly_token_limit": 40})).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!((set["monthly_token_limit"].as_i64(), set["used_this_month"].as_i64()), (Some(40), Some(0)), "{set}");
    for _ in 0..3 {
        assert_eq!(llm_turn(&app, &id).await["assistant_message"]["status"], "complete");
        // The usage row is written just after the answer; the next check must see it.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let warned = wait_for_system_messages(&app, &id, |m| !m.is_empty()).await;
    assert_eq!(warned.len(), 1, "warned once, not on every call past 80 %: {warned:?}");
    assert!(warned[0].contains("used 34 of its 40 monthly tokens"), "{warned:?}");
    let refused = llm_turn(&app, &id).await;
    assert_eq!(refused["assistant_message"]["status"], "error", "{refused}");
    assert!(refused["assistant_message"]["error"].as_str().unwrap().contains("monthly token limit (40 tokens"), "{refused}");
    assert_eq!(provider.requests.lock().unwrap().len(), 3, "the refused call never reached the provider");
    let limits = json_body(app.api(Method::GET, &limits_path).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(limits["used_this_month"], 51, "{limits}");

    // A new month: last month's use no longer counts.
    sqlx::query("UPDATE model_usage SET created_at = date_trunc('month', now()) - interval '1 day'").execute(&app.db).await.unwrap();
    assert_eq!(llm_turn(&app, &id).await["assistant_message"]["status"], "complete");

    // The plan's allowance for the whole account applies too (20 tokens: 17 used now).
    json_body(app.api(Method::PUT, &limits_path).json(&json!({"monthly_token_limit": null})).send().await.unwrap(), StatusCode::OK).await;
    assert!(ocaas::auth::repo::set_monthly_tokens(&app.db, app.user.id, Some(20)).await.unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(llm_turn(&app, &id).await["assistant_message"]["status"], "complete");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let over = llm_turn(&app, &id).await;
    assert!(over["assistant_message"]["error"].as_str().unwrap().contains("account's monthly token allowance (20 tokens)"), "{over}");
    let warnings = wait_for_system_messages(&app, &id, |m| m.len() >= 2).await;
    assert!(warnings.iter().any(|w| w.contains("The account has used")), "{warnings:?}");
    let bad = app.api(Method::PUT, &limits_path).json(&json!({"monthly_token_limit": -1})).send().await.unwrap();
    crate::helpers::assert_error(bad, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn calls_sent_together_near_the_limit_reserve_their_tokens_and_do_not_all_pass() {
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (id, _) = ready_instance(&app).await;
    // 40 tokens; each call reports 17. Eight calls at once: without reservations each sees 0
    // used and all eight go through (136 tokens).
    let limits_path = format!("/api/instances/{id}/limits");
    json_body(app.api(Method::PUT, &limits_path).json(&json!({"monthly_token_limit": 40})).send().await.unwrap(), StatusCode::OK).await;
    let mut sessions = Vec::new();
    for _ in 0..8 {
        let created = app.api(Method::POST, &format!("/api/instances/{id}/chat/sessions")).send().await.unwrap();
        sessions.push(json_body(created, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned());
    }
    let turns = sessions.iter().map(|session| {
        let request = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/llm slow", "session_id": session}));
        async move { json_body(request.send().await.unwrap(), StatusCode::OK).await }
    });
    let outcomes = futures_util::future::join_all(turns).await;
    let done = outcomes.iter().filter(|o| o["assistant_message"]["status"] == "complete").count();
    let refused: Vec<_> = outcomes.iter().filter_map(|o| o["assistant_message"]["error"].as_str()).collect();
    assert!((1..=3).contains(&done), "{done} calls went through: {outcomes:?}");
    assert!(refused.iter().all(|e| e.contains("monthly token") || e.contains("reserved by model calls in flight")), "{refused:?}");
    assert_eq!(provider.requests.lock().unwrap().len(), done, "refused calls never reach the provider");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let limits = json_body(app.api(Method::GET, &limits_path).send().await.unwrap(), StatusCode::OK).await;
    assert!(limits["used_this_month"].as_i64().unwrap() <= 51, "at most what one call past the room adds: {limits}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM token_reservations").fetch_one(&app.db).await.unwrap();
    assert_eq!(left, 0, "every reservation is settled");
}

#[tokio::test]
async fn provider_failures_end_the_turn_with_a_clear_error_and_silence_on_usage_is_estimated() {
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (id, _) = ready_instance(&app).await;
    let turn = |message: &'static str| {
        let request = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": message}));
        async move { json_body(request.send().await.unwrap(), StatusCode::OK).await }
    };
    let overloaded = turn("/llm fail-500").await;
    assert_eq!(overloaded["assistant_message"]["status"], "error");
    assert!(overloaded["assistant_message"]["error"].as_str().unwrap().contains("The provider is overloaded"), "{overloaded}");
    let malformed = turn("/llm malformed").await;
    assert_eq!(malformed["assistant_message"]["status"], "error");
    assert!(malformed["assistant_message"]["error"].as_str().unwrap().contains("malformed"), "{malformed}");
    let silent = turn("/llm no-usage").await;
    assert_eq!(silent["assistant_message"]["content"], ANSWER.concat());

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let usage = loop {
        let usage = json_body(app.api(Method::GET, &format!("/api/instances/{id}/usage")).send().await.unwrap(), StatusCode::OK).await;
        if usage["totals"]["requests"] == 3 || std::time::Instant::now() > deadline {
            break usage;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(usage["totals"]["requests"], 3, "failed calls are metered too: {usage}");
    assert_eq!(usage["days"][0]["estimated_requests"], 3, "no provider reported usage: every count is estimated: {usage}");
    let statuses: Vec<String> = sqlx::query_scalar("SELECT status FROM model_usage ORDER BY id").fetch_all(&app.db).await.unwrap();
    assert_eq!(statuses, ["upstream_error", "failed", "ok"].map(String::from), "an error answer, a stream cut short, a complete one");
}

/// Resident memory of this process (the in-process server), in MiB: (now, peak).
fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// From inside one sandbox: 100 concurrent 8 MiB bodies to the broker (never valid JSON, so
/// none goes on to the provider); the statuses, or the exception each call ended with.
const FLOOD: &str = r#"python3 - <<'EOF'
import json, os, threading, http.client, urllib.parse
base = json.load(open(os.path.expanduser('~/.openclaw/openclaw.json')))['models']['providers']['operator']['baseUrl']
u = urllib.parse.urlparse(base)
body = b'{"messages": "' + b'a' * ((8 << 20) - 32)
statuses = []
def one():
    try:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        c.request('POST', u.path + '/chat/completions', body=body, headers={'Authorization': 'Bearer ' + os.environ['OCAAS_LLM_API_KEY'], 'Content-Type': 'application/json'})
        statuses.append(c.getresponse().status)
    except Exception as e:
        statuses.append(type(e).__name__)
threads = [threading.Thread(target=one) for _ in range(100)]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(statuses))
EOF"#;

#[tokio::test]
async fn a_sandbox_flooding_the_broker_with_large_bodies_stays_bounded_and_another_sandbox_is_served() {
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (id, _) = ready_instance(&app).await;
    let (other, other_sandbox) = ready_instance(&app).await;
    let other_token = tokio::task::spawn_blocking(move || sandbox_env(&other_sandbox, "OCAAS_LLM_API_KEY")).await.unwrap();
    let (before, _) = rss_mib();
    let peak = Arc::new(Mutex::new(0f64));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            for _ in 0..6000 {
                let (now, _) = rss_mib();
                {
                    let mut top = peak.lock().unwrap();
                    *top = top.max(now);
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
    };
    let flood = {
        let (client, url, key) = (app.client.clone(), app.url(&format!("/api/instances/{id}/terminal/exec")), app.user.key.clone());
        let body = json!({"command": FLOOD, "timeout_ms": 60000});
        tokio::spawn(async move { client.post(url).bearer_auth(key).json(&body).send().await.unwrap().json::<Value>().await.unwrap() })
    };
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let (status, body) = call_broker(&app, &other, Some(&other_token)).await;
    assert_eq!(status, 200, "another sandbox during the flood: {body}");
    let out = flood.await.unwrap();
    sampler.abort();
    let statuses: Vec<Value> = serde_json::from_str(out["stdout"].as_str().unwrap().trim()).unwrap_or_else(|_| panic!("{out}"));
    let peak = *peak.lock().unwrap();
    let read_whole = statuses.iter().filter(|s| *s == 400).count();
    println!(
        "100 × 8 MiB broker bodies from one sandbox: RSS {before:.0} MiB before, {peak:.0} MiB at most; {read_whole} read whole, the rest refused"
    );
    assert_eq!(statuses.len(), 100);
    assert!(statuses.iter().any(|s| s == 400), "some bodies were read whole (and refused as not JSON): {statuses:?}");
    assert!(statuses.iter().all(|s| s != 500 && s != 502), "{statuses:?}");
    assert!(peak < 256.0, "the server's RSS reached {peak:.0} MiB (from {before:.0} MiB)");
    assert!(provider.requests.lock().unwrap().is_empty());
}

/// An organisation's instances spend the organisation's monthly tokens, not their creator's:
/// the creator's own plan is untouched, and past the organisation's allowance its instances'
/// calls are refused while the creator's own instance still answers.
#[tokio::test]
async fn an_organisations_instances_spend_its_allowance_not_their_creators() {
    let provider = scripted_provider().await;
    let app = app_with_provider(&provider).await;
    let (own, _) = ready_instance(&app).await;
    assert!(ocaas::auth::repo::set_monthly_tokens(&app.db, app.user.id, Some(20)).await.unwrap());
    let org = json_body(app.api(Method::POST, "/api/orgs").json(&json!({"name": "Lab"})).send().await.unwrap(), StatusCode::CREATED).await;
    let org_id: uuid::Uuid = org["id"].as_str().unwrap().parse().unwrap();
    ocaas::orgs::repo::set_plan(&app.db, org_id, 1, Some(30)).await.unwrap();
    let shared = app.api(Method::POST, "/api/instances").json(&json!({"org_id": org_id})).send().await.unwrap();
    let shared = json_body(shared, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    crate::helpers::until_ready(&app, &shared).await;
    // 17 + 17 = 34 past the organisation's 30 (each call is let through while some is left).
    for _ in 0..2 {
        assert_eq!(llm_turn(&app, &shared).await["assistant_message"]["status"], "complete");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let over = llm_turn(&app, &shared).await;
    assert!(over["assistant_message"]["error"].as_str().unwrap().contains("monthly token allowance (30 tokens)"), "{over}");
    // The user's own 20 is untouched: two calls (0 and 17 used before each) pass, the third not.
    for _ in 0..2 {
        assert_eq!(llm_turn(&app, &own).await["assistant_message"]["status"], "complete", "the creator's own allowance is untouched");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    let over = llm_turn(&app, &own).await;
    assert!(over["assistant_message"]["error"].as_str().unwrap().contains("monthly token allowance (20 tokens)"), "then the user's own: {over}");
    // Each report counts its own: the organisation's, the account's, the shared instance's.
    let tokens = |report: Value| report["totals"]["prompt_tokens"].as_i64().unwrap() + report["totals"]["completion_tokens"].as_i64().unwrap();
    let org_usage = json_body(app.api(Method::GET, &format!("/api/orgs/{org_id}/usage")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(tokens(org_usage), 34);
    let account = json_body(app.api(Method::GET, "/api/account/usage").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(tokens(account), 34, "the two calls of the user's own instance");
    let instance = json_body(app.api(Method::GET, &format!("/api/instances/{shared}/usage")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(tokens(instance), 34);
}
