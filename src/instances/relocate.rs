//! Moving an instance to another node (`ocaas admin instances move`), through the restore
//! path. Under the instance's driver lease, while it is `restoring` (its calls are refused as
//! during any restore): its container on the old node stops, a snapshot of its storage is packed
//! there, and the instance is recorded on the new node with that snapshot pending. Then the
//! lease is let go and a server's restore driver does the rest as for any restore — the storage
//! unpacked on the new node, the sandbox created there (with that server's broker) and started.
//! The old node's copy is removed only once the instance is `ready` on the new one; if it does
//! not get there, the instance is recorded back on the old node, whose copy is intact.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::lifecycle::{self, disk_spec};
use super::machine::{self, Extra, Op};
use super::models::InstanceStatus;
use super::repo::{self, InstanceRow};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::runtime::fleet::{Fleet, PLACED_FOR};
use crate::snapshots::models::SnapshotKind;
use crate::state::AppState;

/// How long the new node may take to serve the instance.
const ARRIVAL: Duration = Duration::from_secs(300);

fn failed(error: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("moving the instance: {error}"))
}

pub async fn relocate(state: &AppState, fleet: &Fleet, id: Uuid, to: Uuid, to_name: &str) -> AppResult<InstanceRow> {
    let from = crate::nodes::repo::node_id_of(&state.db, id).await?;
    if from == Some(to) {
        return Err(AppError::new(ErrorCode::InvalidState, format!("The instance is on node {to_name} already.")));
    }
    let held = state.drivers.hold(id).await;
    let current = machine::allowing(&state.db, id, Op::Restore).await?;
    if current.user_id.is_none() {
        return Err(AppError::new(ErrorCode::InvalidState, "A warm pool sandbox is not moved; it is replaced."));
    }
    let moving = machine::apply_with(&state.db, id, Op::Restore, Extra::default()).await?.ok_or_else(|| machine::refusal(&current, Op::Restore))?;
    let packed = async {
        let stopped = lifecycle::stop_container(state, &moving.sandbox_id).await;
        stopped.map_err(|e| {
            failed(match e {
                lifecycle::DriveError::Failed(why) => why,
                lifecycle::DriveError::Cancelled => "cancelled".into(),
            })
        })?;
        crate::snapshots::service::take_locked(state, &moving, SnapshotKind::Safety, Some(&format!("moving to node {to_name}"))).await
    };
    let snapshot = match packed.await {
        Ok(snapshot) => snapshot,
        Err(error) => {
            // Nothing moved: the instance stays where it is, stopped, and says why.
            machine::apply_with_error(&state.db, id, Op::Failed(InstanceStatus::Restoring), Some(&error.to_string())).await?;
            return Err(error);
        }
    };
    crate::nodes::repo::set_moved(&state.db, id, Some(to), Some(snapshot.id)).await?;
    fleet.forget(&moving.sandbox_id);
    // Servers may route to the old node for `PLACED_FOR` after the switch: their restore
    // driver starts only after that.
    tokio::time::sleep(PLACED_FOR + Duration::from_millis(500)).await;
    // A server's reconciler resumes the restore (this command has no broker to give it).
    drop(held);
    let arrived = until_settled(state, id).await?;
    if arrived.status != InstanceStatus::Ready {
        crate::nodes::repo::set_moved(&state.db, id, from, None).await?;
        fleet.forget(&moving.sandbox_id);
        let why = arrived.last_error.unwrap_or_else(|| format!("it is {}", arrived.status));
        return Err(failed(format!("it did not start on node {to_name} ({why}); it is recorded on its old node again, whose copy is intact")));
    }
    let old = match from {
        Some(node) => fleet.node(node).ok_or_else(|| failed("the old node is not known"))?,
        None => fleet.local(),
    };
    if let Err(error) = old.remove_sandbox(&moving.sandbox_id, &disk_spec(state, &moving)).await {
        tracing::warn!(%error, sandbox = %moving.sandbox_id, "move: the old node's copy could not be removed; remove it there");
    }
    Ok(arrived)
}

/// The instance once its restore has ended, one way or the other.
async fn until_settled(state: &AppState, id: Uuid) -> AppResult<InstanceRow> {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let instance = repo::get(&state.db, id).await?.ok_or_else(crate::extract::instance_not_found)?;
        if instance.status != InstanceStatus::Restoring || Instant::now() > deadline {
            return Ok(instance);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
