//! Scheduled backups: every instance gets a `scheduled` snapshot once per interval (the plan's
//! or `OCAAS_BACKUP_INTERVAL`), at most `OCAAS_BACKUP_CONCURRENCY` at a time, and only the
//! newest `keep` of them stay. An instance unused since its last backup (a stopped one, say)
//! is not backed up again: nothing changed. With several replicas, each instance is backed up
//! once per interval all the same (`back_up`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Semaphore;

use super::models::SnapshotKind;
use super::repo::{self, Due};
use super::service;
use crate::state::AppState;

/// How often the schedule looks for instances due.
const CHECK_EVERY: Duration = Duration::from_secs(60);

pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(state.settings.snapshots.backup_concurrency));
        loop {
            if let Err(error) = run_once(&state, &slots).await {
                tracing::warn!(error = format!("{error:#}"), "scheduled backups failed");
            }
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(CHECK_EVERY.min(state.settings.snapshots.backup_interval.max(Duration::from_secs(1)))) => {}
            }
        }
    });
}

/// Whether the instance is due, and how many scheduled snapshots to keep.
fn due(candidate: &Due, default_interval: Duration, default_keep: u32) -> Option<i64> {
    let interval = candidate.interval_secs.map_or(default_interval, |s| Duration::from_secs(s.max(0) as u64));
    if interval.is_zero() {
        return None;
    }
    let keep = i64::from(candidate.keep.map_or(default_keep as i32, |k| k.max(1)));
    match candidate.last_backup {
        None => Some(keep),
        Some(last) if last < candidate.last_active_at && (Utc::now() - last).to_std().unwrap_or_default() >= interval => Some(keep),
        Some(_) => None,
    }
}

/// Backs up every instance due, `slots` at a time, then prunes; waits for all of them.
pub async fn run_once(state: &AppState, slots: &Arc<Semaphore>) -> anyhow::Result<()> {
    let settings = &state.settings.snapshots;
    let mut work = tokio::task::JoinSet::new();
    for candidate in repo::backup_candidates(&state.db).await? {
        let Some(keep) = due(&candidate, settings.backup_interval, settings.backup_keep) else { continue };
        let (state, slot) = (state.clone(), slots.clone().acquire_owned().await?);
        work.spawn(async move {
            back_up(&state, &candidate, keep).await;
            drop(slot);
        });
    }
    while work.join_next().await.is_some() {}
    Ok(())
}

async fn back_up(state: &AppState, due: &Due, keep: i64) {
    let instance_id = due.instance_id;
    // Every replica runs the schedule: the instance's lock (a lease across processes) makes
    // them take turns, and the one that comes second finds the first one's backup and stops.
    let held = state.drivers.hold(instance_id).await;
    if !matches!(repo::scheduled_after(&state.db, instance_id, due.last_backup).await, Ok(false)) {
        return;
    }
    let Ok(Some(instance)) = crate::instances::repo::get(&state.db, instance_id).await else { return };
    let taken = service::take_locked(state, &instance, SnapshotKind::Scheduled, Some("scheduled backup")).await;
    drop(held);
    if let Err(error) = taken {
        tracing::warn!(%instance_id, %error, "scheduled backup failed");
        return;
    }
    let Ok(old) = repo::scheduled_beyond(&state.db, instance_id, keep).await else { return };
    for id in old {
        if let Ok(Some(snapshot)) = repo::get_for_user(&state.db, id, instance.user_id.unwrap_or_default()).await
            && let Err(error) = service::delete(state, &snapshot).await
        {
            tracing::warn!(%instance_id, error = format!("{error:#}"), "pruning a scheduled backup failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(interval: Option<i32>, last_backup_ago: Option<i64>, active_ago: i64) -> Due {
        Due {
            instance_id: uuid::Uuid::nil(),
            interval_secs: interval,
            keep: None,
            last_backup: last_backup_ago.map(|s| Utc::now() - chrono::Duration::seconds(s)),
            last_active_at: Utc::now() - chrono::Duration::seconds(active_ago),
        }
    }

    #[test]
    fn an_instance_is_due_once_per_interval_and_only_when_used_since() {
        let day = Duration::from_secs(86_400);
        assert_eq!(due(&candidate(None, None, 10), day, 7), Some(7), "never backed up");
        assert_eq!(due(&candidate(None, Some(3600), 10), day, 7), None, "backed up an hour ago");
        assert_eq!(due(&candidate(None, Some(90_000), 10), day, 7), Some(7));
        assert_eq!(due(&candidate(None, Some(90_000), 100_000), day, 7), None, "unused since the last backup");
        assert_eq!(due(&candidate(Some(0), None, 10), day, 7), None, "the plan turned backups off");
        assert_eq!(due(&candidate(Some(60), Some(120), 10), day, 7), Some(7), "the plan's interval wins");
    }
}
