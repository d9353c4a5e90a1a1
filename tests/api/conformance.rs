//! The served OpenAPI document is the wire, checked by two independent programs against the
//! live server: schemathesis fuzzes every non-streaming operation and checks each answer
//! against the document (and that none is a server error); openapi-python-client generates a
//! client from the document, and that client drives a user's first steps.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, json, ready_instance, spawn_app_with_docker};

/// A ready instance with something in each list: a chat exchange, a file, a snapshot.
async fn lived_in(app: &TestApp) -> (String, String) {
    let (id, _) = ready_instance(app).await;
    // Creates beyond the one instance are refused (403), so the fuzzer starts no sandboxes.
    ocaas::auth::service::grant_subscription(&app.db, &app.user.email, 1, None).await.unwrap();
    let chat = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/echo hi"})).send().await.unwrap();
    assert_eq!(chat.status(), StatusCode::OK);
    let write = app.api(Method::POST, &format!("/api/instances/{id}/files/write"));
    assert_eq!(write.json(&json!({"path": "/workspace/notes.txt", "content": "hello"})).send().await.unwrap().status(), StatusCode::OK);
    let snapshot = app.api(Method::POST, &format!("/api/instances/{id}/snapshots")).json(&json!({"name": "before"})).send().await.unwrap();
    let snapshot = json(snapshot, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    (id, snapshot)
}

/// A scratch folder, removed however the test ends.
struct Scratch(std::path::PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("ocaas-conformance-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn run(program: &str, args: &[&str], dir: &std::path::Path, limit: Duration) -> std::process::Output {
    let child = tokio::process::Command::new(program).args(args).current_dir(dir).kill_on_drop(true).output();
    tokio::time::timeout(limit, child).await.unwrap_or_else(|_| panic!("{program} did not finish within {limit:?}")).unwrap()
}

#[tokio::test]
async fn schemathesis_finds_no_answer_outside_the_document_and_no_server_error() {
    crate::helpers::python_package("schemathesis");
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, snapshot) = lived_in(&app).await;
    let dir = Scratch::new();
    // Half the operations take the live instance and snapshot, so answers carry real states;
    // `follow` stays off so the logs answer ends.
    let config = format!("[parameters]\n\"path.instanceId\" = \"{id}\"\n\"path.snapshotId\" = \"{snapshot}\"\n\"query.follow\" = false\n");
    std::fs::write(dir.0.join("schemathesis.toml"), config).unwrap();
    let spec = app.url("/api/openapi.json");
    let auth = format!("Authorization: Bearer {}", app.user.key);
    let args = [
        "run",
        &spec,
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        "--max-examples",
        "12",
        "--seed",
        "20261203",
        "--request-timeout",
        "30",
        "--header",
        &auth,
        // Streams and websockets never end by themselves (their frames are checked against the
        // document in `every_streamed_event_is_one_the_document_describes` and `always_on`);
        // deleting the instance ends the run's subject; a gateway restart is a minute's wait.
        "--exclude-path-regex",
        "/(chat/stream|chat/events|agent/events|terminal/ws|vnc/ws|gateway/restart)$",
        "--exclude-name",
        "DELETE /api/instances/{instanceId}",
        "--exclude-name",
        "POST /api/account/logout",
        // A long poll (up to 20 s a call), checked in `always_on` and the client's test.
        "--exclude-name",
        "GET /api/instances/{instanceId}/channels/{kind}/login",
    ];
    let output = run("st", &args, &dir.0, Duration::from_secs(600)).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found answers the document does not describe:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    app.settle().await;
}

#[tokio::test]
async fn a_client_generated_from_the_served_spec_walks_a_users_first_steps() {
    crate::helpers::python_package("openapi_python_client");
    let app = spawn_app_with_docker(|_| {}).await;
    ocaas::auth::service::grant_subscription(&app.db, &app.user.email, 1, None).await.unwrap();
    let dir = Scratch::new();
    let spec = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().bytes().await.unwrap();
    std::fs::write(dir.0.join("openapi.json"), &spec).unwrap();
    // The generator reads binary bodies as files only under the generic media type.
    std::fs::write(dir.0.join("generator.yaml"), "content_type_overrides:\n  application/gzip: application/octet-stream\n").unwrap();
    let args = ["generate", "--path", "openapi.json", "--meta", "none", "--output-path", "ocaas_client", "--config", "generator.yaml"];
    let generated = run("openapi-python-client", &args, &dir.0, Duration::from_secs(180)).await;
    let said = format!("{}{}", String::from_utf8_lossy(&generated.stdout), String::from_utf8_lossy(&generated.stderr));
    assert!(generated.status.success(), "generating the client failed: {said}");
    assert!(!said.contains("WARNING"), "the generator could not read part of the spec: {said}");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/generated_client_walk.py");
    let walk = tokio::process::Command::new("python3")
        .arg(script)
        .env("PYTHONPATH", &dir.0)
        .env("OCAAS_URL", &app.address)
        .env("OCAAS_KEY", &app.user.key)
        .kill_on_drop(true)
        .output();
    let walk = tokio::time::timeout(Duration::from_secs(300), walk).await.expect("the walk finished within 5 minutes").unwrap();
    let stdout = String::from_utf8_lossy(&walk.stdout);
    assert!(walk.status.success(), "the generated client failed:\n{stdout}\n{}", String::from_utf8_lossy(&walk.stderr));
    assert!(stdout.contains("walked: create, ready, chat"), "{stdout}");
    app.settle().await;
}

/// Validates each frame's `{event, data}` against the schema the document names for the
/// stream (`x-sse-events`), with Python's `jsonschema` (an independent validator).
pub fn frames_match(spec: &serde_json::Value, path: &str, method: &str, frames: &[crate::sse::SseEvent]) {
    let content = &spec["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"];
    let events = content["x-sse-events"]["$ref"].as_str().unwrap_or_else(|| panic!("{method} {path} names no events: {content}"));
    let items: Vec<_> = frames.iter().map(|f| json!({"event": f.event, "data": f.data})).collect();
    if let Err(bad) = values_match(spec, events, &items) {
        panic!("{method} {path}: frames outside the documented events: {bad}");
    }
}

/// Validates `items` against the document's schema `reference` (`#/components/schemas/…`)
/// with Python's `jsonschema`; else what does not match.
pub fn values_match(spec: &serde_json::Value, reference: &str, items: &[serde_json::Value]) -> Result<(), String> {
    let dir = Scratch::new();
    let schema = json!({"$ref": reference, "components": spec["components"]});
    std::fs::write(dir.0.join("check.json"), json!({"schema": schema, "items": items}).to_string()).unwrap();
    let script = "import json,sys,jsonschema\nc=json.load(open(sys.argv[1]))\nv=jsonschema.Draft202012Validator(c['schema'])\nbad=[(i.get('event') or i.get('type'),e.message) for i in c['items'] for e in v.iter_errors(i)]\nprint(bad)\nsys.exit(1 if bad else 0)";
    let output = std::process::Command::new("python3").args(["-c", script, dir.0.join("check.json").to_str().unwrap()]).output().unwrap();
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)))
    }
}

#[tokio::test]
async fn every_streamed_event_is_one_the_document_describes() {
    crate::helpers::python_package("jsonschema");
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let spec: serde_json::Value = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().json().await.unwrap();
    let stream =
        app.api(Method::POST, &format!("/api/instances/{id}/chat/stream")).json(&json!({"message": "/echo documented"})).send().await.unwrap();
    let frames = crate::sse::SseReader::new(stream).all(Duration::from_secs(30)).await;
    assert!(frames.iter().any(|f| f.event == "complete"), "{frames:?}");
    frames_match(&spec, "/api/instances/{instanceId}/chat/stream", "post", &frames);

    let session = frames.iter().find(|f| f.event == "complete").unwrap().data["session_id"].as_str().unwrap().to_owned();
    let feed =
        app.api(Method::GET, &format!("/api/instances/{id}/chat/events?session_id={session}")).header("Last-Event-ID", "0").send().await.unwrap();
    let mut reader = crate::sse::SseReader::new(feed);
    let mut frames = Vec::new();
    while let Some(frame) = reader.next(Duration::from_secs(2)).await {
        frames.push(frame);
    }
    assert!(frames.len() >= 3 && frames[0].event == "ready", "{frames:?}");
    frames_match(&spec, "/api/instances/{instanceId}/chat/events", "get", &frames);

    let logs = app.api(Method::GET, &format!("/api/instances/{id}/logs?tail=5&follow=true")).send().await.unwrap();
    let mut reader = crate::sse::SseReader::new(logs);
    let mut frames = Vec::new();
    while let Some(frame) = reader.next(Duration::from_secs(2)).await {
        frames.push(frame);
    }
    assert_eq!(app.api(Method::POST, &format!("/api/instances/{id}/shutdown")).send().await.unwrap().status(), StatusCode::ACCEPTED);
    while let Some(frame) = reader.next(Duration::from_secs(30)).await {
        let end = frame.event == "end";
        frames.push(frame);
        if end {
            break;
        }
    }
    assert_eq!(frames.last().map(|f| f.event.as_str()), Some("end"), "{frames:?}");
    frames_match(&spec, "/api/instances/{instanceId}/logs", "get", &frames);
    app.settle().await;
}
