//! Upgrades that roll back by themselves. An upgrade snapshots the instance (its rollback
//! point), recreates the container on the new image with the same storage, and passes a
//! health gate: the gateway ready within the ready timeout and a real chat round trip
//! answered. If anything fails the container is recreated on the old image, the snapshot is
//! put back, the instance is `ready` again with `last_error` saying what happened, and its
//! chat gets a system message. Every step is a status (`upgrading`, `rolling_back`) with what
//! it needs in the row, so a server that dies mid-way finishes or rolls back at its next
//! start (the reconciler resumes the driver).

use std::time::Duration;

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::lifecycle::{self, DriveError};
use super::machine::{self, Extra, Op};
use super::repo::InstanceRow;
use super::restore::{self, failed};
use crate::chat::gateway::{GatewayEvent, Turn, stream_turn};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::snapshots::models::SnapshotKind;
use crate::snapshots::service;
use crate::state::AppState;

/// How long the health gate's chat round trip may take.
const HEALTH_TURN_TIMEOUT: Duration = Duration::from_secs(60);

/// Snapshots the instance, moves it to `upgrading` towards `to_image` and starts the driver.
pub async fn begin(state: &AppState, instance_id: Uuid, to_image: &str) -> AppResult<InstanceRow> {
    let upgrading = prepare(state, instance_id, to_image).await?;
    lifecycle::spawn_drive(state, instance_id);
    Ok(upgrading)
}

/// Snapshots the instance and moves it to `upgrading`; whoever drives it next (this process,
/// or the server's reconciler) does the rest.
pub async fn prepare(state: &AppState, instance_id: Uuid, to_image: &str) -> AppResult<InstanceRow> {
    let held = state.drivers.hold(instance_id).await;
    let current = machine::allowing(&state.db, instance_id, Op::Upgrade).await?;
    if current.image == to_image {
        return Err(AppError::new(ErrorCode::InvalidState, format!("The instance already runs {to_image}.")));
    }
    let name = format!("before upgrading to {to_image}");
    let snapshot = service::take_locked(state, &current, SnapshotKind::Upgrade, Some(&name)).await?;
    let upgrading =
        machine::begin_upgrade(&state.db, &current, to_image, snapshot.id).await?.ok_or_else(|| machine::refusal(&current, Op::Upgrade))?;
    drop(held);
    Ok(upgrading)
}

/// The driver of `upgrading`.
pub async fn upgrade(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    let attempt = async {
        state.runtime.remove_container(&instance.sandbox_id).await?;
        lifecycle::start_and_wait(state, instance, token).await?;
        health_turn(state, instance).await.map_err(DriveError::Failed)
    };
    match attempt.await {
        Ok(()) => {
            machine::apply(&state.db, instance.id, Op::Upgraded).await.map_err(failed)?;
            tracing::info!(id = %instance.id, image = %instance.image, "upgraded");
            Ok(())
        }
        Err(DriveError::Cancelled) => Err(DriveError::Cancelled),
        Err(DriveError::Failed(problem)) => {
            let old = instance.upgrade_from_image.clone().ok_or_else(|| failed("the upgrade does not say which image it came from"))?;
            tracing::warn!(id = %instance.id, to = %instance.image, %problem, "upgrade failed: rolling back");
            let message =
                format!("The upgrade to {} failed ({problem}); the instance was rolled back to {old} and its data restored.", instance.image);
            let extra = Extra { image: Some(&old), last_error: Some(&message), ..Extra::default() };
            let rolling = machine::apply_with(&state.db, instance.id, Op::RollBack, extra).await.map_err(failed)?;
            let rolling = rolling.ok_or_else(|| failed("the instance changed during its upgrade"))?;
            roll_back_with(state, &rolling, token, &message).await
        }
    }
}

/// The driver of `rolling_back` (resumed after a crash).
pub async fn roll_back(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    let message =
        instance.last_error.clone().unwrap_or_else(|| "The upgrade was interrupted; the instance was rolled back and its data restored.".into());
    roll_back_with(state, instance, token, &message).await
}

async fn roll_back_with(state: &AppState, instance: &InstanceRow, token: &CancellationToken, message: &str) -> Result<(), DriveError> {
    let user_id = instance.user_id.ok_or_else(|| failed("a pool sandbox is never upgraded"))?;
    let snapshot_id = instance.pending_snapshot_id.ok_or_else(|| failed("the upgrade's snapshot is gone"))?;
    let snapshot = crate::snapshots::repo::get_for_user(&state.db, snapshot_id, user_id)
        .await
        .map_err(failed)?
        .ok_or_else(|| failed("the upgrade's snapshot is gone"))?;
    state.runtime.remove_container(&instance.sandbox_id).await?;
    restore::unpack(state, instance, &snapshot).await?;
    lifecycle::start_and_wait(state, instance, token).await?;
    let extra = Extra { last_error: Some(message), ..Extra::default() };
    machine::apply_with(&state.db, instance.id, Op::RolledBack, extra).await.map_err(failed)?;
    crate::chat::notice::post(&state.db, instance.id, message).await.map_err(failed)?;
    Ok(())
}

/// A real chat round trip through the gateway (outside the user's sessions).
async fn health_turn(state: &AppState, instance: &InstanceRow) -> Result<(), String> {
    let turn = Turn {
        runtime: state.runtime.as_ref(),
        sandbox: &instance.sandbox_id,
        token: &instance.gateway_token,
        session_key: "ocaas-upgrade-check",
        message: "ocaas upgrade check: please reply.",
    };
    let answered = async {
        let mut events = Box::pin(stream_turn(turn).await.map_err(|e| e.to_string())?);
        let mut answer = 0usize;
        while let Some(event) = events.next().await {
            match event.map_err(|e| e.to_string())? {
                GatewayEvent::Delta(piece) => answer += piece.len(),
                GatewayEvent::Done if answer > 0 => return Ok(()),
                GatewayEvent::Done => return Err("the gateway's answer was empty".to_owned()),
            }
        }
        Err("the gateway's answer ended early".to_owned())
    };
    tokio::time::timeout(HEALTH_TURN_TIMEOUT, answered).await.unwrap_or_else(|_| Err("the gateway did not answer a chat turn in time".into()))
}
