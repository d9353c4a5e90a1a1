//! `ocaas admin …` run as the built binary against a test database.

use std::process::{Command, Output};

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_error, json, spawn_app, until_refused};

fn ocaas(app: &TestApp, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ocaas")).args(args).env("DATABASE_URL", &app.database_url).output().expect("running ocaas")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "ocaas failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap().trim().to_owned()
}

fn fails_with(output: &Output, needle: &str) {
    assert!(!output.status.success(), "expected failure, got: {}", String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(needle), "stderr {stderr:?} should mention {needle:?}");
}

#[tokio::test]
async fn user_and_key_commands_make_working_credentials() {
    let app = spawn_app().await;
    let created = stdout(&ocaas(&app, &["admin", "user", "create", "--email", "Cli@Example.com", "--password", PASSWORD]));
    assert!(created.contains("Cli@Example.com"), "{created}");

    let key = stdout(&ocaas(&app, &["admin", "key", "create", "--email", "cli@example.com", "--name", "ops"]));
    assert!(key.starts_with("ocaas_") && !key.contains(char::is_whitespace), "only the key is printed: {key:?}");
    let me = json(app.with_key(Method::GET, "/api/account", &key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(me["email"], "Cli@Example.com");

    let listed = stdout(&ocaas(&app, &["admin", "user", "list"]));
    assert!(listed.contains("Cli@Example.com") && listed.contains("seed@example.com"), "{listed}");

    let keys = json(app.with_key(Method::GET, "/api/account/keys", &key).send().await.unwrap(), StatusCode::OK).await;
    let id = keys[0]["id"].as_str().unwrap();
    stdout(&ocaas(&app, &["admin", "key", "revoke", "--id", id]));
    // Revoked by another process: refused once its notification arrives, within 1 s.
    let took = until_refused(|| app.with_key(Method::GET, "/api/account", &key)).await;
    assert!(took < std::time::Duration::from_secs(1), "a key revoked by the admin command was accepted for {took:?}");
    let response = app.with_key(Method::GET, "/api/account", &key).send().await.unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    fails_with(&ocaas(&app, &["admin", "key", "revoke", "--id", id]), "No active key");
}

#[tokio::test]
async fn bad_input_fails_with_a_clear_message() {
    let app = spawn_app().await;
    fails_with(&ocaas(&app, &["admin", "user", "create", "--email", "SEED@example.com", "--password", PASSWORD]), "already exists");
    fails_with(&ocaas(&app, &["admin", "user", "create", "--email", "w@example.com", "--password", "short"]), "at least 10");
    fails_with(&ocaas(&app, &["admin", "user", "create", "--email", "not-an-email", "--password", PASSWORD]), "not a valid email");
    fails_with(&ocaas(&app, &["admin", "key", "create", "--email", "ghost@example.com"]), "No user has the email");
    fails_with(&ocaas(&app, &["admin", "subscription", "grant", "--email", "ghost@example.com", "--max-instances", "2"]), "No user");
    fails_with(&ocaas(&app, &["admin", "key", "revoke", "--id", "not-a-uuid"]), "invalid value");
    fails_with(&ocaas(&app, &["admin", "invite", "create", "--uses", "0"]), "at least one use");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&app.db).await.unwrap();
    assert_eq!(users, 1, "nothing was created");
}

#[tokio::test]
async fn password_can_come_from_stdin() {
    use std::io::Write;
    let app = spawn_app().await;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocaas"))
        .args(["admin", "user", "create", "--email", "stdin@example.com"])
        .env("DATABASE_URL", &app.database_url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{PASSWORD}\n").as_bytes()).unwrap();
    stdout(&child.wait_with_output().unwrap());
    let response =
        app.anon(Method::POST, "/api/account/login").json(&json!({"email": "stdin@example.com", "password": PASSWORD})).send().await.unwrap();
    json(response, StatusCode::OK).await;
}

#[tokio::test]
async fn invites_and_subscriptions_from_the_cli_take_effect() {
    let app = spawn_app().await;
    let code = stdout(&ocaas(&app, &["admin", "invite", "create", "--uses", "1", "--max-instances", "4", "--days", "7", "--monthly-tokens", "5000"]));
    assert_eq!(code.len(), 19, "only the code is printed: {code:?}");
    let response = app
        .anon(Method::POST, "/api/account/register")
        .json(&json!({"email": "invited@example.com", "password": PASSWORD, "invite_code": code}))
        .send()
        .await
        .unwrap();
    let registered = json(response, StatusCode::CREATED).await;
    assert_eq!(registered["subscription"]["max_instances"], 4);
    assert_eq!(registered["subscription"]["monthly_tokens"], 5000, "the invite's allowance comes with it");

    let granted = stdout(&ocaas(
        &app,
        &["admin", "subscription", "grant", "--email", "seed@example.com", "--max-instances", "2", "--days", "30", "--monthly-tokens", "777"],
    ));
    assert!(granted.contains("777 model tokens a month"), "{granted}");
    let me = json(app.api(Method::GET, "/api/account").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(me["subscription"]["monthly_tokens"], 777);
    assert_eq!(me["subscription"]["max_instances"], 2);
    assert_eq!(me["subscription"]["active"], true);
    assert!(me["subscription"]["expires_at"].is_string());
}
