//! The stand-in gateway of the offline image speaks the captured OpenClaw shapes
//! (tests/fixtures/gateway/ holds copies of the captures): same SSE framing and chunk
//! skeletons, same error bodies.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ready_instance, spawn_app_with_docker};

/// Replaces the parts that legitimately differ (ids, timestamps, text) so shapes compare.
fn skeleton(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "id" | "created" | "content" | "uptimeMs" => json!("*"),
                        _ => skeleton(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(skeleton).collect()),
        other => other.clone(),
    }
}

/// The `data:` payloads of an SSE body, checking the exact `data: …\n\n` framing.
fn frames(body: &str) -> Vec<String> {
    assert!(body.ends_with("data: [DONE]\n\n"), "ends with [DONE]: {body:.200}");
    body.split_terminator("\n\n").map(|f| f.strip_prefix("data: ").unwrap_or_else(|| panic!("framing: {f:?}")).to_owned()).collect()
}

#[tokio::test]
async fn the_stand_in_gateway_matches_the_captures() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let ip = std::process::Command::new("docker")
        .args(["inspect", "-f", "{{(index .NetworkSettings.Networks \"ocaas-sandboxes\").IPAddress}}", &sandbox])
        .output()
        .unwrap();
    let base = format!("http://{}:18789", String::from_utf8_lossy(&ip.stdout).trim());
    let token: String = sqlx::query_scalar("SELECT gateway_token FROM instances WHERE id = $1::uuid").bind(&id).fetch_one(&app.db).await.unwrap();
    let client = reqwest::Client::new();
    let ask = |stream: bool, usage: bool| {
        let mut body = json!({"model": "openclaw/default", "messages": [{"role": "user", "content": "Say hello"}], "stream": stream});
        if usage {
            body["stream_options"] = json!({"include_usage": true});
        }
        client.post(format!("{base}/v1/chat/completions")).bearer_auth(&token).json(&body).send()
    };

    let captured = frames(include_str!("../fixtures/gateway/chat_stream.sse"));
    let response = ask(true, true).await.unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream; charset=utf-8");
    let ours = frames(&response.text().await.unwrap());
    let shape = |f: &str| if f == "[DONE]" { json!("[DONE]") } else { skeleton(&serde_json::from_str(f).unwrap()) };
    // Role chunk, a content chunk, finish chunk, usage chunk, [DONE].
    for (theirs, mine) in
        [(0, 0), (1, 1), (captured.len() - 3, ours.len() - 3), (captured.len() - 2, ours.len() - 2), (captured.len() - 1, ours.len() - 1)]
    {
        assert_eq!(shape(&ours[mine]), shape(&captured[theirs]), "frame {mine}");
    }

    let nonstream: Value = ask(false, false).await.unwrap().json().await.unwrap();
    let captured: Value = serde_json::from_str(include_str!("../fixtures/gateway/chat_nonstream.json")).unwrap();
    assert_eq!(skeleton(&nonstream), skeleton(&captured));

    let unauthorized = client.post(format!("{base}/v1/chat/completions")).bearer_auth("wrong").json(&json!({})).send().await.unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unauthorized.text().await.unwrap(), include_str!("../fixtures/gateway/auth_wrong.json"));

    let ready: Value = client.get(format!("{base}/readyz")).send().await.unwrap().json().await.unwrap();
    let captured: Value = serde_json::from_str(include_str!("../fixtures/gateway/readyz.json")).unwrap();
    assert_eq!(ready["ready"], captured["ready"]);
    assert_eq!(ready["failing"], captured["failing"]);
}
