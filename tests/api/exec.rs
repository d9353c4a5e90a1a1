//! `terminal/exec` against a real sandbox.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, json, ready_instance, sandbox_sh, spawn_app_with_docker};

async fn exec(app: &TestApp, id: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, &format!("/api/instances/{id}/terminal/exec")).json(&body).send().await.unwrap()
}

#[tokio::test]
async fn commands_report_output_streams_and_exit_codes() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let pwd = json(exec(&app, &id, json!({"command": "pwd", "timeout_ms": 5000})).await, StatusCode::OK).await;
    assert_eq!(pwd["command"], "pwd");
    assert_eq!(pwd["stdout"], "/workspace\n");
    assert_eq!(pwd["stderr"], "");
    assert_eq!(pwd["exit_code"], 0);
    assert_eq!(pwd["timed_out"], false);
    assert_eq!(pwd["truncated"], false);
    assert!(pwd["duration_ms"].is_u64());

    let split = json(exec(&app, &id, json!({"command": "echo out; echo err >&2; id -u"})).await, StatusCode::OK).await;
    assert_eq!(split["stdout"], "out\n1000\n");
    assert_eq!(split["stderr"], "err\n");
    assert_eq!(json(exec(&app, &id, json!({"command": "exit 7"})).await, StatusCode::OK).await["exit_code"], 7);
    // The command sees no positional parameters and nothing of the wrapper around it.
    let clean = json!({"command": "echo \"[$#][${__ocaas_command-none}]\""});
    assert_eq!(json(exec(&app, &id, clean).await, StatusCode::OK).await["stdout"], "[0][none]\n");

    let env = json!({"command": "echo \"$GREETING\" from $(pwd)", "cwd": "/tmp", "env": {"GREETING": "hi there"}});
    assert_eq!(json(exec(&app, &id, env).await, StatusCode::OK).await["stdout"], "hi there from /tmp\n");
    let lossy = json(exec(&app, &id, json!({"command": "printf 'a\\377b'"})).await, StatusCode::OK).await;
    assert_eq!(lossy["stdout"], "a\u{FFFD}b");

    // A login shell: the system profile gave the sandbox user's PATH and the user's own
    // ~/.profile added to it; root, in the same image, still gets the sbin directories.
    json(exec(&app, &id, json!({"command": "echo 'PATH=\"$HOME/bin:$PATH\"' > ~/.profile"})).await, StatusCode::OK).await;
    let path = json(exec(&app, &id, json!({"command": "echo $PATH"})).await, StatusCode::OK).await;
    assert_eq!(path["stdout"], "/home/sandbox/bin:/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games\n");
    let root = std::process::Command::new("docker").args(["exec", "-u", "0", &sandbox, "sh", "-lc", "echo $PATH"]).output().unwrap();
    assert!(String::from_utf8_lossy(&root.stdout).contains("/usr/sbin"), "{root:?}");
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let started = Instant::now();
    let body = json!({"command": "sleep 30 & sleep 31; echo never", "timeout_ms": 500});
    let result = json(exec(&app, &id, body).await, StatusCode::OK).await;
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert_eq!(result["timed_out"], true);
    assert!(result["exit_code"].is_null());
    assert_eq!(sandbox_sh(&sandbox, "ps -eo args | grep -c '^sleep 3[01]'"), "0", "no sleep is left behind");
}

#[tokio::test]
async fn output_is_capped_per_stream() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let body = json!({"command": "head -c 5242880 /dev/zero | tr '\\0' x; echo tail >&2"});
    let result = json(exec(&app, &id, body).await, StatusCode::OK).await;
    assert_eq!(result["truncated"], true);
    assert_eq!(result["stdout"].as_str().unwrap().len(), 1 << 20);
    assert_eq!(result["stderr"], "tail\n");
    assert_eq!(result["exit_code"], 0);
}

#[tokio::test]
async fn bad_exec_requests_are_refused() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    for body in [
        json!({"command": ""}),
        json!({"command": "true", "timeout_ms": 0}),
        json!({"command": "true", "timeout_ms": 600001}),
        json!({"command": "true", "env": {"BAD-NAME": "x"}}),
        json!({"command": 5}),
        json!({}),
    ] {
        assert_error(exec(&app, &id, body).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    assert_error(exec(&app, &id, json!({"command": "true", "cwd": "relative"})).await, StatusCode::BAD_REQUEST, "invalid_path").await;
    assert_error(exec(&app, &id, json!({"command": "true", "cwd": "/nope"})).await, StatusCode::BAD_REQUEST, "invalid_cwd").await;
    let missing = app
        .api(Method::POST, &format!("/api/instances/{}/terminal/exec", uuid::Uuid::new_v4()))
        .json(&json!({"command": "true"}))
        .send()
        .await
        .unwrap();
    assert_error(missing, StatusCode::NOT_FOUND, "instance_not_found").await;
}

#[tokio::test]
async fn a_command_dies_with_its_request_and_leaves_nothing_in_the_sandbox() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    // The client gives up after one second (like `curl -m 1`); the command would run 10 min.
    let body = json!({"command": "sleep 4242 & sleep 4243", "timeout_ms": 600000});
    let gone = app.api(Method::POST, &format!("/api/instances/{id}/terminal/exec")).json(&body).timeout(Duration::from_secs(1)).send().await;
    assert!(gone.is_err(), "the client timed out");
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = sandbox_sh(&sandbox, "ps -eo args | grep -c '^sleep 424[23]'");
        if left == "0" {
            break;
        }
        assert!(Instant::now() < deadline, "{left} sleep(s) still running 2 s after the client left");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing of ocaas's bookkeeping is left in the sandbox's writable temp dir.
    assert_eq!(sandbox_sh(&sandbox, "ls -A /tmp | grep -c ocaas"), "0");
}
