//! The captured frames of the real gateway (openclaw 2026.9.6, `tests/fixtures/gateway/7x_*`)
//! replayed to ocaas's client over a real WebSocket on loopback: what the client makes of them
//! is what it makes of the real gateway. Request ids are mapped from the capture's to the
//! client's; everything else is sent byte for byte as captured.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use super::frames::History;
use super::{Device, Foreign, RunEvent, conn};

fn frames(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/gateway/{name}.frames.jsonl", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Plays `name` as the gateway: its `recv` frames are sent, at each `send` frame a client
/// frame is read; `mangle` may rewrite a frame before it goes out.
async fn serve(name: &'static str, mangle: fn(usize, String) -> Option<String>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut socket = tokio_tungstenite::accept_async(tcp).await.unwrap();
        let mut ids: HashMap<String, String> = HashMap::new();
        for (index, record) in frames(name).into_iter().enumerate() {
            let raw = record["raw"].as_str().unwrap_or("").to_owned();
            match record["dir"].as_str().unwrap() {
                "send" => {
                    let captured: Value = serde_json::from_str(&raw).unwrap();
                    let Some(Ok(Message::Text(text))) = socket.next().await else { return };
                    let sent: Value = serde_json::from_str(text.as_str()).unwrap();
                    assert_eq!(sent["method"], captured["method"], "the client asks what the captured client asked");
                    ids.insert(captured["id"].as_str().unwrap().to_owned(), sent["id"].as_str().unwrap().to_owned());
                }
                "recv" => {
                    let mut frame: Value = serde_json::from_str(&raw).unwrap();
                    let text = match frame["type"].as_str() {
                        Some("res") => {
                            frame["id"] = json!(ids[frame["id"].as_str().unwrap()]);
                            frame.to_string()
                        }
                        _ => raw,
                    };
                    let Some(text) = mangle(index, text) else { continue };
                    if socket.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
        // Keep the socket open until the client is done.
        while socket.next().await.is_some() {}
    });
    addr
}

/// Runs `runs` one after the other as the captured client did, then reads the history.
async fn run(addr: std::net::SocketAddr, runs: &[&str], session: &str) -> (Vec<Vec<RunEvent>>, History, mpsc::Receiver<Foreign>) {
    let (foreign, foreign_rx) = mpsc::channel(64);
    let sinks = super::Sinks { foreign, notices: mpsc::channel(64).0 };
    let tunnel: crate::runtime::dial::Tunnel = Box::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let connection = conn::connect(tunnel, "oc-test-token-1234567890", &Device::generate(), uuid::Uuid::nil(), sinks).await.unwrap();
    let mut all = Vec::new();
    for run_id in runs {
        let mut feed = connection.subscribe(run_id);
        let params = json!({"sessionKey": session, "message": "m", "idempotencyKey": run_id});
        let started = connection.request("chat.send", params, Duration::from_secs(5)).await.unwrap();
        assert_eq!(started, json!({"runId": run_id, "status": "started"}));
        let mut events = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout(Duration::from_secs(2), feed.recv()).await {
            events.push(event);
        }
        all.push(events);
    }
    let history = conn::history(&connection, session, 20).await.unwrap();
    (all, history, foreign_rx)
}

fn text(events: &[RunEvent]) -> String {
    events.iter().filter_map(|e| if let RunEvent::Delta(d) = e { Some(d.as_str()) } else { None }).collect()
}

#[tokio::test]
async fn the_captured_tool_run_becomes_text_tool_steps_and_an_end() {
    let addr = serve("71_ws_tool_run_shared_http_session", |_, t| Some(t)).await;
    let (mut runs, history, _) = run(addr, &["d27298f0-cd9a-4325-a813-d0132e5766d4"], "rust-conv-42").await;
    let events = runs.remove(0);
    assert_eq!(text(&events), "Running a command.\n\nTool finished. Output was: hi");
    let phases: Vec<&str> = events.iter().filter_map(|e| if let RunEvent::Tool(t) = e { Some(t.phase.as_str()) } else { None }).collect();
    assert_eq!(phases, ["start", "update", "result"]);
    assert!(matches!(events.last(), Some(RunEvent::Final(Some(t))) if t == "Running a command.\n\nTool finished. Output was: hi"));
    // The transcript holds the same step, for a reader that missed the events.
    let steps = crate::chat::tools::from_transcript(&history.messages);
    assert_eq!((steps.len(), steps[0].output.as_str()), (1, "hi"));
}

#[tokio::test]
async fn a_lost_frame_ends_the_run_feed_and_asks_for_a_reload() {
    // Frame 12 of the capture (an `agent` event) never arrives: the outer seq jumps.
    let addr = serve("71_ws_tool_run_shared_http_session", |index, t| (index != 12).then_some(t)).await;
    let (mut runs, _, mut foreign) = run(addr, &["d27298f0-cd9a-4325-a813-d0132e5766d4"], "rust-conv-42").await;
    let events = runs.remove(0);
    assert!(!events.iter().any(RunEvent::ends_run), "the feed ended before its end: the reader reloads");
    let mut resync = false;
    while let Ok(event) = foreign.try_recv() {
        resync |= matches!(event, Foreign::Resync { .. });
    }
    assert!(resync);
}

#[tokio::test]
async fn the_captured_backend_session_replays_both_turns() {
    let addr = serve("70_ws_backend", |_, t| Some(t)).await;
    let (runs, history, _) = run(addr, &["b129b503-cb0a-4278-adc1-7f2d8a79c36f", "87100a63-0eb4-4eb4-8a5f-810c89ca084a"], "ws-demo-1").await;
    assert!(text(&runs[0]).ends_with("Hello over WebSocket (turn 1) | history_turns=1"), "{}", text(&runs[0]));
    assert!(text(&runs[1]).ends_with("Second WS turn, same session | history_turns=3"), "{}", text(&runs[1]));
    assert!(runs.iter().all(|events| matches!(events.last(), Some(RunEvent::Final(_)))));
    assert_eq!(history.messages.len(), 4);
}
