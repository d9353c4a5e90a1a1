//! The reconciler: at start and then periodically, compares the database with the containers
//! labelled for this deployment. Dead or vanished sandboxes of `ready` instances become `error`;
//! instances left mid-operation get a driver again; containers of this deployment without a row
//! are removed. Containers of other deployments (another database on the same engine) are never
//! touched.

use std::collections::HashSet;
use std::time::Duration;

use super::lifecycle::{self, workspace_volume};
use super::models::InstanceStatus;
use super::repo;
use crate::app::AppState;
use crate::runtime::{LABEL_INSTANCE, RuntimeError};

/// A streaming message untouched for this long belongs to a turn nobody runs any more
/// (running turns touch theirs at least every 5 s).
const STALE_TURN_SECS: f64 = 30.0;

/// Runs `reconcile_once` now and every `interval` until shutdown.
pub fn spawn(state: AppState, interval: Duration) {
    tokio::spawn(async move {
        loop {
            if let Err(error) = reconcile_once(&state).await {
                tracing::warn!(error = format!("{error:#}"), "reconcile pass failed");
            }
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
    });
}

pub async fn reconcile_once(state: &AppState) -> anyhow::Result<()> {
    // Containers first: a container created after this listing has its row committed already,
    // so it can never be mistaken for an orphan below.
    let containers = state.runtime.list_managed(&state.deployment_id.to_string()).await?;
    let instances = repo::list_all(&state.db).await?;

    for instance in &instances {
        let status = instance.status();
        if status.is_transitional() {
            if !state.drivers.is_driving(instance.id) {
                tracing::info!(id = %instance.id, status = status.as_str(), "reconcile: resuming");
                lifecycle::spawn_drive(state, instance.id);
            }
            continue;
        }
        if status != InstanceStatus::Ready {
            continue;
        }
        let problem = match state.runtime.inspect(&instance.sandbox_id).await {
            Ok(info) if info.running => None,
            Ok(info) => Some(match info.exit_code {
                Some(code) => format!("the sandbox container stopped unexpectedly (exit code {code})"),
                None => format!("the sandbox container is {}", info.state),
            }),
            Err(RuntimeError::NotFound(_)) => Some("the sandbox container disappeared".to_owned()),
            Err(error) => return Err(error.into()),
        };
        if let Some(problem) = problem {
            tracing::warn!(id = %instance.id, %problem, "reconcile: marking instance as error");
            repo::transition(&state.db, instance.id, &[InstanceStatus::Ready], InstanceStatus::Error, Some(&problem)).await?;
        }
    }

    // Turns whose server died mid-answer: their message stopped being touched.
    let interrupted = crate::chat::repo::interrupt_stale_turns(&state.db, STALE_TURN_SECS).await?;
    if interrupted > 0 {
        tracing::warn!(interrupted, "reconcile: finalised abandoned chat turns as interrupted");
    }
    crate::auth::repo::delete_stale_tickets(&state.db).await?;

    let known: HashSet<String> = instances.iter().map(|i| i.id.to_string()).collect();
    for container in containers {
        let instance_id = container.labels.get(LABEL_INSTANCE).cloned().unwrap_or_default();
        if !known.contains(&instance_id) {
            tracing::info!(container = %container.name, "reconcile: removing a container with no instance");
            state.runtime.remove_sandbox(&container.name, &workspace_volume(&container.name)).await?;
        }
    }
    Ok(())
}
