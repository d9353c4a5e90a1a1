//! The probation of a configuration patch, in whichever process looks first. A patched gateway
//! seen ready (its connection up, `health` answered) after `SETTLE` makes the new file the last
//! good one. A gateway still not ready when the probation ends, or whose sandbox has exited,
//! is rolled back: the one process that claims it (a guarded update) writes the last good file
//! into the agent's state directory, walked without following a link (`files::direct`), and
//! reboots the instance through the state machine; the instance's feed and the audit log say so.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::config::{self, FILE};
use super::feed::{self, AgentFeedEvent, Notification};
use super::repo::{self, Probation};
use super::{Link, rpc};
use crate::audit::models::AuditAction;
use crate::files::paths::SandboxPath;
use crate::instances::machine::{self, Op};
use crate::instances::models::InstanceStatus;
use crate::instances::repo::InstanceRow;
use crate::runtime::sandbox::STATE_DIR;
use crate::state::AppState;

const TICK: Duration = Duration::from_secs(2);
const CONCURRENT: usize = 8;
/// A patched gateway restarts within a second; before this, a live one may still be the old.
const SETTLE: Duration = Duration::from_secs(3);

pub fn spawn(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            match repo::probations(&state.db).await {
                // A few at a time: one gateway that stalls does not hold up the others.
                Ok(probations) => futures_util::stream::iter(probations).for_each_concurrent(CONCURRENT, |p| check(&state, p)).await,
                Err(error) => tracing::warn!(%error, "config probation"),
            }
        }
    });
}

async fn check(state: &AppState, probation: Probation) {
    let since = (Utc::now() - probation.pending_since).to_std().unwrap_or_default();
    if since < SETTLE {
        return;
    }
    let Ok(Some(instance)) = crate::instances::repo::get(&state.db, probation.instance_id).await else { return };
    let link = Link::of(state);
    match instance.status {
        InstanceStatus::Ready if rpc::answers(&link, &instance).await => {
            let disk = crate::instances::lifecycle::disk_spec(state, &instance);
            // Read while this probation still holds off new patches; kept only if the
            // probation is still the one seen (another replica may have ended it, and the
            // user patched again since: that file is not proven).
            let good = match config::running_sealed(&link, &disk, &instance).await {
                Ok(sealed) => Some(sealed),
                Err(error) => {
                    tracing::warn!(instance = %instance.id, error = %error.into_message(), "config: keeping the confirmed configuration");
                    None
                }
            };
            let _ = repo::confirm(&state.db, instance.id, probation.pending_until, good.as_deref()).await;
            return;
        }
        InstanceStatus::Ready | InstanceStatus::Error => {}
        // Paused, stopped or being changed by its user meanwhile: nothing to judge; the
        // probation lapses (the next start shows whether the file is good).
        _ => {
            if probation.overdue {
                let _ = repo::confirm(&state.db, instance.id, probation.pending_until, None).await;
            }
            return;
        }
    }
    let exited = state.runtime.inspect(&instance.sandbox_id).await.is_ok_and(|info| !info.running);
    if !(probation.overdue || exited) {
        return;
    }
    let reason = if exited {
        "the gateway exited after the configuration change".to_owned()
    } else {
        format!("the gateway was not ready {} s after the configuration change", config::PROBATION.as_secs())
    };
    rollback(state, &instance, probation.pending_until, &reason).await;
}

async fn rollback(state: &AppState, instance: &InstanceRow, seen: DateTime<Utc>, reason: &str) {
    let claimed = match repo::claim_rollback(&state.db, instance.id, seen, reason).await {
        Ok(Some(sealed)) => sealed,
        Ok(None) => return, // another process has it, or the probation ended meanwhile
        Err(error) => return tracing::warn!(%error, "config: claiming a rollback"),
    };
    let content = claimed.and_then(|sealed| state.settings.secret_key.open(&sealed));
    let written = match content {
        Some(content) => {
            let _held = state.drivers.hold(instance.id).await;
            // Under the lease, the instance as it is now: still the sandbox judged, not in
            // the middle of its user's own operation.
            match crate::instances::repo::get(&state.db, instance.id).await {
                Ok(Some(now)) if now.sandbox_id == instance.sandbox_id && matches!(now.status, InstanceStatus::Ready | InstanceStatus::Error) => {
                    put_back(state, &now, content).await
                }
                _ => Err("the instance changed meanwhile".to_owned()),
            }
        }
        None => Err("no last good configuration is kept".to_owned()),
    };
    let message = match &written {
        Ok(()) => format!("The agent's configuration was rolled back: {reason}. The last good configuration is back and the instance restarts."),
        Err(why) => format!("The agent's configuration could not be rolled back ({why}): {reason}."),
    };
    tracing::warn!(instance = %instance.id, %message, "config rollback");
    if written.is_ok() {
        match machine::apply(&state.db, instance.id, Op::Reboot).await {
            Ok(Some(_)) => crate::instances::lifecycle::spawn_drive(state, instance.id),
            Ok(None) => tracing::info!(instance = %instance.id, "config rollback: the instance is already being changed"),
            Err(error) => tracing::warn!(%error, "config rollback: rebooting"),
        }
    }
    let notice = AgentFeedEvent::SystemNotification(Notification { level: if written.is_ok() { "warning" } else { "error" }.into(), message });
    let _ = feed::publish(&state.db, instance.id, &format!("rollback:{}", seen.timestamp_millis()), &notice).await;
    if let Some(owner) = instance.user_id {
        let _ = crate::audit::record_action(&state.db, AuditAction::ConfigRolledBack, owner, None, Some(instance.id.to_string())).await;
    }
}

/// Writes `content` as the agent's configuration file, from the host, following no link.
async fn put_back(state: &AppState, instance: &InstanceRow, content: Vec<u8>) -> Result<(), String> {
    let disk = crate::instances::lifecycle::disk_spec(state, instance);
    let path = SandboxPath::parse(&format!("{STATE_DIR}/{FILE}")).map_err(|e| e.into_message())?;
    let Some(mut target) = crate::files::direct::prepare(&disk, &path).await else {
        return Err("the state directory is not plainly the sandbox user's (a link or another owner)".into());
    };
    let size = content.len() as u64;
    let chunks = futures_util::stream::once(async move { Ok(Bytes::from(content)) });
    target.fill(chunks, size).await.map_err(|e| e.into_message())?;
    target.commit(FILE).await.map_err(|e| e.into_message())
}
