//! A chat turn: the user message is committed first, then the gateway is called by a task
//! that belongs to the server, not to the HTTP request. The assistant message is written while
//! it grows (throttled) and finalised `complete` or `error`; listeners (the stream endpoint)
//! get the progress over a channel and may go away at any time.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::gateway::{self, GatewayError, GatewayEvent};
use super::models::{ChatMessage, MessageStatus};
use super::repo::{self, MessageRow};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::repo::InstanceRow;
use crate::runtime::Runtime;
use crate::state::AppState;

const MAX_MESSAGE_CHARS: usize = 100_000;
/// At most ten writes a second while an answer streams.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// A streaming message is touched at least this often, so a stalled one can be told apart.
const HEARTBEAT: Duration = Duration::from_secs(5);
const CONNECT_ATTEMPTS: u32 = 3;
/// Events queued for the turn's listener. A listener that falls behind gets the deltas it
/// missed merged into the next one (its `message` is always the latest state), so a slow
/// reader costs at most this many events, and the turn never waits for it.
const LISTENER_QUEUE: usize = 16;

pub enum TurnEvent {
    Running,
    Delta { message: ChatMessage, delta: String },
    Notice { level: &'static str, message: String },
    Finished { assistant: ChatMessage },
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
    rows.sort_by_key(|row| row.seq);
    let (Some(assistant), Some(user), None) = (rows.pop(), rows.pop(), rows.pop()) else {
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
        addresses: state.addresses.clone(),
        http: state.http.clone(),
        timeout: state.settings.chat_timeout,
        metrics: state.metrics.clone(),
        max_answer_bytes: state.settings.max_answer_bytes,
        instance: instance.clone(),
        session_id,
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
struct Job {
    db: sqlx::PgPool,
    runtime: std::sync::Arc<dyn Runtime>,
    addresses: std::sync::Arc<crate::state::Addresses>,
    http: reqwest::Client,
    timeout: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    instance: InstanceRow,
    session_id: Uuid,
    assistant: MessageRow,
    text: String,
    sender: mpsc::Sender<TurnEvent>,
    max_answer_bytes: usize,
}

impl Job {
    /// Queues an event if there is room (the listener may be slow or gone; the turn goes on).
    fn emit(&self, event: TurnEvent) -> bool {
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
        let mut content = String::new();
        let mut unsent = String::new();
        let timeout = self.timeout;
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, self.converse(&mut content, &mut unsent)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("the agent did not finish within {} s", timeout.as_secs())),
        };
        self.metrics.operation("chat_turn", started, outcome.is_ok());
        let mut last = Vec::new();
        if !unsent.is_empty() {
            let mut message = ChatMessage::from(self.assistant.clone());
            message.content = content.clone();
            last.push(TurnEvent::Delta { message, delta: std::mem::take(&mut unsent) });
        }
        let (status, error) = match &outcome {
            Ok(()) => (MessageStatus::Complete, None),
            Err(message) => {
                last.push(TurnEvent::Notice { level: "error", message: format!("The agent turn failed: {message}") });
                (MessageStatus::Error, Some(message.as_str()))
            }
        };
        let db = &self.db;
        let finished = repo::update_message(db, self.assistant.id, &content, status, error).await;
        if let Err(e) = repo::release_turn(db, self.session_id, self.assistant.id).await {
            tracing::error!(error = %e, "releasing a chat session");
        }
        match finished {
            Ok(row) => last.push(TurnEvent::Finished { assistant: row.into() }),
            Err(e) => tracing::error!(error = %e, message = %self.assistant.id, "finalising an assistant message"),
        }
        self.emit_finally(last);
    }

    /// Streams the answer into `content`; deltas the listener had no room for wait in `unsent`.
    async fn converse(&self, content: &mut String, unsent: &mut String) -> Result<(), String> {
        let mut stream = self.connect().await?;
        let mut last_flush = Instant::now();
        loop {
            let next = tokio::time::timeout(HEARTBEAT, stream.next()).await;
            let event = match next {
                Err(_) => {
                    // No news from the agent: touch the message so it is not taken for abandoned.
                    let _ = repo::update_message(&self.db, self.assistant.id, content, MessageStatus::Streaming, None).await;
                    continue;
                }
                Ok(None) => return Err("the agent gateway closed the stream before finishing".into()),
                Ok(Some(event)) => event.map_err(|e| e.to_string())?,
            };
            match event {
                GatewayEvent::Done => return Ok(()),
                GatewayEvent::Delta(delta) => {
                    if content.len() + delta.len() > self.max_answer_bytes {
                        return Err(format!("the answer grew past {} bytes, the most ocaas keeps (OCAAS_MAX_ANSWER_BYTES)", self.max_answer_bytes));
                    }
                    content.push_str(&delta);
                    let mut message = ChatMessage::from(self.assistant.clone());
                    if last_flush.elapsed() >= FLUSH_EVERY {
                        if let Ok(row) = repo::update_message(&self.db, self.assistant.id, content, MessageStatus::Streaming, None).await {
                            message = row.into();
                        }
                        last_flush = Instant::now();
                    }
                    message.content = content.clone();
                    unsent.push_str(&delta);
                    if self.emit(TurnEvent::Delta { message, delta: unsent.clone() }) {
                        unsent.clear();
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<impl futures_util::Stream<Item = Result<GatewayEvent, GatewayError>> + use<>, String> {
        let mut attempt = 1;
        loop {
            let sandbox = &self.instance.sandbox_id;
            let ip = match self.addresses.get(sandbox) {
                Some(ip) => ip,
                None => {
                    let ip = match self.runtime.inspect(sandbox).await {
                        Ok(info) if info.running => info.ip,
                        Ok(info) => return Err(format!("the sandbox is {}", info.state)),
                        Err(e) => return Err(e.to_string()),
                    };
                    let Some(ip) = ip else { return Err("the sandbox has no address on the sandbox network".into()) };
                    self.addresses.put(sandbox.clone(), ip);
                    ip
                }
            };
            let turn = gateway::Turn { ip, token: &self.instance.gateway_token, session_key: &self.session_id.to_string(), message: &self.text };
            match gateway::stream_turn(&self.http, turn).await {
                Ok(stream) => return Ok(stream),
                Err(GatewayError::Unreachable(reason)) if attempt < CONNECT_ATTEMPTS => {
                    // Maybe it moved: ask the engine next time.
                    self.addresses.forget(sandbox);
                    self.emit(TurnEvent::Notice {
                        level: "warning",
                        message: format!("The agent is not reachable yet ({reason}); retrying ({attempt}/{}).", CONNECT_ATTEMPTS - 1),
                    });
                    attempt += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }
}
