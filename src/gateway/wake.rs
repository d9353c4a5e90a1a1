//! The idle policy's partner for an always-on agent. A paused instance whose agent has a
//! schedule due is resumed `OCAAS_SCHEDULE_WAKE_LEAD` ahead of it (the frozen gateway's timer
//! then fires on time), and every process reads, now and then, what each gateway it is
//! connected to says of its schedules and channels (`cron.status`, `channels.status`), which the
//! idle sweep uses to leave instances awake (`instances::idle`).

use std::time::{Duration, Instant};

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

pub fn spawn(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut refreshed = Instant::now();
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => return,
                () = tokio::time::sleep(TICK) => {}
            }
            if let Err(error) = wake_due(&state).await {
                tracing::warn!(%error, "schedule wake-ups");
            }
            if refreshed.elapsed() >= REFRESH_EVERY {
                refreshed = Instant::now();
                let link = Link::of(&state);
                for id in link.hub.open_ids().into_iter().filter(|id| link.hub.is_up(*id)) {
                    if let Ok(Some(instance)) = crate::instances::repo::get(&state.db, id).await {
                        let _ = refresh(&link, &instance).await;
                    }
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
    let status = rpc::call(link, instance, "channels.status", json!({})).await?;
    let live = live_channels(&status);
    let next = notices::next_wake(link, instance.id).await.flatten();
    repo::set_wakeup(&link.db, instance.id, next, &live).await?;
    Ok(())
}

/// The known channels the gateway reports connected.
pub fn live_channels(status: &Value) -> Vec<String> {
    let Some(channels) = status.get("channels").and_then(Value::as_object) else { return Vec::new() };
    ChannelKind::ALL
        .iter()
        .filter(|kind| channels.get(kind.as_str()).and_then(|c| c.get("connected")).and_then(Value::as_bool) == Some(true))
        .map(|kind| kind.as_str().to_owned())
        .collect()
}
