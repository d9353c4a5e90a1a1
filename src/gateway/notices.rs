//! What the gateways broadcast to their operators, kept: approval requests and their answers
//! become rows (`approvals`) and entries of the instance's agent feed; a schedule's run becomes
//! a feed entry and moves the instance's next wake-up. Every replica hears every gateway it
//! is connected to; the rows' keys make each fact one row and one feed entry.
//!
//! The gateway is the tenant's: every field is bounded here before it is stored.

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::{Value, json};

use super::feed::{self, AgentFeedEvent};
use super::models::{ApprovalKind, ApprovalStatus, Decision, ScheduleRun};
use super::repo::agent::{self as repo, NewApproval};
use super::{Link, rpc};
use crate::runtime::gateway::Notice;
use crate::state::AppState;

const MAX_COMMAND: usize = 4096;
const MAX_ID: usize = 128;
/// The longest an approval request is kept pending, whatever the gateway says.
const MAX_PENDING: Span = Span::hours(24);

pub fn spawn(state: &AppState) {
    let Some(mut feed) = state.gateways.take_notices() else { return };
    let (link, shutdown) = (Link::of(state), state.shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                notice = feed.recv() => match notice {
                    Some(notice) => if let Err(error) = handle(&link, notice).await {
                        tracing::warn!(%error, "gateway notice");
                    },
                    None => return,
                },
            }
        }
    });
}

async fn handle(link: &Link, notice: Notice) -> sqlx::Result<()> {
    let (id, payload) = (notice.instance_id, &notice.payload);
    match notice.event.as_str() {
        "exec.approval.requested" => requested(link, id, payload, ApprovalKind::Exec).await,
        "plugin.approval.requested" => requested(link, id, payload, ApprovalKind::Plugin).await,
        "exec.approval.resolved" | "plugin.approval.resolved" => resolved(link, id, payload).await,
        "cron" => cron(link, id, payload).await,
        _ => Ok(()),
    }
}

async fn requested(link: &Link, instance_id: uuid::Uuid, payload: &Value, kind: ApprovalKind) -> sqlx::Result<()> {
    let Some(approval_id) = rpc::text(payload, "id", MAX_ID + 1).filter(|id| !id.is_empty() && id.len() <= MAX_ID) else { return Ok(()) };
    let request = payload.get("request").unwrap_or(&Value::Null);
    let command = rpc::text(request, "command", MAX_COMMAND)
        .or_else(|| rpc::text(request, "title", MAX_COMMAND))
        .or_else(|| rpc::text(request, "description", MAX_COMMAND))
        .unwrap_or_default();
    let (cwd, session_key) = (rpc::text(request, "cwd", 1024), rpc::text(request, "sessionKey", 512));
    let now = Utc::now();
    let created_at = rpc::time_ms(payload, "createdAtMs").filter(|t| (*t - now).abs() < MAX_PENDING).unwrap_or(now);
    let expires_at = rpc::time_ms(payload, "expiresAtMs").map_or(created_at + Span::minutes(2), |t| t.clamp(created_at, created_at + MAX_PENDING));
    let new =
        NewApproval { id: &approval_id, kind, command: &command, cwd: cwd.as_deref(), session_key: session_key.as_deref(), created_at, expires_at };
    if let Some(approval) = repo::insert_approval(&link.db, instance_id, &new).await? {
        feed::publish(&link.db, instance_id, &format!("approval:{approval_id}:pending"), &AgentFeedEvent::Approval(approval)).await?;
    }
    Ok(())
}

async fn resolved(link: &Link, instance_id: uuid::Uuid, payload: &Value) -> sqlx::Result<()> {
    let Some(approval_id) = rpc::text(payload, "id", MAX_ID + 1).filter(|id| id.len() <= MAX_ID) else { return Ok(()) };
    let decision = match payload.get("decision").and_then(Value::as_str) {
        Some("allow-once") => Some(Decision::AllowOnce),
        Some("allow-always") => Some(Decision::AllowAlways),
        Some("deny") => Some(Decision::Deny),
        _ => None,
    };
    let status = match decision {
        Some(Decision::Deny) => ApprovalStatus::Denied,
        Some(_) => ApprovalStatus::Allowed,
        None => ApprovalStatus::Expired,
    };
    if let Some(approval) = repo::resolve_approval(&link.db, instance_id, &approval_id, status, decision).await? {
        feed::publish(&link.db, instance_id, &format!("approval:{approval_id}:closed"), &AgentFeedEvent::Approval(approval)).await?;
    }
    Ok(())
}

async fn cron(link: &Link, instance_id: uuid::Uuid, payload: &Value) -> sqlx::Result<()> {
    let action = payload.get("action").and_then(Value::as_str).unwrap_or("");
    let next = next_wake(link, instance_id).await;
    if let Some(next) = next {
        repo::set_next_run(&link.db, instance_id, next, matches!(action, "started" | "finished")).await?;
    }
    if action != "finished" {
        return Ok(());
    }
    let Some(job_id) = rpc::text(payload, "jobId", MAX_ID) else { return Ok(()) };
    let started_at: DateTime<Utc> = rpc::time_ms(payload, "runAtMs").unwrap_or_else(Utc::now);
    let run = ScheduleRun {
        schedule_id: job_id.clone(),
        run_id: None,
        status: if payload.get("status").and_then(Value::as_str) == Some("ok") { "ok".into() } else { "error".into() },
        started_at,
        duration_ms: payload.get("durationMs").and_then(Value::as_i64).unwrap_or(0).clamp(0, i64::from(i32::MAX)),
        summary: String::new(),
    };
    let dedupe = format!("run:{job_id}:{}", started_at.timestamp_millis());
    feed::publish(&link.db, instance_id, &dedupe, &AgentFeedEvent::ScheduleRun(run)).await
}

/// The gateway's next scheduled wake-up (`cron.status`), `Some(None)` when nothing is due;
/// `None` when it could not be asked.
pub async fn next_wake(link: &Link, instance_id: uuid::Uuid) -> Option<Option<DateTime<Utc>>> {
    let instance = crate::instances::repo::get(&link.db, instance_id).await.ok()??;
    let status = rpc::call_within(link, &instance, "cron.status", json!({}), std::time::Duration::from_secs(10)).await.ok()?;
    Some(rpc::time_ms(&status, "nextWakeAtMs"))
}
