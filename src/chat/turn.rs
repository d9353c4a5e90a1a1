//! A chat turn: the user message is committed first, then the gateway is called by a task
//! that belongs to the server, not to the HTTP request. The assistant message is written while
//! it grows (throttled) and finalised `complete` or `error`; listeners (the stream endpoint)
//! get the progress over a channel and may go away at any time.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::models::{ChatMessage, MessageStatus};
use super::repo::{self, MessageRow};
use super::tools::{self, ToolEvent, ToolStatus, ToolStep};
use crate::config::GatewayProtocol;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::gateway::Link;
use crate::instances::repo::InstanceRow;
use crate::runtime::Runtime;
use crate::runtime::gateway::Unavailable;
use crate::state::{AppState, Cancels};

const MAX_MESSAGE_CHARS: usize = 100_000;
/// At most ten writes a second while an answer streams.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A streaming message is touched at least this often, so a stalled one can be told apart.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a turn waits for the gateway connection before it goes over HTTP.
const GATEWAY_WAIT: Duration = Duration::from_secs(8);
/// Events queued for the turn's listener. A listener that falls behind gets the deltas it
/// missed merged into the next one (its `message` is always the latest state), so a slow
/// reader costs at most this many events, and the turn never waits for it.
const LISTENER_QUEUE: usize = 16;

pub enum TurnEvent {
    Running,
    Delta { message: ChatMessage, delta: String },
    Tool(ToolEvent),
    Notice { level: &'static str, message: String },
    Finished { assistant: ChatMessage },
}

/// How a turn that did not fail ended.
pub(super) enum Ending {
    Complete,
    Aborted,
}

/// What a turn has so far.
#[derive(Default)]
pub(super) struct Progress {
    pub content: String,
    /// Deltas the listener had no room for yet.
    pub unsent: String,
    pub tools: Vec<ToolStep>,
    pub last_flush: Option<Instant>,
}

pub struct StartedTurn {
    pub session_id: Uuid,
    pub user_message: ChatMessage,
    pub assistant: ChatMessage,
    pub events: mpsc::Receiver<TurnEvent>,
}

pub fn session_not_found() -> AppError {
    AppError::new(ErrorCode::SessionNotFound, "This instance has no chat session with that id.")
}

pub async fn start(state: &AppState, instance: &InstanceRow, session_id: Option<Uuid>, text: &str) -> AppResult<StartedTurn> {
    if text.trim().is_empty() {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`message` must not be empty."));
    }
    if text.chars().count() > MAX_MESSAGE_CHARS || text.contains('\0') {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("`message` must be at most {MAX_MESSAGE_CHARS} characters, without NUL.")));
    }
    let db = &state.db;
    let mut rows = repo::start_turn(db, instance.id, session_id, Uuid::now_v7(), Uuid::now_v7(), text).await?;
    if rows.is_empty() && session_id.is_none() && repo::latest_session(db, instance.id).await?.is_none() {
        // The instance's first turn: its first session.
        let session = repo::insert_session(db, instance.id, None).await?;
        rows = repo::start_turn(db, instance.id, Some(session.id), Uuid::now_v7(), Uuid::now_v7(), text).await?;
    }
    let mut rows: Vec<(MessageRow, String)> = rows.into_iter().map(repo::StartedRow::split).collect();
    rows.sort_by_key(|(row, _)| row.seq);
    let (Some((assistant, session_key)), Some((user, _)), None) = (rows.pop(), rows.pop(), rows.pop()) else {
        // Nothing was claimed: another instance's (or no) session, or a turn is running in it.
        let known = match session_id {
            Some(id) => repo::session(db, instance.id, id).await?.is_some(),
            None => true,
        };
        return Err(if known {
            AppError::new(ErrorCode::SessionBusy, "A turn is already running in this chat session; wait for it to finish.")
        } else {
            session_not_found()
        });
    };
    let session_id = user.session_id;
    let (sender, events) = mpsc::channel(LISTENER_QUEUE);
    let job = Job {
        db: state.db.clone(),
        runtime: state.runtime.clone(),
        link: (state.settings.gateway_protocol == GatewayProtocol::Auto).then(|| Link::of(state)),
        turns: state.turns.clone(),
        timeout: state.settings.chat_timeout,
        metrics: state.metrics.clone(),
        max_answer_bytes: state.settings.max_answer_bytes,
        instance: instance.clone(),
        session_id,
        session_key,
        assistant: assistant.clone(),
        text: text.to_owned(),
        sender,
    };
    // A turn in progress keeps its instance awake, however long it runs.
    let busy = state.activity.hold(instance.id);
    tokio::spawn(async move {
        job.run().await;
        drop(busy);
    });
    Ok(StartedTurn { session_id, user_message: user.into(), assistant: assistant.into(), events })
}

/// What a running turn needs, and nothing more: it outlives the request that started it.
pub(super) struct Job {
    pub db: sqlx::PgPool,
    pub runtime: std::sync::Arc<dyn Runtime>,
    /// `None` when the operator chose HTTP only.
    pub link: Option<Link>,
    pub turns: std::sync::Arc<Cancels>,
    pub timeout: Duration,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    pub instance: InstanceRow,
    pub session_id: Uuid,
    /// The session's key on the gateway.
    pub session_key: String,
    pub assistant: MessageRow,
    pub text: String,
    pub sender: mpsc::Sender<TurnEvent>,
    pub max_answer_bytes: usize,
}

impl Job {
    /// Queues an event if there is room (the listener may be slow or gone; the turn goes on).
    pub(super) fn emit(&self, event: TurnEvent) -> bool {
        self.sender.try_send(event).is_ok()
    }

    /// Delivers the turn's last events in order, however slow the listener: one small task
    /// per turn waits for room, the turn does not.
    fn emit_finally(&self, events: Vec<TurnEvent>) {
        let sender = self.sender.clone();
        tokio::spawn(async move {
            for event in events {
                if sender.send(event).await.is_err() {
                    return;
                }
            }
        });
    }

    async fn run(self) {
        self.emit(TurnEvent::Running);
        let abort = self.turns.register(self.assistant.id);
        // The first write waits a flush interval like the others: the first delta goes out at once.
        let mut progress = Progress { last_flush: Some(Instant::now()), ..Progress::default() };
        let timeout = self.timeout;
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, self.converse(&mut progress, &abort.token)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("the agent did not finish within {} s", timeout.as_secs())),
        };
        drop(abort);
        self.metrics.operation("chat_turn", started, outcome.is_ok());
        let mut last = Vec::new();
        if !progress.unsent.is_empty() {
            let mut message = ChatMessage::from(self.assistant.clone());
            message.content = progress.content.clone();
            last.push(TurnEvent::Delta { message, delta: std::mem::take(&mut progress.unsent) });
        }
        let (status, error) = match &outcome {
            Ok(Ending::Complete) => (MessageStatus::Complete, None),
            Ok(Ending::Aborted) => (MessageStatus::Aborted, None),
            Err(message) => {
                last.push(TurnEvent::Notice { level: "error", message: format!("The agent turn failed: {message}") });
                (MessageStatus::Error, Some(message.as_str()))
            }
        };
        let step_status = match status {
            MessageStatus::Complete => ToolStatus::Completed,
            MessageStatus::Aborted => ToolStatus::Aborted,
            _ => ToolStatus::Error,
        };
        tools::finish(&mut progress.tools, step_status, chrono::Utc::now());
        let db = &self.db;
        let finished = repo::update_message(db, self.assistant.id, &progress.content, status, error, Some(&progress.tools)).await;
        if let Err(e) = repo::release_turn(db, self.session_id, self.assistant.id).await {
            tracing::error!(error = %e, "releasing a chat session");
        }
        match finished {
            Ok(row) => last.push(TurnEvent::Finished { assistant: row.into() }),
            Err(e) => tracing::error!(error = %e, message = %self.assistant.id, "finalising an assistant message"),
        }
        self.emit_finally(last);
    }

    /// The turn over the gateway's own protocol, or over HTTP where it does not speak it.
    async fn converse(&self, progress: &mut Progress, abort: &CancellationToken) -> Result<Ending, String> {
        let Some(link) = &self.link else { return self.converse_http(progress, abort).await };
        match link.connection(&self.instance, GATEWAY_WAIT).await {
            Ok(connection) => self.converse_ws(link, connection, progress, abort).await,
            Err(unavailable) => {
                if let Unavailable::Down(reason) = &unavailable {
                    tracing::warn!(instance = %self.instance.id, %reason, "chat: no gateway connection, the turn goes over HTTP");
                }
                self.converse_http(progress, abort).await
            }
        }
    }

    /// Adds a piece of the answer: persisted at most every `FLUSH_EVERY`, sent to the listener
    /// (merged with what it had no room for).
    pub(super) async fn delta(&self, progress: &mut Progress, delta: &str) -> Result<(), String> {
        if progress.content.len() + delta.len() > self.max_answer_bytes {
            return Err(format!("the answer grew past {} bytes, the most ocaas keeps (OCAAS_MAX_ANSWER_BYTES)", self.max_answer_bytes));
        }
        progress.content.push_str(delta);
        let mut message = self.flush(progress, false).await;
        message.content = progress.content.clone();
        progress.unsent.push_str(delta);
        if self.emit(TurnEvent::Delta { message, delta: progress.unsent.clone() }) {
            progress.unsent.clear();
        }
        Ok(())
    }

    /// Persists the message as it is if the last write is `FLUSH_EVERY` old (or `now`); the
    /// message as the listener should see it.
    pub(super) async fn flush(&self, progress: &mut Progress, now: bool) -> ChatMessage {
        let mut message = ChatMessage::from(self.assistant.clone());
        if now || progress.last_flush.is_none_or(|at| at.elapsed() >= FLUSH_EVERY) {
            let tools = (!progress.tools.is_empty()).then_some(progress.tools.as_slice());
            if let Ok(row) = repo::update_message(&self.db, self.assistant.id, &progress.content, MessageStatus::Streaming, None, tools).await {
                message = row.into();
            }
            progress.last_flush = Some(Instant::now());
        }
        message.tools = progress.tools.clone();
        message
    }
}
