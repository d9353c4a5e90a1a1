//! The instance's agent feed, `GET …/agent/events`: the agent's approval requests (asked and
//! answered), its schedules' runs, and notices such as a configuration rolled back. Entries are
//! rows of `agent_events`, written once whichever replica heard them (`dedupe`); the process's
//! `LISTEN ocaas_agent` wakes subscribers, which read what is new since their cursor, so a
//! missed notification loses nothing. `Last-Event-ID` resumes after an entry.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::Event;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use utoipa::ToSchema;
use uuid::Uuid;

use super::models::{Approval, ScheduleRun};
use super::repo::agent as repo;
use crate::db::notify::Listeners;
use crate::state::AppState;

pub const CHANNEL: &str = "ocaas_agent";
const RESCAN: Duration = Duration::from_secs(30);
const PAGE: i64 = 200;

/// A notice about the agent (a configuration rolled back, …).
#[derive(Debug, Serialize, ToSchema)]
pub struct Notification {
    /// `info`, `warning` or `error`.
    pub level: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedReady {
    pub instance_id: Uuid,
}

/// One event of `GET …/agent/events` (all but `ready` carry an SSE `id:`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum AgentFeedEvent {
    /// First, once.
    Ready(FeedReady),
    /// An approval request, when asked and again when answered or expired.
    Approval(Approval),
    /// A schedule ran.
    ScheduleRun(ScheduleRun),
    SystemNotification(Notification),
}

/// Appends `event` to the instance's feed once per `dedupe` (from any replica).
pub async fn publish(db: &sqlx::PgPool, instance_id: Uuid, dedupe: &str, event: &AgentFeedEvent) -> sqlx::Result<()> {
    let value = serde_json::to_value(event).unwrap_or_default();
    let kind = value["event"].as_str().unwrap_or_default();
    repo::insert_event(db, instance_id, kind, dedupe, &value["data"]).await
}

pub fn listen(state: &AppState, listeners: &mut Listeners) {
    crate::state::EventHub::listen(&state.agent_events, CHANNEL, listeners);
}

/// Sends the instance's entries after `cursor` until the client goes away.
pub async fn follow(
    db: sqlx::PgPool,
    shutdown: tokio_util::sync::CancellationToken,
    instance_id: Uuid,
    mut cursor: i64,
    mut notifications: broadcast::Receiver<(Uuid, i64)>,
    sink: mpsc::Sender<Result<Event, Infallible>>,
) {
    let mut relevant = true;
    loop {
        while relevant {
            let page = match repo::events_after(&db, instance_id, cursor, PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "agent events: reading");
                    break;
                }
            };
            relevant = page.len() as i64 == PAGE;
            for row in page {
                cursor = row.id;
                let frame = Event::default().event(row.kind).data(row.data.to_string()).id(row.id.to_string());
                if sink.send(Ok(frame)).await.is_err() {
                    return;
                }
            }
        }
        relevant = tokio::select! {
            () = sink.closed() => return,
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RESCAN) => true,
            received = notifications.recv() => match received {
                Ok((instance, event)) => instance == instance_id && event > cursor,
                Err(broadcast::error::RecvError::Lagged(_)) => true,
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
    }
}
