//! Reading usage on the way through: a stream wrapper that passes the upstream's bytes on
//! unchanged and unbuffered while it scans the SSE `data:` lines for a `usage` object, and
//! records one usage row when the stream ends — finished, failed, or dropped by the gateway.
//! A line longer than `MAX_LINE` is passed on but not scanned, so the meter's memory is bounded
//! whatever the upstream sends.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::Stream;
use serde_json::Value;
use sqlx::PgPool;

use super::repo::{self, UsageRecord};

/// Longest SSE line scanned for usage (a usage chunk is a few hundred bytes).
const MAX_LINE: usize = 64 << 10;

/// Token counts as the upstream reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// The `usage` of an OpenAI-style response or chunk, if it has one.
pub fn usage_of(value: &Value) -> Option<Usage> {
    let usage = value.get("usage")?;
    let count = |name: &str| usage.get(name).and_then(Value::as_i64).filter(|n| *n >= 0);
    Some(Usage { prompt_tokens: count("prompt_tokens")?, completion_tokens: count("completion_tokens").unwrap_or(0) })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// What the meter saw of one call.
#[derive(Debug, Default)]
pub struct Tally {
    pub usage: Option<Usage>,
    /// Bytes of the answer's events, for an estimate when no usage came.
    pub content_bytes: usize,
    pub saw_error: bool,
    pub saw_done: bool,
}

impl Tally {
    /// Feeds one SSE line (without its line break).
    pub fn line(&mut self, line: &[u8]) {
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.trim_ascii();
        if data == b"[DONE]" {
            self.saw_done = true;
            return;
        }
        // Only usage and error events need parsing; content deltas are counted by their size
        // (the estimate's input), which keeps the meter cheap on long answers.
        if !contains(data, b"\"usage\"") && !contains(data, b"\"error\"") {
            self.content_bytes += data.len();
            return;
        }
        let Ok(value) = serde_json::from_slice::<Value>(data) else { return };
        if value.get("error").is_some() {
            self.saw_error = true;
        }
        if let Some(usage) = usage_of(&value) {
            self.usage = Some(usage);
        }
        if let Some(choices) = value.get("choices").and_then(Value::as_array) {
            for choice in choices {
                let content = choice.pointer("/delta/content").and_then(Value::as_str).unwrap_or_default();
                self.content_bytes += content.len();
            }
        }
    }
}

/// Everything needed to write the usage row when the call ends.
pub struct Recorder {
    pub db: PgPool,
    pub owner: repo::TokenOwner,
    pub model: String,
    pub request_bytes: usize,
    pub started: Instant,
    /// The tokens set aside for the call, released once its usage is recorded.
    pub reservation: Option<uuid::Uuid>,
}

impl Recorder {
    /// Writes the row in the background (the response must not wait for it).
    pub fn record(self, tally: &Tally, upstream_ok: bool) {
        // About four bytes a token: the estimate when the upstream reported nothing.
        let (usage, estimated) = match tally.usage {
            Some(usage) => (usage, false),
            None => (Usage { prompt_tokens: (self.request_bytes / 4) as i64, completion_tokens: tally.content_bytes.div_ceil(4) as i64 }, true),
        };
        // As the `model_usage.status` column says: the provider answered an error, or the call
        // did not complete (unreachable, timed out, cut short).
        let status = match (tally.saw_error, upstream_ok && (tally.saw_done || tally.usage.is_some())) {
            (true, _) => "upstream_error",
            (false, true) => "ok",
            (false, false) => "failed",
        };
        let record = UsageRecord {
            instance_id: self.owner.instance_id,
            user_id: self.owner.user_id,
            model: self.model,
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            estimated,
            duration_ms: self.started.elapsed().as_millis() as i64,
            status,
        };
        let (db, owner, reservation) = (self.db, self.owner, self.reservation);
        tokio::spawn(async move {
            let recorded = async {
                repo::insert_usage(&db, &record).await?;
                if let Some(reservation) = reservation {
                    repo::release_reservation(&db, reservation).await?;
                }
                super::limits::warn_if_near(&db, &owner).await
            };
            if let Err(error) = recorded.await {
                tracing::warn!(%error, instance = %record.instance_id, "broker: recording usage failed");
            }
        });
    }
}

/// Passes a streamed upstream body through, scanning it; records usage when it ends or drops.
pub struct Metered<S> {
    inner: S,
    line: Vec<u8>,
    overlong: bool,
    tally: Tally,
    recorder: Option<Recorder>,
    upstream_ok: bool,
}

impl<S> Metered<S> {
    /// `inner` is the body of a successful answer; an error while reading it marks the call failed.
    pub fn new(inner: S, recorder: Recorder) -> Self {
        Metered { inner, line: Vec::new(), overlong: false, tally: Tally::default(), recorder: Some(recorder), upstream_ok: true }
    }

    fn scan(&mut self, bytes: &[u8]) {
        for piece in bytes.split_inclusive(|b| *b == b'\n') {
            let complete = piece.ends_with(b"\n");
            let piece = piece.strip_suffix(b"\n").unwrap_or(piece);
            if !self.overlong {
                if self.line.len() + piece.len() > MAX_LINE {
                    self.overlong = true;
                    self.line.clear();
                } else {
                    self.line.extend_from_slice(piece);
                }
            }
            if complete {
                if !self.overlong {
                    let line = std::mem::take(&mut self.line);
                    self.tally.line(line.strip_suffix(b"\r").unwrap_or(&line));
                }
                self.overlong = false;
            }
        }
    }

    fn finish(&mut self) {
        if let Some(recorder) = self.recorder.take() {
            recorder.record(&self.tally, self.upstream_ok);
        }
    }
}

impl<S, E> Stream for Metered<S>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(bytes))) => {
                let bytes = bytes.clone();
                self.scan(&bytes);
            }
            Poll::Ready(Some(Err(_))) => {
                self.upstream_ok = false;
                self.finish();
            }
            Poll::Ready(None) => self.finish(),
            Poll::Pending => {}
        }
        polled
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usage_chunk_and_content_are_read_across_arbitrary_splits() {
        let body = concat!(
            "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n",
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hello\"}}]}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17}}\r\n\r\n",
            "data: [DONE]\n\n"
        );
        for split in 1..body.len() {
            let mut tally = Tally::default();
            let mut line = Vec::new();
            for part in [&body.as_bytes()[..split], &body.as_bytes()[split..]] {
                for byte in part {
                    if *byte == b'\n' {
                        tally.line(line.strip_suffix(b"\r").unwrap_or(&line));
                        line.clear();
                    } else {
                        line.push(*byte);
                    }
                }
            }
            assert_eq!(tally.usage, Some(Usage { prompt_tokens: 12, completion_tokens: 5 }));
            assert!(tally.content_bytes >= 5, "the content is counted");
            assert!(tally.saw_done && !tally.saw_error);
        }
    }

    #[test]
    fn lying_usage_is_ignored() {
        assert_eq!(usage_of(&serde_json::json!({"usage": {"prompt_tokens": -3}})), None);
        assert_eq!(usage_of(&serde_json::json!({"usage": "lots"})), None);
        assert_eq!(usage_of(&serde_json::json!({"usage": {"prompt_tokens": 7}})), Some(Usage { prompt_tokens: 7, completion_tokens: 0 }));
    }
}
