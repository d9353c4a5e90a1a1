//! The idle policy's partner for an always-on agent. A paused instance whose agent has a
//! schedule due is resumed `OCAAS_SCHEDULE_WAKE_LEAD` ahead of it (the frozen gateway's timer
//! then fires on time), and every process reads, now and then, what each gateway it is
//! connected to says of its schedules and channels (`cron.status`, `channels.status`), which the
//! idle sweep uses to leave instances awake (`instances::idle`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::models::ChannelKind;
use super::repo::agent as repo;
use super::{Link, notices, rpc};
use crate::error::AppResult;
use crate::instances::machine::Op;
use crate::instances::repo::InstanceRow;
use crate::state::AppState;

const TICK: Duration = Duration::from_secs(5);
const REFRESH_EVERY: Duration = Duration::from_secs(30);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const CONCURRENT: usize = 8;

pub fn spawn(state: &AppState) {
    // Wake-ups on their own: no gateway's answer (or silence) can delay them.
    let waker = state.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = waker.shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            if let Err(error) = wake_due(&waker).await {
                tracing::warn!(%error, "schedule wake-ups");
            }
        }
    });
    let state = state.clone();
    tokio::spawn(async move {
        let mut pruned = Instant::now();
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => return,
                () = tokio::time::sleep(REFRESH_EVERY) => {}
            }
            let link = Link::of(&state);
            let up: Vec<_> = link.hub.open_ids().into_iter().filter(|id| link.hub.is_up(*id)).collect();
            // A few gateways at a time, each call bounded (`rpc`): a silent one costs its own wait.
            futures_util::stream::iter(up)
                .for_each_concurrent(CONCURRENT, |id| {
                    let link = link.clone();
                    async move {
                        if let Ok(Some(instance)) = crate::instances::repo::get(&link.db, id).await {
                            let _ = refresh(&link, &instance).await;
                        }
                    }
                })
                .await;
            if pruned.elapsed() >= PRUNE_EVERY {
                pruned = Instant::now();
                if let Err(error) = repo::prune(&state.db).await {
                    tracing::warn!(%error, "pruning the agent feed");
                }
            }
        }
    });
}

/// Resumes paused instances whose next schedule is near.
async fn wake_due(state: &AppState) -> sqlx::Result<()> {
    for id in repo::due_paused(&state.db, state.settings.idle.schedule_lead).await? {
        let Some(instance) = crate::instances::repo::get(&state.db, id).await? else { continue };
        match crate::instances::power::resume(state, &instance, Op::WakePaused).await {
            Ok(_) => tracing::info!(%id, "schedule: woken ahead of its next run"),
            Err(error) => tracing::debug!(%id, %error, "schedule: not woken"),
        }
    }
    Ok(())
}

/// Reads the agent's next schedule and live channels from its gateway and records them.
pub async fn refresh(link: &Link, instance: &InstanceRow) -> AppResult<()> {
    channel_status(link, instance, Duration::from_secs(10)).await?;
    notices::record_next_wake(link, instance).await?;
    Ok(())
}

/// The gateway's `channels.status`, its connected channels recorded for the idle policy on the way.
pub async fn channel_status(link: &Link, instance: &InstanceRow, wait: Duration) -> AppResult<Value> {
    let status = rpc::call_within(link, instance, "channels.status", json!({}), wait).await?;
    repo::set_channels(&link.db, instance.id, &live_channels(&status)).await?;
    Ok(status)
}

/// The known channels the gateway reports connected.
fn live_channels(status: &Value) -> Vec<String> {
    let Some(channels) = status.get("channels").and_then(Value::as_object) else { return Vec::new() };
    ChannelKind::ALL
        .iter()
        .filter(|kind| channels.get(kind.as_str()).and_then(|c| c.get("connected")).and_then(Value::as_bool) == Some(true))
        .map(|kind| kind.as_str().to_owned())
        .collect()
}
