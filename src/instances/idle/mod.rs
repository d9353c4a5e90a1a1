//! The idle policy: an instance nobody has used for `pause_after` is paused (memory kept, no
//! CPU), and after `stop_after` stopped (memory freed, storage kept); `stop_reason` says
//! `idle`. Use is what `state::Activity` sees — API calls on the instance, open terminals,
//! desktops and event streams, turns in progress and the agent's model calls — and an
//! instance with anything open or running is never touched, however long ago it was
//! "last used". Plans may override the server's defaults; users may pin instances awake.
//! An always-on agent is left awake while it works unattended: around its schedules' runs
//! (woken ahead of them by `gateway::wake`) and, when the operator allows
//! (`OCAAS_IDLE_CHANNELS_AWAKE`), while a messaging channel of it is connected.

pub mod repo;

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::lifecycle;
use super::machine::{self, Op};
use super::models::InstanceStatus;
use super::power;
use super::repo::Guard;
use crate::config::IdleSettings;
use crate::error::AppResult;
use crate::state::AppState;

/// What the policy does to an instance idle for `idle_for`.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Leave,
    Pause,
    Stop,
}

/// The plan's value in seconds wins over the server's; zero means never.
fn policy(plan: Option<i32>, default: Duration) -> Option<Duration> {
    let after = plan.map_or(default, |secs| Duration::from_secs(secs.max(0) as u64));
    (!after.is_zero()).then_some(after)
}

pub fn verdict(status: InstanceStatus, idle_for: Duration, pause_after: Option<Duration>, stop_after: Option<Duration>) -> Verdict {
    if stop_after.is_some_and(|after| idle_for >= after) && matches!(status, InstanceStatus::Ready | InstanceStatus::Paused) {
        return Verdict::Stop;
    }
    if status == InstanceStatus::Ready && pause_after.is_some_and(|after| idle_for >= after) {
        return Verdict::Pause;
    }
    Verdict::Leave
}

/// After a schedule's run the instance stays awake this long (the run's answer, its tools).
pub const AFTER_RUN: Duration = Duration::from_secs(120);

/// Why the agent itself keeps an instance awake.
#[derive(Debug, PartialEq, Eq)]
pub enum Hold {
    /// A schedule is due within the lead, or ran within `AFTER_RUN`.
    Schedule,
    /// A messaging channel is connected (and `OCAAS_IDLE_CHANNELS_AWAKE`).
    Channel,
}

pub fn agent_holds(candidate: &repo::Candidate, settings: &IdleSettings, now: chrono::DateTime<Utc>) -> Option<Hold> {
    let within = |at: Option<chrono::DateTime<Utc>>, span: Duration| at.is_some_and(|at| (at - now).abs().to_std().unwrap_or_default() <= span);
    if within(candidate.next_run_at, settings.schedule_lead) || within(candidate.last_run_at, AFTER_RUN) {
        return Some(Hold::Schedule);
    }
    (settings.channels_awake && candidate.channel_live).then_some(Hold::Channel)
}

/// Runs `sweep_once` every check interval until shutdown.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(state.settings.idle.check_interval) => {}
            }
            if let Err(error) = sweep_once(&state).await {
                tracing::warn!(error = format!("{error:#}"), "idle sweep failed");
            }
        }
    });
}

/// Writes the activity seen since the last pass, then pauses and stops what is idle.
pub async fn sweep_once(state: &AppState) -> anyhow::Result<()> {
    let used = state.activity.take_dirty();
    if !used.is_empty() {
        super::repo::touch_active(&state.db, &used).await?;
    }
    let defaults: IdleSettings = state.settings.idle;
    // Instances held awake by a channel count, with the pinned ones, against the plan's
    // `keep_awake_max`: an always-listening agent is what pinning is for.
    let mut channel_holds: std::collections::HashMap<Uuid, i64> = std::collections::HashMap::new();
    for candidate in repo::candidates(&state.db).await? {
        if state.activity.is_busy(candidate.id) {
            continue;
        }
        match agent_holds(&candidate, &defaults, Utc::now()) {
            Some(Hold::Schedule) => continue,
            Some(Hold::Channel) => {
                let allowed = candidate.keep_awake_max.map_or(i64::from(defaults.keep_awake_max), |n| i64::from(n.max(0)));
                let held = channel_holds.entry(candidate.user_id).or_default();
                if candidate.pinned + *held < allowed {
                    *held += 1;
                    continue;
                }
            }
            None => {}
        }
        let last = state.activity.last(candidate.id).map_or(candidate.last_active_at, |seen| seen.max(candidate.last_active_at));
        let idle_for = (Utc::now() - last).to_std().unwrap_or_default();
        let pause_after = policy(candidate.pause_after_secs, defaults.pause_after);
        let stop_after = policy(candidate.stop_after_secs, defaults.stop_after);
        match verdict(candidate.status, idle_for, pause_after, stop_after) {
            Verdict::Leave => {}
            // Only if still idle when it happens: another replica may wake or pin it meanwhile.
            Verdict::Pause => pause(state, candidate.id, candidate.last_active_at).await,
            Verdict::Stop => stop(state, candidate.id, candidate.last_active_at).await?,
        }
    }
    Ok(())
}

async fn pause(state: &AppState, id: Uuid, seen: DateTime<Utc>) {
    let Ok(Some(instance)) = super::repo::get(&state.db, id).await else { return };
    match power::pause(state, &instance, Op::IdlePause, Guard::IdleSince(seen)).await {
        Ok(_) => tracing::info!(%id, "idle: paused"),
        // Used or changed in the meantime: the guarded update refused, which is right.
        Err(error) => tracing::debug!(%id, %error, "idle: not paused"),
    }
}

async fn stop(state: &AppState, id: Uuid, seen: DateTime<Utc>) -> sqlx::Result<()> {
    if machine::apply_guarded(&state.db, id, Op::IdleStop, Guard::IdleSince(seen)).await?.is_some() {
        tracing::info!(%id, "idle: stopping");
        lifecycle::spawn_drive(state, id);
    }
    Ok(())
}

/// How many instances the user may pin awake.
pub async fn keep_awake_allowance(state: &AppState, user_id: Uuid) -> AppResult<u32> {
    let plan = repo::keep_awake_max(&state.db, user_id).await?;
    Ok(plan.map_or(state.settings.idle.keep_awake_max, |n| n.max(0) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn idle_instances_pause_then_stop_and_zero_means_never() {
        let (pause, stop) = (Some(15 * MIN), Some(24 * 60 * MIN));
        assert_eq!(verdict(InstanceStatus::Ready, 14 * MIN, pause, stop), Verdict::Leave);
        assert_eq!(verdict(InstanceStatus::Ready, 15 * MIN, pause, stop), Verdict::Pause);
        assert_eq!(verdict(InstanceStatus::Paused, 60 * MIN, pause, stop), Verdict::Leave, "paused already");
        assert_eq!(verdict(InstanceStatus::Paused, 24 * 60 * MIN, pause, stop), Verdict::Stop);
        assert_eq!(verdict(InstanceStatus::Ready, 24 * 60 * MIN, None, stop), Verdict::Stop, "stop without pausing first");
        assert_eq!(verdict(InstanceStatus::Ready, 1000 * MIN, None, None), Verdict::Leave);
        assert_eq!(policy(Some(0), 15 * MIN), None, "a plan's 0 turns the policy off");
        assert_eq!(policy(None, Duration::ZERO), None);
        assert_eq!(policy(Some(30), 15 * MIN), Some(Duration::from_secs(30)), "the plan wins");
    }
}
