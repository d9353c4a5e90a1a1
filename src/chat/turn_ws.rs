//! A chat turn over the gateway's WebSocket protocol: `chat.send` with the assistant message's
//! id as the idempotency key (so the gateway's `runId` is that id), then the run's events: text
//! deltas, tool steps (start, update, result), and the end (final, aborted, error). A stop sends
//! `chat.abort` and waits briefly for the gateway to confirm. Lost events (a dropped connection,
//! a `seq` gap, a reader that fell behind) are recovered from `chat.history`: the run's messages
//! there tell how it ended, and the final text replaces what was streamed.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::tools::{self, ToolEvent, ToolPhase};
use super::turn::{Ending, HEARTBEAT, Job, Progress, TurnEvent};
use crate::gateway::Link;
use crate::runtime::gateway::frames::text_of;
use crate::runtime::gateway::{Connection, RunEvent, history};

const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped run may take to say it stopped.
const ABORT_GRACE: Duration = Duration::from_millis(1500);
/// Lost feeds recovered per turn before it is given up.
const RECONCILES: u32 = 5;
const RECONNECT_WAIT: Duration = Duration::from_secs(15);

enum Recovered {
    Ended(Ending),
    Resume(Arc<Connection>, mpsc::Receiver<RunEvent>),
}

impl Job {
    pub(super) async fn converse_ws(
        &self,
        link: &Link,
        connection: Arc<Connection>,
        progress: &mut Progress,
        abort: &CancellationToken,
    ) -> Result<Ending, String> {
        let run_id = self.assistant.id.to_string();
        let mut feed = connection.subscribe(&run_id);
        let mut connection = connection;
        let params = json!({"sessionKey": self.session_key, "message": self.text, "idempotencyKey": run_id});
        if let Err(error) = connection.request("chat.send", params, SEND_TIMEOUT).await {
            connection.unsubscribe(&run_id);
            return Err(error.to_string());
        }
        let mut reconciles = 0;
        let mut stop_by: Option<Instant> = None;
        loop {
            let wait = stop_by.map_or(HEARTBEAT, |at| at.saturating_duration_since(Instant::now()));
            let next = tokio::select! {
                next = tokio::time::timeout(wait, feed.recv()) => next,
                () = abort.cancelled(), if stop_by.is_none() => {
                    stop_by = Some(Instant::now() + ABORT_GRACE);
                    tools::finish(&mut progress.tools, tools::ToolStatus::Aborted, chrono::Utc::now());
                    let params = json!({"sessionKey": self.session_key, "runId": run_id});
                    if let Err(error) = connection.request("chat.abort", params, ABORT_GRACE).await {
                        tracing::warn!(%error, run = %run_id, "chat: the gateway did not take the abort");
                    }
                    continue;
                }
            };
            let event = match next {
                Err(_) if stop_by.is_some() => {
                    connection.unsubscribe(&run_id);
                    return Ok(Ending::Aborted);
                }
                Err(_) => {
                    // No news from the agent: touch the message so it is not taken for abandoned.
                    self.flush(progress, true).await;
                    continue;
                }
                Ok(None) => {
                    reconciles += 1;
                    if reconciles > RECONCILES {
                        return Err("the gateway connection kept failing during the turn".into());
                    }
                    match self.recover(link, &run_id, progress).await? {
                        Recovered::Ended(ending) => return Ok(ending),
                        Recovered::Resume(again, resumed) => (connection, feed) = (again, resumed),
                    }
                    continue;
                }
                Ok(Some(event)) => event,
            };
            match event {
                RunEvent::Delta(delta) => self.delta(progress, &delta).await?,
                RunEvent::Tool(data) => {
                    if let Some((index, phase)) = tools::apply(&mut progress.tools, data, chrono::Utc::now()) {
                        let event = ToolEvent::of(self.assistant.id, &progress.tools[index], phase);
                        // Starts and ends are written at once, output with the deltas' throttle.
                        self.flush(progress, phase != ToolPhase::Update).await;
                        self.emit(TurnEvent::Tool(event));
                    }
                }
                RunEvent::Final(text) => {
                    self.settle(progress, text).await?;
                    return Ok(Ending::Complete);
                }
                RunEvent::Aborted(text) => {
                    self.settle(progress, text).await?;
                    return Ok(Ending::Aborted);
                }
                RunEvent::Failed(message) => return Err(message),
            }
        }
    }

    /// The final text is the whole answer: what streamed is completed or replaced by it.
    async fn settle(&self, progress: &mut Progress, text: Option<String>) -> Result<(), String> {
        let Some(text) = text.filter(|t| !t.is_empty() && *t != progress.content) else { return Ok(()) };
        match text.strip_prefix(progress.content.as_str()) {
            Some(rest) => self.delta(progress, rest).await,
            None if text.len() <= self.max_answer_bytes => {
                progress.content = text;
                Ok(())
            }
            None => Err(format!("the answer grew past {} bytes, the most ocaas keeps (OCAAS_MAX_ANSWER_BYTES)", self.max_answer_bytes)),
        }
    }

    /// After lost events: the run's state from the gateway's transcript.
    async fn recover(&self, link: &Link, run_id: &str, progress: &mut Progress) -> Result<Recovered, String> {
        let connection = link.connection(&self.instance, RECONNECT_WAIT).await.map_err(|e| format!("lost the gateway connection: {e}"))?;
        // Subscribed before reading, so an end between the two is not missed.
        let feed = connection.subscribe(run_id);
        let transcript = history(&connection, &self.session_key, 100).await.map_err(|e| e.to_string())?;
        if transcript.session_info.active_run_ids.iter().any(|r| r == run_id) {
            return Ok(Recovered::Resume(connection, feed));
        }
        connection.unsubscribe(run_id);
        let mine: Vec<_> = transcript.messages.into_iter().filter(|m| m.run_id() == Some(run_id) && m.role != "user").collect();
        if mine.is_empty() {
            return Err("the gateway no longer knows the run (it restarted?)".into());
        }
        let text =
            mine.iter().filter(|m| m.role == "assistant").map(|m| text_of(&m.content)).filter(|t| !t.is_empty()).collect::<Vec<_>>().join("\n\n");
        self.settle(progress, Some(text)).await?;
        for step in tools::from_transcript(&mine) {
            match progress.tools.iter().position(|s| s.tool_call_id == step.tool_call_id) {
                Some(index) => progress.tools[index] = step,
                None if progress.tools.len() < tools::MAX_STEPS => progress.tools.push(step),
                None => {}
            }
        }
        let aborted = mine.iter().rev().find(|m| m.role == "assistant").is_some_and(|m| m.stop_reason.as_deref() == Some("aborted"));
        Ok(Recovered::Ended(if aborted { Ending::Aborted } else { Ending::Complete }))
    }
}
