//! Instance logs: the gateway's own lines, what anything in the sandbox prints to the
//! container's output, over-long lines cut, the tail bounded, and a follower that sees new
//! lines as they come.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error, json, ready_instance, spawn_app, spawn_app_with_docker};
use crate::sse::SseReader;

async fn exec(app: &TestApp, id: &str, command: &str) {
    let response = app.api(Method::POST, &format!("/api/instances/{id}/terminal/exec")).json(&json!({"command": command})).send().await.unwrap();
    assert_eq!(json(response, StatusCode::OK).await["exit_code"], 0);
}

fn texts(logs: &Value) -> Vec<String> {
    logs["lines"].as_array().unwrap().iter().map(|l| l["text"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn logs_show_the_gateway_and_the_sandbox_output_bounded() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, _) = ready_instance(&app).await;
    let logs = format!("/api/instances/{id}/logs");
    let first = json(app.api(Method::GET, &logs).send().await.unwrap(), StatusCode::OK).await;
    assert!(texts(&first).iter().any(|t| t.starts_with("[gateway] listening on")), "{first}");

    let chat = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/echo hi"})).send().await.unwrap();
    assert_eq!(chat.status(), StatusCode::OK);
    // Anything in the sandbox may print to the container's output; a 100 kB line is cut.
    exec(&app, &id, "echo to-stderr >&2 >/proc/1/fd/2; head -c 100000 /dev/zero | tr '\\0' x >/proc/1/fd/1; echo >/proc/1/fd/1; echo after-the-long-one >/proc/1/fd/1").await;
    // The engine copies the container's output to its log asynchronously: wait (bounded) for the
    // last line to arrive before judging what came before it.
    let mut later = Value::Null;
    for _ in 0..50 {
        later = json(app.api(Method::GET, &format!("{logs}?tail=50")).send().await.unwrap(), StatusCode::OK).await;
        if texts(&later).iter().any(|t| t == "after-the-long-one") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lines = later["lines"].as_array().unwrap();
    assert!(lines.iter().any(|l| l["text"].as_str().unwrap().starts_with("[gateway] chat ")), "the turn: {later}");
    assert!(lines.iter().any(|l| l["stream"] == "stderr" && l["text"] == "to-stderr"), "{later}");
    let long = lines.iter().find(|l| l["text"].as_str().unwrap().starts_with("xxxx")).expect("the long line");
    assert_eq!(long["text"].as_str().unwrap().len(), 16 << 10);
    assert_eq!(lines.last().unwrap()["text"], "after-the-long-one");
    let two = json(app.api(Method::GET, &format!("{logs}?tail=2")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(two["lines"].as_array().unwrap().len(), 2, "{two}");

    assert_error(app.api(Method::GET, &format!("{logs}?tail=5001")).send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid_request").await;

    // Following: the tail first, then lines as they are printed.
    let response = app.api(Method::GET, &format!("{logs}?tail=1&follow=true")).send().await.unwrap();
    let mut events = SseReader::new(response);
    let first = events.next(Duration::from_secs(10)).await.expect("the tail");
    assert_eq!((first.event.as_str(), first.data["text"].as_str()), ("log", Some("after-the-long-one")));
    exec(&app, &id, "echo followed-$((40+2)) >/proc/1/fd/1").await;
    let next = events.next(Duration::from_secs(10)).await.expect("a new line");
    assert_eq!(next.data["text"], "followed-42", "{next:?}");
    // Shutting the instance down ends the stream with `end`.
    assert_eq!(app.api(Method::POST, &format!("/api/instances/{id}/shutdown")).send().await.unwrap().status(), StatusCode::ACCEPTED);
    let mut last = None;
    while let Some(event) = events.next(Duration::from_secs(30)).await {
        last = Some(event.event.clone());
        if event.event == "end" {
            break;
        }
    }
    assert_eq!(last.as_deref(), Some("end"));
    app.settle().await;
}

#[tokio::test]
async fn strangers_get_404_and_an_instance_without_a_container_409() {
    let app = spawn_app().await;
    let missing = uuid::Uuid::new_v4();
    assert_error(app.api(Method::GET, &format!("/api/instances/{missing}/logs")).send().await.unwrap(), StatusCode::NOT_FOUND, "instance_not_found")
        .await;
    let row = app.ready_instance_row().await;
    let response = app.api(Method::GET, &format!("/api/instances/{row}/logs")).send().await.unwrap();
    assert_error(response, StatusCode::CONFLICT, "instance_not_running").await;
}
