//! `GET /api/instances/{instanceId}/logs`: the sandbox's output (the gateway's and the
//! container's, stdout and stderr) as lines — the last `tail` lines as JSON, or with
//! `follow=true` as server-sent events that go on while the container prints. Bounded by what
//! ocaas decides: at most `MAX_TAIL` lines, lines cut at `MAX_LINE_BYTES`, a JSON answer of at
//! most `MAX_RESPONSE_BYTES`, and a follower that reads slowly holds the engine's stream back
//! instead of growing a queue.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::OwnedInstance;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::ApiQuery;
use crate::runtime::LogChunk;
use crate::state::AppState;

pub const DEFAULT_TAIL: u32 = 200;
pub const MAX_TAIL: u32 = 5000;
pub const MAX_LINE_BYTES: usize = 16 << 10;
const MAX_RESPONSE_BYTES: usize = 4 << 20;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// How many of the last lines to return first (default 200, at most 5000).
    pub tail: Option<u32>,
    /// Keep the response open and stream new lines as server-sent `log` events.
    #[serde(default)]
    pub follow: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"stream": "stdout", "text": "[gateway] listening on 0.0.0.0:18789"}))]
pub struct LogLine {
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line without its newline (invalid UTF-8 replaced); cut at 16 KiB.
    pub text: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Logs {
    pub lines: Vec<LogLine>,
    /// True when lines were left out to keep the answer under 4 MiB.
    pub truncated: bool,
}

/// The end of a followed log: the container stopped printing.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogEnd {}

/// One event of `GET …/logs?follow=true`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum LogEvent {
    Log(LogLine),
    End(LogEnd),
}

/// Turns engine chunks into lines, per stream, never holding more than one line's cap.
#[derive(Default)]
pub struct LineSplitter {
    pending: [Vec<u8>; 2],
    /// The rest of an over-long line is being skipped.
    skipping: [bool; 2],
}

impl LineSplitter {
    pub fn push(&mut self, chunk: &LogChunk) -> Vec<LogLine> {
        let index = usize::from(chunk.stderr);
        let mut lines = Vec::new();
        for piece in chunk.bytes.split_inclusive(|b| *b == b'\n') {
            let ends = piece.last() == Some(&b'\n');
            let content = if ends { &piece[..piece.len() - 1] } else { piece };
            if !self.skipping[index] {
                let room = MAX_LINE_BYTES - self.pending[index].len();
                self.pending[index].extend_from_slice(&content[..content.len().min(room)]);
                if content.len() > room {
                    lines.push(self.take(index));
                    self.skipping[index] = true;
                }
            }
            if ends {
                if self.skipping[index] {
                    self.skipping[index] = false;
                } else {
                    lines.push(self.take(index));
                }
            }
        }
        lines
    }

    fn take(&mut self, index: usize) -> LogLine {
        let bytes = std::mem::take(&mut self.pending[index]);
        let text = String::from_utf8_lossy(&bytes).trim_end_matches('\r').to_owned();
        LogLine { stream: if index == 1 { "stderr" } else { "stdout" }, text }
    }
}

/// Instance logs
///
/// The sandbox's output — the agent gateway's and the container's, stdout and stderr — as
/// lines. Without `follow`: the last `tail` lines as JSON. With `follow=true`: server-sent
/// events, `log` `{stream, text}` for the last `tail` lines and then each new one, `end` when
/// the container stops printing (it stopped), keep-alive comments every 15 s.
#[utoipa::path(get, path = "/api/instances/{instanceId}/logs", tag = "instances",
    params(OwnedInstance, LogsQuery),
    responses(
        (status = 200, description = "The lines (JSON), or an event stream with `follow=true`", body = Logs,
            content((Logs = "application/json"), (String = "text/event-stream"))),
        (status = 400, description = "`tail` out of range", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`: the sandbox container does not exist (yet)", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent` (with `follow`): the user's event streams are all open", body = ErrorBody),
    ))]
pub async fn logs(
    State(state): State<AppState>,
    OwnedInstance { instance, user }: OwnedInstance,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> AppResult<Response> {
    let tail = q.tail.unwrap_or(DEFAULT_TAIL);
    if tail > MAX_TAIL {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("`tail` must be at most {MAX_TAIL}.")));
    }
    // Missing container → 409 before anything streams.
    state.runtime.inspect(&instance.sandbox_id).await?;
    let chunks = state.runtime.logs(&instance.sandbox_id, tail, q.follow);
    if !q.follow {
        return Ok(Json(collect(chunks).await?).into_response());
    }
    let open = (state.user_slots.acquire(user.user_id, crate::state::SlotKind::Stream)?, state.metrics.stream_open("sse"));
    let lines = follow_lines(chunks).chain(futures_util::stream::once(async { crate::sse::to_sse(&LogEvent::End(LogEnd {})) }));
    let stream = lines.map(move |event| {
        let _open = &open;
        event
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response())
}

async fn collect(mut chunks: crate::runtime::LogStream) -> AppResult<Logs> {
    let (mut splitter, mut lines, mut size, mut truncated) = (LineSplitter::default(), std::collections::VecDeque::new(), 0usize, false);
    while let Some(chunk) = chunks.next().await {
        for line in splitter.push(&chunk?) {
            size += line.text.len() + 32;
            lines.push_back(line);
        }
        // Keep the newest lines that fit (dropping from the front costs nothing with a deque).
        while size > MAX_RESPONSE_BYTES {
            let Some(dropped) = lines.pop_front() else { break };
            size -= dropped.text.len() + 32;
            truncated = true;
        }
    }
    Ok(Logs { lines: lines.into(), truncated })
}

fn follow_lines(chunks: crate::runtime::LogStream) -> impl Stream<Item = Result<Event, Infallible>> + Send {
    let lines = chunks.scan(LineSplitter::default(), |splitter, chunk| {
        let lines = match chunk {
            Ok(chunk) => splitter.push(&chunk),
            Err(error) => vec![LogLine { stream: "stderr", text: format!("[ocaas] the log stream broke off: {error}") }],
        };
        std::future::ready(Some(futures_util::stream::iter(lines)))
    });
    lines.flatten().map(|line| crate::sse::to_sse(&LogEvent::Log(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(stderr: bool, text: &[u8]) -> LogChunk {
        LogChunk { stderr, bytes: bytes::Bytes::copy_from_slice(text) }
    }

    #[test]
    fn chunks_become_lines_per_stream() {
        let mut splitter = LineSplitter::default();
        assert!(splitter.push(&chunk(false, b"hel")).is_empty());
        let lines = splitter.push(&chunk(true, b"oops\n"));
        assert_eq!((lines[0].stream, lines[0].text.as_str()), ("stderr", "oops"));
        let lines = splitter.push(&chunk(false, b"lo\r\nworld\nand"));
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["hello", "world"]);
    }

    #[test]
    fn an_endless_line_is_cut_and_never_buffered_whole() {
        let mut splitter = LineSplitter::default();
        let mut lines = Vec::new();
        for _ in 0..100 {
            lines.extend(splitter.push(&chunk(false, &[b'x'; 1 << 10])));
            assert!(splitter.pending[0].len() <= MAX_LINE_BYTES);
        }
        lines.extend(splitter.push(&chunk(false, b"tail\nnext\n")));
        assert_eq!(lines.len(), 2, "one cut line, the rest of it skipped, then the next line");
        assert_eq!(lines[0].text.len(), MAX_LINE_BYTES);
        assert_eq!(lines[1].text, "next");
    }
}
