//! The persisted chat event feed. The process's `LISTEN ocaas_chat` (see `db::notify`) fans
//! notifications (sent by a trigger on every message insert/update, from any process) out to
//! subscribers; each subscriber then reads what changed in its session since its cursor, so a
//! missed or coalesced notification loses nothing.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::models::ChatMessage;
use super::repo::{self, MessageRow};
use crate::db::notify::Listeners;
use crate::state::AppState;

pub const CHANNEL: &str = "ocaas_chat";
/// Subscribers also look for changes this often, in case a notification was lost.
const RESCAN: Duration = Duration::from_secs(30);

/// Follows `ocaas_chat` on the process's listening connection.
pub fn listen(state: &AppState, listeners: &mut Listeners) {
    let hub = state.chat_events.clone();
    listeners.on(
        CHANNEL,
        |_| {},
        move |payload| {
            let mut parts = payload.split(' ');
            if let (Some(Ok(session)), Some(Ok(event))) = (parts.next().map(str::parse::<Uuid>), parts.next().map(str::parse::<i64>)) {
                hub.publish(session, event);
            }
        },
    );
}

pub fn message_event(row: MessageRow) -> Event {
    let id = row.event_id;
    let event = super::wire::ChatFeedEvent::Message(super::wire::MessageData { message: ChatMessage::from(row), delta: None });
    let Ok(frame) = crate::sse::to_sse(&event);
    frame.id(id.to_string())
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
    let cursor = match replay {
        Replay::AfterEvent(cursor) => catch_up(&db, session_id, cursor, &sink).await,
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
                if sink.send(Ok(message_event(row))).await.is_err() {
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
        follow(db, shutdown, session_id, cursor, notifications, sink).await;
    }
}

/// Sends every change after `cursor`, a page at a time; the new cursor, or `None` when the
/// client went away.
async fn catch_up(db: &sqlx::PgPool, session_id: Uuid, mut cursor: i64, sink: &mpsc::Sender<Result<Event, Infallible>>) -> Option<i64> {
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
            sink.send(Ok(message_event(row))).await.ok()?;
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
            match catch_up(&db, session_id, cursor, &sink).await {
                Some(next) => cursor = next,
                None => return,
            }
        }
    }
}
