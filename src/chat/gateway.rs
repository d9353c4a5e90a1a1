//! The bridge to an instance's OpenClaw gateway: `POST /v1/chat/completions` with
//! `stream: true`, only the new user turn (the gateway keeps history per
//! `x-openclaw-session-key`), and a parser for its SSE (`data:` chunks, `data: [DONE]`, the
//! in-stream `{"error":…}`) and its non-2xx JSON errors.

use bytes::BytesMut;
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};

use crate::runtime::Runtime;
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
    pub runtime: &'a dyn Runtime,
    pub sandbox: &'a str,
    pub token: &'a str,
    pub session_key: &'a str,
    pub message: &'a str,
}

/// Starts a streaming completion; the stream yields deltas, then `Done`, or an error.
pub async fn stream_turn(turn: Turn<'_>) -> Result<impl Stream<Item = Result<GatewayEvent, GatewayError>> + use<>, GatewayError> {
    let body = json!({"model": "openclaw/default", "stream": true, "messages": [{"role": "user", "content": turn.message}]});
    let request = hyper::Request::post("/v1/chat/completions")
        .header("host", "gateway")
        .header("authorization", format!("Bearer {}", turn.token))
        .header("x-openclaw-session-key", turn.session_key)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
        .map_err(|e| GatewayError::Unreachable(e.to_string()))?;
    let response =
        crate::runtime::dial::http(turn.runtime, turn.sandbox, GATEWAY_PORT, request).await.map_err(|e| GatewayError::Unreachable(e.to_string()))?;
    let status = response.status();
    let mut bytes = Box::pin(
        http_body_util::BodyStream::new(response.into_body()).filter_map(|frame| std::future::ready(frame.map(|f| f.into_data().ok()).transpose())),
    );
    if !status.is_success() {
        // An error body is a short JSON message: read at most a few KiB of whatever is sent.
        let mut raw = Vec::new();
        while raw.len() < MAX_ERROR_BODY {
            match bytes.next().await {
                Some(Ok(chunk)) => raw.extend_from_slice(&chunk[..chunk.len().min(MAX_ERROR_BODY - raw.len())]),
                _ => break,
            }
        }
        let text = String::from_utf8_lossy(&raw).into_owned();
        return Err(GatewayError::Http { status: status.as_u16(), message: error_message(&text).unwrap_or(text) });
    }
    let mut parser = SseParser::default();
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

const MAX_ERROR_BODY: usize = 4 << 10;
/// One SSE event (a chunk of the answer) is a few hundred bytes; a longer one is refused
/// rather than buffered without end.
const MAX_EVENT_BYTES: usize = 1 << 20;

/// Incremental parser of the gateway's `text/event-stream`, linear in its input: each byte is
/// scanned for an event's end once.
#[derive(Default)]
pub struct SseParser {
    buffer: BytesMut,
    /// How much of `buffer` is known to hold no complete event end.
    scanned: usize,
    finished: bool,
}

impl SseParser {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<GatewayEvent, GatewayError>> {
        if self.finished {
            // After `[DONE]` or a refusal nothing more is read or kept.
            return Vec::new();
        }
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            // An end marker may straddle the previous scan's edge: look back over it.
            let from = self.scanned.saturating_sub(4);
            let Some(end) = find_event_end(&self.buffer[from..]).map(|(at, len)| (at + from, len)) else {
                self.scanned = self.buffer.len();
                if self.buffer.len() > MAX_EVENT_BYTES {
                    self.finished = true;
                    self.buffer.clear();
                    self.scanned = 0;
                    out.push(Err(GatewayError::Protocol(format!("an event longer than {MAX_EVENT_BYTES} bytes"))));
                }
                break;
            };
            let raw = self.buffer.split_to(end.0 + end.1);
            self.scanned = 0;
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

/// Position of the blank line ending the first event (`\n\n` or `\r\n\r\n`), and its
/// length. One pass over the buffer, whatever it holds.
fn find_event_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(offset) = buffer[from..].iter().position(|b| *b == b'\n') {
        let at = from + offset;
        match (buffer.get(at + 1), buffer.get(at + 2)) {
            (Some(b'\n'), _) => return Some((at, 2)),
            (Some(b'\r'), Some(b'\n')) if at > 0 && buffer[at - 1] == b'\r' => return Some((at - 1, 4)),
            _ => from = at + 1,
        }
    }
    None
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

    #[test]
    fn an_endless_event_is_refused_not_buffered() {
        let mut parser = SseParser::default();
        let piece = vec![b'x'; 64 << 10];
        let mut errors = Vec::new();
        parser.push(b"data: ");
        for _ in 0..40 {
            errors.extend(parser.push(&piece).into_iter().filter(Result::is_err));
            assert!(parser.buffer.len() <= MAX_EVENT_BYTES + piece.len(), "{}", parser.buffer.len());
        }
        assert_eq!(errors.len(), 1, "{errors:?}");
        // Many small events in one chunk parse in one pass.
        let many = "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n".repeat(10_000);
        assert_eq!(SseParser::default().push(many.as_bytes()).len(), 10_000);
    }
}
