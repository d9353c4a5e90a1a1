//! What the gateways broadcast to their operators, kept: approval requests and their answers
//! become rows (`approvals`) and entries of the instance's agent feed; a schedule's run becomes
//! a feed entry and moves the instance's next wake-up. Every replica hears every gateway it
//! is connected to; the rows' keys make each fact one row and one feed entry.
//!
//! Notices arrive already bounded (`runtime::gateway::notice`). One gateway cannot hold up the
//! others: re-reading an instance's schedules runs in its own task, at most one per instance at
//! a time (more `cron` events meanwhile change nothing), and an instance keeps at most
//! `MAX_PENDING_APPROVALS` requests pending.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::json;

use super::feed::{self, AgentFeedEvent};
use super::models::{ApprovalKind, Decision, ScheduleRun};
use super::repo::agent::{self as repo, NewApproval};
use super::{Link, rpc};
use crate::instances::repo::InstanceRow;
use crate::runtime::gateway::{Notice, NoticeKind};
use crate::state::AppState;

/// The longest an approval request is kept pending, whatever the gateway says.
const MAX_WAIT: Span = Span::hours(24);
/// Pending requests one instance may have; more are not recorded (the gateway denies them when
/// they expire).
pub const MAX_PENDING_APPROVALS: i64 = 200;

pub fn spawn(state: &AppState) {
    let Some(mut feed) = state.gateways.take_notices() else { return };
    let (link, shutdown) = (Link::of(state), state.shutdown.clone());
    let refreshing: Arc<Mutex<HashSet<uuid::Uuid>>> = Arc::default();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                notice = feed.recv() => match notice {
                    Some(notice) => if let Err(error) = handle(&link, &refreshing, notice).await {
                        tracing::warn!(%error, "gateway notice");
                    },
                    None => return,
                },
            }
        }
    });
}

async fn handle(link: &Link, refreshing: &Arc<Mutex<HashSet<uuid::Uuid>>>, notice: Notice) -> sqlx::Result<()> {
    let instance_id = notice.instance_id;
    match notice.kind {
        NoticeKind::ApprovalRequested { id, plugin, command, cwd, session_key, created_at_ms, expires_at_ms } => {
            let now = Utc::now();
            let at = |ms: Option<i64>| ms.and_then(DateTime::from_timestamp_millis);
            let created_at = at(created_at_ms).filter(|t| (*t - now).abs() < MAX_WAIT).unwrap_or(now);
            let expires_at = at(expires_at_ms).map_or(created_at + Span::minutes(2), |t| t.clamp(created_at, created_at + MAX_WAIT));
            let kind = if plugin { ApprovalKind::Plugin } else { ApprovalKind::Exec };
            let new =
                NewApproval { id: &id, kind, command: &command, cwd: cwd.as_deref(), session_key: session_key.as_deref(), created_at, expires_at };
            if let Some(approval) = repo::insert_approval(&link.db, instance_id, &new, MAX_PENDING_APPROVALS).await? {
                feed::publish(&link.db, instance_id, &format!("approval:{id}:pending"), &AgentFeedEvent::Approval(approval)).await?;
            }
        }
        NoticeKind::ApprovalResolved { id, decision } => {
            let decision = decision.and_then(Decision::from_gateway_word);
            let status = Decision::outcome(decision);
            if let Some(approval) = repo::resolve_approval(&link.db, instance_id, &id, status, decision).await? {
                feed::publish(&link.db, instance_id, &format!("approval:{id}:closed"), &AgentFeedEvent::Approval(approval)).await?;
            }
        }
        NoticeKind::Cron { job_id, action, ok, run_at_ms, duration_ms } => {
            let ran = matches!(action.as_str(), "started" | "finished");
            if ran {
                repo::mark_run(&link.db, instance_id).await?;
            }
            refresh_later(link, refreshing, instance_id);
            if let (Some(job_id), "finished") = (job_id, action.as_str()) {
                let started_at = run_at_ms.and_then(DateTime::from_timestamp_millis).unwrap_or_else(Utc::now);
                let run = ScheduleRun {
                    schedule_id: job_id.clone(),
                    run_id: None,
                    status: if ok { "ok".into() } else { "error".into() },
                    started_at,
                    duration_ms: duration_ms.unwrap_or(0).clamp(0, i64::from(i32::MAX)),
                    summary: String::new(),
                };
                let dedupe = format!("run:{job_id}:{}", started_at.timestamp_millis());
                feed::publish(&link.db, instance_id, &dedupe, &AgentFeedEvent::ScheduleRun(run)).await?;
            }
        }
    }
    Ok(())
}

/// Re-reads the instance's next wake-up in the background, once at a time per instance.
fn refresh_later(link: &Link, refreshing: &Arc<Mutex<HashSet<uuid::Uuid>>>, instance_id: uuid::Uuid) {
    if !refreshing.lock().expect("refreshing").insert(instance_id) {
        return;
    }
    let (link, refreshing) = (link.clone(), refreshing.clone());
    tokio::spawn(async move {
        if let Ok(Some(instance)) = crate::instances::repo::get(&link.db, instance_id).await {
            let _ = record_next_wake(&link, &instance).await;
        }
        refreshing.lock().expect("refreshing").remove(&instance_id);
    });
}

/// Records the gateway's next scheduled wake-up (`cron.status`; `None` when nothing is due).
/// Unanswered, the stored time stays: a schedule is not forgotten for a slow answer.
pub async fn record_next_wake(link: &Link, instance: &InstanceRow) -> sqlx::Result<()> {
    let Ok(status) = rpc::call_within(link, instance, "cron.status", json!({}), std::time::Duration::from_secs(10)).await else { return Ok(()) };
    repo::set_next_run(&link.db, instance.id, rpc::time_ms(&status, "nextWakeAtMs")).await
}
