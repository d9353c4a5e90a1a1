//! Moving an instance to another node (`ocaas admin instances move`), through the restore
//! path: while it is `restoring` (calls wait or are refused as during any restore), its
//! container on the old node stops, a snapshot of its storage is packed there, the instance is
//! recorded on the new node, the snapshot is unpacked there and the sandbox created and
//! started; the old node's copy is removed only once the new one serves. Held under the
//! instance's driver lease throughout, so no server drives it meanwhile.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::lifecycle::{self, disk_spec};
use super::machine::{self, Extra, Op};
use super::repo::{self, InstanceRow};
use super::restore;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::runtime::fleet::{Fleet, PLACED_FOR};
use crate::snapshots::models::SnapshotKind;
use crate::state::AppState;

fn failed(error: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("moving the instance: {error}"))
}

fn drive_failed(error: lifecycle::DriveError) -> AppError {
    match error {
        lifecycle::DriveError::Cancelled => failed("cancelled"),
        lifecycle::DriveError::Failed(why) => failed(why),
    }
}

pub async fn relocate(state: &AppState, fleet: &Fleet, id: Uuid, to: Uuid, to_name: &str) -> AppResult<InstanceRow> {
    let _held = state.drivers.hold(id).await;
    let from = crate::nodes::repo::node_id_of(&state.db, id).await?;
    if from == Some(to) {
        return Err(AppError::new(ErrorCode::InvalidState, format!("The instance is on node {to_name} already.")));
    }
    let current = machine::allowing(&state.db, id, Op::Restore).await?;
    let moving = machine::apply_with(&state.db, id, Op::Restore, Extra::default()).await?.ok_or_else(|| machine::refusal(&current, Op::Restore))?;
    match carry(state, fleet, &moving, from, to, to_name).await {
        Ok(moved) => Ok(moved),
        Err(error) => {
            // Its snapshot (if one was taken) holds the files; the instance says what failed.
            let message = error.to_string();
            machine::apply_with_error(&state.db, id, Op::Failed(moving.status), Some(&message)).await?;
            Err(error)
        }
    }
}

async fn carry(state: &AppState, fleet: &Fleet, instance: &InstanceRow, from: Option<Uuid>, to: Uuid, to_name: &str) -> AppResult<InstanceRow> {
    let sandbox = instance.sandbox_id.as_str();
    lifecycle::stop_container(state, sandbox).await.map_err(drive_failed)?;
    let name = format!("moving to node {to_name}");
    let snapshot = crate::snapshots::service::take_locked(state, instance, SnapshotKind::Safety, Some(&name)).await?;
    crate::nodes::repo::set_moved(&state.db, instance.id, to, snapshot.id).await?;
    let switched = Instant::now();
    fleet.forget(sandbox);
    let moved = repo::get(&state.db, instance.id).await?.ok_or_else(crate::extract::instance_not_found)?;
    restore::unpack(state, &moved, &snapshot).await.map_err(drive_failed)?;
    lifecycle::start_and_wait(state, &moved, &CancellationToken::new()).await.map_err(drive_failed)?;
    // The old node's copy goes only now, straight to that node (the placement says the new one).
    let old = match from {
        Some(node) => fleet.node(node).ok_or_else(|| failed("the old node is not known"))?,
        None => fleet.local(),
    };
    if let Err(error) = old.remove_sandbox(sandbox, &disk_spec(state, &moved)).await {
        tracing::warn!(%error, sandbox, "move: the old node's copy could not be removed; remove it there");
    }
    // Other servers may route to the old node for `PLACED_FOR` after the switch: the instance
    // is announced ready only after that.
    tokio::time::sleep(PLACED_FOR.saturating_sub(switched.elapsed()) + Duration::from_millis(500)).await;
    machine::apply(&state.db, instance.id, Op::Restored).await?.ok_or_else(|| failed("the instance changed while it moved"))
}
