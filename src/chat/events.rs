//! The persisted chat event feed. The process's `LISTEN ocaas_chat` (see `db::notify`) fans
//! notifications (sent by a trigger on every message insert/update, from any process) out to
//! subscribers; each subscriber then reads what changed in its session since its cursor, so a
//! missed or coalesced notification loses nothing.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::models::ChatMessage;
use super::repo::{self, MessageRow};
use super::tools::{ToolEvent, ToolPhase, ToolStatus};
use super::wire::ChatFeedEvent;
use crate::db::notify::Listeners;
use crate::state::AppState;

pub const CHANNEL: &str = "ocaas_chat";
/// Subscribers also look for changes this often, in case a notification was lost.
const RESCAN: Duration = Duration::from_secs(30);

/// Follows `ocaas_chat` on the process's listening connection.
pub fn listen(state: &AppState, listeners: &mut Listeners) {
    crate::state::EventHub::listen(&state.chat_events, CHANNEL, listeners);
}

pub fn message_event(row: MessageRow) -> Event {
    let id = row.event_id;
    let event = ChatFeedEvent::Message(super::wire::MessageData { message: ChatMessage::from(row), delta: None });
    let Ok(frame) = crate::sse::to_sse(&event);
    frame.id(id.to_string())
}

/// Messages whose tool steps a subscriber remembers (older ones are forgotten).
const TOLD_MESSAGES: usize = 32;

/// What a subscriber last told about each message's tool steps (id, status, output length),
/// so each change of a message is preceded by `tool` events for what changed in its steps.
#[derive(Default)]
struct Told {
    messages: VecDeque<(uuid::Uuid, Vec<StepSeen>)>,
}

/// A step as last told: its tool call id, status and output length.
type StepSeen = (String, ToolStatus, usize);

impl Told {
    fn tool_events(&mut self, row: &MessageRow) -> Vec<ChatFeedEvent> {
        if row.tools.0.is_empty() {
            return Vec::new();
        }
        let index = match self.messages.iter().position(|(id, _)| *id == row.id) {
            Some(index) => index,
            None => {
                if self.messages.len() >= TOLD_MESSAGES {
                    self.messages.pop_front();
                }
                self.messages.push_back((row.id, Vec::new()));
                self.messages.len() - 1
            }
        };
        let known = &mut self.messages[index].1;
        let mut out = Vec::new();
        for step in &row.tools.0 {
            let mut phases = Vec::new();
            match known.iter_mut().find(|k| k.0 == step.tool_call_id) {
                None => {
                    phases.push(ToolPhase::Start);
                    if step.status == ToolStatus::Running && !step.output.is_empty() {
                        phases.push(ToolPhase::Update);
                    }
                    known.push((step.tool_call_id.clone(), ToolStatus::Running, 0));
                }
                Some(k) if step.status == ToolStatus::Running && k.2 != step.output.len() => phases.push(ToolPhase::Update),
                Some(_) => {}
            }
            let k = known.iter_mut().find(|k| k.0 == step.tool_call_id).expect("just recorded");
            if step.status != ToolStatus::Running && k.1 == ToolStatus::Running {
                phases.push(ToolPhase::Result);
            }
            (k.1, k.2) = (step.status, step.output.len());
            out.extend(phases.into_iter().map(|phase| ChatFeedEvent::Tool(ToolEvent::of(row.id, step, phase))));
        }
        out
    }

    /// Sends the row's `tool` events, then its `message` event; `None` when the client is gone.
    async fn send(&mut self, sink: &mpsc::Sender<Result<Event, Infallible>>, row: MessageRow) -> Option<()> {
        for event in self.tool_events(&row) {
            sink.send(crate::sse::to_sse(&event)).await.ok()?;
        }
        sink.send(Ok(message_event(row))).await.ok()
    }
}

/// Rows read from the database at a time while replaying or catching up: a client far behind
/// gets its backlog page by page (and, reading slowly, holds the next page back).
const PAGE: i64 = 200;

/// Where a subscriber's replay starts.
pub enum Replay {
    /// Every change after this event (`Last-Event-ID`).
    AfterEvent(i64),
    /// Every message after this sequence number, then changes after `cursor` (`?after=`).
    AfterSeq { seq: i64, cursor: i64 },
    /// Nothing old: changes after `cursor` only.
    Nothing { cursor: i64 },
}

/// Sends the replay, then the session's message changes, until the client goes away.
pub async fn replay_and_follow(
    db: sqlx::PgPool,
    shutdown: tokio_util::sync::CancellationToken,
    session_id: Uuid,
    replay: Replay,
    notifications: broadcast::Receiver<(Uuid, i64)>,
    sink: mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut told = Told::default();
    let cursor = match replay {
        Replay::AfterEvent(cursor) => catch_up(&db, session_id, cursor, &sink, &mut told).await,
        Replay::AfterSeq { mut seq, mut cursor } => loop {
            let page = match repo::history(&db, session_id, seq, PAGE, false).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "chat events: replaying history");
                    break Some(cursor);
                }
            };
            let full = page.len() as i64 == PAGE;
            for row in page {
                (seq, cursor) = (seq.max(row.seq), cursor.max(row.event_id));
                if told.send(&sink, row).await.is_none() {
                    return;
                }
            }
            if !full {
                break Some(cursor);
            }
        },
        Replay::Nothing { cursor } => Some(cursor),
    };
    if let Some(cursor) = cursor {
        follow(db, shutdown, session_id, cursor, notifications, sink, told).await;
    }
}

/// Sends every change after `cursor`, a page at a time; the new cursor, or `None` when the
/// client went away.
async fn catch_up(
    db: &sqlx::PgPool,
    session_id: Uuid,
    mut cursor: i64,
    sink: &mpsc::Sender<Result<Event, Infallible>>,
    told: &mut Told,
) -> Option<i64> {
    loop {
        let page = match repo::changed_since(db, session_id, cursor, PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "chat events: reading changes");
                return Some(cursor);
            }
        };
        let full = page.len() as i64 == PAGE;
        for row in page {
            cursor = cursor.max(row.event_id);
            told.send(sink, row).await?;
        }
        if !full {
            return Some(cursor);
        }
    }
}

/// Feeds `sink` with the session's message changes after `cursor` until the client goes away.
async fn follow(
    db: sqlx::PgPool,
    shutdown: tokio_util::sync::CancellationToken,
    session_id: Uuid,
    mut cursor: i64,
    mut notifications: broadcast::Receiver<(Uuid, i64)>,
    sink: mpsc::Sender<Result<Event, Infallible>>,
    mut told: Told,
) {
    loop {
        let relevant = tokio::select! {
            () = sink.closed() => return,
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RESCAN) => true,
            received = notifications.recv() => match received {
                Ok((session, event)) => session == session_id && event > cursor,
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        if relevant {
            match catch_up(&db, session_id, cursor, &sink, &mut told).await {
                Some(next) => cursor = next,
                None => return,
            }
        }
    }
}
