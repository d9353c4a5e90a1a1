//! The bridge to an instance's OpenClaw gateway: `POST /v1/chat/completions` with
//! `stream: true`, only the new user turn (the gateway keeps history per
//! `x-openclaw-session-key`), and a parser for its SSE (`data:` chunks, `data: [DONE]`, the
//! in-stream `{"error":…}`) and its non-2xx JSON errors.

use std::net::{IpAddr, SocketAddr};

use bytes::BytesMut;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::runtime::sandbox::GATEWAY_PORT;

#[derive(Debug, Clone, PartialEq)]
pub enum GatewayEvent {
    /// A piece of the assistant's answer.
    Delta(String),
    /// The answer is complete.
    Done,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GatewayError {
    #[error("the agent gateway could not be reached: {0}")]
    Unreachable(String),
    #[error("the agent gateway answered {status}: {message}")]
    Http { status: u16, message: String },
    #[error("the agent reported an error: {0}")]
    Upstream(String),
    #[error("the agent gateway sent something unreadable: {0}")]
    Protocol(String),
}

pub struct Turn<'a> {
    pub ip: IpAddr,
    pub token: &'a str,
    pub session_key: &'a str,
    pub message: &'a str,
}

/// Starts a streaming completion; the stream yields deltas, then `Done`, or an error.
pub async fn stream_turn(
    http: &reqwest::Client,
    turn: Turn<'_>,
) -> Result<impl Stream<Item = Result<GatewayEvent, GatewayError>> + use<>, GatewayError> {
    let url = format!("http://{}/v1/chat/completions", SocketAddr::new(turn.ip, GATEWAY_PORT));
    let body = json!({"model": "openclaw/default", "stream": true, "messages": [{"role": "user", "content": turn.message}]});
    let response = http
        .post(url)
        .bearer_auth(turn.token)
        .header("x-openclaw-session-key", turn.session_key)
        .json(&body)
        .send()
        .await
        .map_err(|e| GatewayError::Unreachable(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        return Err(GatewayError::Http { status: status.as_u16(), message: error_message(&text).unwrap_or(text) });
    }
    let mut parser = SseParser::default();
    let bytes = response.bytes_stream();
    Ok(bytes
        .map(move |chunk| match chunk {
            Ok(chunk) => parser.push(&chunk),
            Err(e) => vec![Err(GatewayError::Unreachable(e.to_string()))],
        })
        .flat_map(futures_util::stream::iter))
}

/// `{"error":{"message":…}}` → the message.
fn error_message(text: &str) -> Option<String> {
    let value: Value = serde_json::from_str(text).ok()?;
    let error = value.get("error")?;
    Some(error.get("message").and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| error.to_string()))
}

/// Incremental parser of the gateway's `text/event-stream`.
#[derive(Default)]
pub struct SseParser {
    buffer: BytesMut,
    finished: bool,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<GatewayEvent, GatewayError>> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = find_event_end(&self.buffer) {
            let raw = self.buffer.split_to(end.0 + end.1);
            if self.finished {
                continue;
            }
            let text = String::from_utf8_lossy(&raw[..end.0]).replace("\r\n", "\n");
            let data: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.strip_prefix(' ').unwrap_or(d)).collect();
            if data.is_empty() {
                continue;
            }
            let data = data.join("\n");
            if data == "[DONE]" {
                self.finished = true;
                out.push(Ok(GatewayEvent::Done));
                continue;
            }
            out.push(parse_chunk(&data));
        }
        out.into_iter().filter(|e| !matches!(e, Ok(GatewayEvent::Delta(d)) if d.is_empty())).collect()
    }
}

/// Position of the blank line ending the first event, and its length.
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer.windows(2).position(|w| w == b"\n\n").map(|p| (p, 2));
    let crlf = buffer.windows(4).position(|w| w == b"\r\n\r\n").map(|p| (p, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn parse_chunk(data: &str) -> Result<GatewayEvent, GatewayError> {
    if let Some(message) = error_message(data) {
        return Err(GatewayError::Upstream(message));
    }
    let value: Value = serde_json::from_str(data).map_err(|e| GatewayError::Protocol(format!("{e} in {data:.200}")))?;
    let content = value["choices"][0]["delta"]["content"].as_str().unwrap_or("");
    Ok(GatewayEvent::Delta(content.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(body: &str, piece: usize) -> Vec<Result<GatewayEvent, GatewayError>> {
        let mut parser = SseParser::default();
        body.as_bytes().chunks(piece).flat_map(|c| parser.push(c)).collect()
    }

    #[test]
    fn parses_the_captured_stream_whatever_the_chunking() {
        let body = include_str!("../../tests/fixtures/gateway/chat_stream.sse");
        for piece in [1, 7, 100, body.len()] {
            let events = parse_in_pieces(body, piece);
            let text: String = events
                .iter()
                .filter_map(|e| match e {
                    Ok(GatewayEvent::Delta(d)) => Some(d.as_str()),
                    _ => None,
                })
                .collect();
            assert!(text.starts_with("Hello from fake LLM #2. You said:"), "{text}");
            assert!(text.ends_with("| history_turns=1"), "{text}");
            assert_eq!(events.last(), Some(&Ok(GatewayEvent::Done)));
            assert!(events.iter().all(|e| e.is_ok()));
        }
    }

    #[test]
    fn parses_the_in_stream_error_of_the_capture() {
        let events = parse_in_pieces(include_str!("../../tests/fixtures/gateway/llm_down_stream.sse"), 13);
        assert_eq!(events[0], Err(GatewayError::Upstream("upstream provider timeout".into())));
        assert_eq!(events.last(), Some(&Ok(GatewayEvent::Done)));
    }

    #[test]
    fn reads_the_json_error_body() {
        assert_eq!(error_message(include_str!("../../tests/fixtures/gateway/llm_down.json")).as_deref(), Some("upstream provider timeout"));
        assert_eq!(error_message("not json"), None);
    }

    #[test]
    fn crlf_framing_and_garbage() {
        let events = parse_in_pieces("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\r\n\r\ndata: nonsense\n\ndata: [DONE]\n\n", 3);
        assert_eq!(events[0], Ok(GatewayEvent::Delta("hi".into())));
        assert!(matches!(events[1], Err(GatewayError::Protocol(_))));
        assert_eq!(events[2], Ok(GatewayEvent::Done));
    }
}
