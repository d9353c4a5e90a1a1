//! The MCP endpoint driven by the official Python SDK (`mcp` on PyPI) over Streamable HTTP: it
//! lists ocaas's tools (with the API's argument names and types), creates an instance, chats
//! with its agent, reads the file the agent wrote; a key without `exec` is refused `exec` with
//! the API's code. And the door: no key, a bad key → 401.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{assert_error, json, spawn_app_with_docker};

#[tokio::test]
async fn an_mcp_client_creates_an_instance_chats_and_reads_what_the_agent_wrote() {
    crate::helpers::python_package("mcp");
    let app = spawn_app_with_docker(|_| {}).await;
    ocaas::auth::service::grant_subscription(&app.db, &app.user.email, 2, None).await.unwrap();
    let narrow = json(
        app.api(Method::POST, "/api/account/keys")
            .json(&json!({"name": "no exec", "scopes": ["instances:read", "files:read"]}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mcp_client.py");
    let run = tokio::process::Command::new("python3").arg(script).arg(app.url("/mcp")).arg(&app.user.key).arg(&narrow).kill_on_drop(true).output();
    let run = tokio::time::timeout(Duration::from_secs(300), run).await.expect("the MCP client finished within 5 minutes").unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "the MCP client failed:\n{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default()).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    // The tools, with the API's argument names and the document's types.
    let tools = seen["tools"].as_object().unwrap();
    for name in [
        "list_instances",
        "create_instance",
        "get_instance",
        "chat",
        "chat_history",
        "read_file",
        "write_file",
        "list_files",
        "exec",
        "create_snapshot",
    ] {
        assert!(tools.contains_key(name), "{name} missing: {:?}", tools.keys());
    }
    assert_eq!(tools["read_file"]["properties"]["instance_id"]["format"], "uuid");
    assert_eq!(tools["write_file"]["required"], json!(["instance_id", "path", "content"]));
    assert!(tools["exec"]["properties"]["command"].is_object());

    // The instance exists for the API too, made by the MCP call.
    let id = seen["instance_id"].as_str().unwrap();
    let instance = json(app.api(Method::GET, &format!("/api/instances/{id}")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(instance["name"], "from-mcp");
    assert_eq!(seen["chat"]["assistant_message"]["status"], "complete", "{}", seen["chat"]);
    assert!(
        seen["progress"].as_array().is_some_and(|p| p.iter().any(|m| m.as_str().is_some_and(|m| m.starts_with("tool exec")))),
        "{}",
        seen["progress"]
    );
    assert_eq!(seen["file"]["content"], "written-by-the-agent\n", "{}", seen["file"]);
    assert_eq!(seen["missing_argument"]["code"], -32602, "{}", seen["missing_argument"]);

    // A key without `exec`: refused with the API's code; what it may do works.
    assert_eq!(seen["narrow_exec"]["data"]["error"], "insufficient_scope", "{}", seen["narrow_exec"]);
    assert_eq!(seen["narrow_exec"]["data"]["status"], 403);
    assert!(seen["narrow_exec"]["message"].as_str().unwrap().contains("exec"));
    assert_eq!(seen["narrow_list"]["items"][0]["id"], id);
    app.settle().await;
}

#[tokio::test]
async fn the_mcp_door_takes_only_valid_keys() {
    let app = crate::helpers::spawn_app().await;
    let hello = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let anonymous = app.anon(Method::POST, "/mcp").header("accept", "application/json, text/event-stream").json(&hello).send().await.unwrap();
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_error(anonymous, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let bad = app.anon(Method::POST, "/mcp").bearer_auth("ocaas_not-a-key").json(&hello).send().await.unwrap();
    assert_error(bad, StatusCode::UNAUTHORIZED, "unauthorized").await;
}
