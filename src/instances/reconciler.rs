//! The reconciler: at start and then periodically, compares the database with the containers
//! labelled for this deployment and brings every (status, container state) pair together —
//! the database says what should be, the engine is made to follow: a `ready` instance's paused
//! container is thawed, a `paused` instance's running one frozen, a `stopped` instance's
//! running one stopped; dead or vanished sandboxes of `ready`, `paused` and `pooled` instances
//! become `error`; instances left mid-operation get a driver again; containers of this
//! deployment without a row are removed. An instance whose lock is held (a driver or a
//! request at work on it) is left for the next pass. Containers of other deployments (another
//! database on the same engine) are never touched. Each host (the servers' own engine, each
//! node) is reconciled by one replica at a time, under a lease in `reconcile_leases`.

use std::collections::HashSet;
use std::time::Duration;

use uuid::Uuid;

use super::lifecycle;
use super::machine::{self, Op};
use super::models::InstanceStatus;
use super::repo;
use crate::runtime::disk::DiskSpec;
use crate::runtime::{LABEL_INSTANCE, ManagedContainer, Runtime, RuntimeError, RuntimeResult};
use crate::state::AppState;

/// A streaming message untouched for this long belongs to a turn nobody runs any more
/// (running turns touch theirs at least every 5 s).
const STALE_TURN_SECS: f64 = 30.0;
/// The shortest a host's reconcile lease lasts (else three passes).
const LEASE_MIN: Duration = Duration::from_secs(3);

/// Runs `reconcile_once` now and every `interval` until shutdown, then lets go of its hosts.
pub fn spawn(state: AppState, interval: Duration) {
    tokio::spawn(async move {
        loop {
            let outcome = reconcile_once(&state).await;
            state.metrics.reconcile_passes.with_label_values(&[if outcome.is_ok() { "ok" } else { "error" }]).inc();
            if let Err(error) = outcome {
                tracing::warn!(error = format!("{error:#}"), "reconcile pass failed");
            }
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = tokio::time::sleep(interval) => {}
            }
        }
        // Another replica takes these hosts over at its next pass instead of after expiry.
        let _ = crate::db::leases::release_scopes(&state.db, state.drivers.process()).await;
    });
}

fn scope_of(host: Option<Uuid>) -> String {
    host.map_or_else(|| "local".to_owned(), |id| id.to_string())
}

/// The hosts this process reconciles now: each is reconciled by one replica at a time, under a
/// lease it renews every pass (`None`: the servers' own engine; else a node).
async fn held_hosts(state: &AppState) -> anyhow::Result<Vec<Option<Uuid>>> {
    let ttl = (state.settings.instances.reconcile_interval * 3).max(LEASE_MIN);
    let mut held = Vec::new();
    let hosts = std::iter::once(None).chain(crate::nodes::repo::ids(&state.db).await?.into_iter().map(Some));
    for host in hosts {
        if crate::db::leases::claim_scope(&state.db, &scope_of(host), state.drivers.process(), ttl).await? {
            held.push(host);
        }
    }
    Ok(held)
}

pub async fn reconcile_once(state: &AppState) -> anyhow::Result<()> {
    // Instances made before their facts were recorded get them first (once; cheap after).
    super::facts::backfill(&state.db, &state.settings.instances).await?;
    let hosts = held_hosts(state).await?;
    // Containers first: a container created after this listing has its row committed already,
    // so it can never be mistaken for an orphan below. A node that does not answer is left
    // alone this pass; the servers' own engine must answer.
    let deployment = state.deployment_id.to_string();
    let mut containers = Vec::new();
    let mut hosts_listed = Vec::new();
    for host in hosts {
        match state.runtime.list_managed_on(host, &deployment).await {
            Ok(listed) => {
                containers.push(listed);
                hosts_listed.push(host);
            }
            // Let go of it: a replica that reaches it takes it at its next pass.
            Err(error) if host.is_some() => {
                tracing::debug!(%error, "reconcile: a node did not list its sandboxes");
                crate::db::leases::release_scope(&state.db, &scope_of(host), state.drivers.process()).await?;
            }
            Err(error) => return Err(error.into()),
        }
    }
    let hosts = hosts_listed;
    let instances = repo::list_all(&state.db).await?;
    let placed = repo::placements(&state.db).await?;
    if containers.iter().any(|c| !c.is_empty()) {
        // The egress rules again, in case an engine or firewall restart dropped them.
        state.runtime.ensure_network(&state.settings.instances.egress).await?;
    }

    for listed in &instances {
        // Abandoned drivers are resumed by any replica (the driver lease guards them); the
        // engine is made to follow only on the hosts this replica holds.
        let on_held = placed.get(&listed.id).is_some_and(|host| hosts.contains(host));
        if !on_held && !listed.status.is_transitional() {
            continue;
        }
        // Work under way on the instance decides; the next pass looks again.
        let Some(held) = state.drivers.try_hold(listed.id).await else { continue };
        // Read again under the lock: the listing may be out of date.
        let Some(instance) = repo::get(&state.db, listed.id).await? else { continue };
        if instance.status.is_transitional() {
            drop(held);
            if !state.drivers.is_driving(instance.id) {
                tracing::info!(id = %instance.id, status = instance.status.as_str(), "reconcile: resuming");
                state.metrics.reconcile_fixes.with_label_values(&["resumed"]).inc();
                lifecycle::spawn_drive(state, instance.id);
            }
            continue;
        }
        if !on_held {
            continue;
        }
        match converge(state, &instance).await {
            Ok(Some(fix)) => state.metrics.reconcile_fixes.with_label_values(&[fix]).inc(),
            Ok(None) => {}
            // Its node does not answer: it is left as it is (nothing is recreated behind the
            // user's back) and looked at again once the node is back; the others go on.
            Err(error) if matches!(error.downcast_ref::<RuntimeError>(), Some(RuntimeError::Unavailable(_))) => {
                tracing::debug!(id = %instance.id, %error, "reconcile: the instance's host does not answer");
            }
            Err(error) => return Err(error),
        }
    }

    // Turns whose server died mid-answer: their message stopped being touched.
    let interrupted = crate::chat::repo::interrupt_stale_turns(&state.db, STALE_TURN_SECS).await?;
    if interrupted > 0 {
        state.metrics.reconcile_fixes.with_label_values(&["turn_interrupted"]).inc_by(interrupted);
        tracing::warn!(interrupted, "reconcile: finalised abandoned chat turns as interrupted");
    }
    crate::auth::repo::delete_stale_tickets(&state.db).await?;
    let abandoned = crate::snapshots::service::fail_abandoned(state).await?;
    state.metrics.reconcile_fixes.with_label_values(&["snapshot_abandoned"]).inc_by(abandoned as u64);

    let known: HashSet<String> = instances.iter().map(|i| i.id.to_string()).collect();
    let disk_of = |name: &str| lifecycle::orphan_disk_spec(state, name);
    for listed in &containers {
        let removed = remove_orphans(state.runtime.as_ref(), listed, &known, &disk_of).await?;
        state.metrics.reconcile_fixes.with_label_values(&["orphan_removed"]).inc_by(removed as u64);
    }
    Ok(())
}

/// Makes the engine agree with the instance's stable status; names the fix it made.
async fn converge(state: &AppState, instance: &repo::InstanceRow) -> anyhow::Result<Option<&'static str>> {
    let (runtime, name) = (state.runtime.as_ref(), instance.sandbox_id.as_str());
    let info = match runtime.inspect(name).await {
        Ok(info) => Some(info),
        Err(RuntimeError::NotFound(_)) => None,
        Err(error) => return Err(error.into()),
    };
    let running = info.as_ref().is_some_and(|i| i.running);
    let paused = info.as_ref().is_some_and(|i| i.paused);
    let fix = match instance.status {
        InstanceStatus::Ready | InstanceStatus::Paused | InstanceStatus::Pooled if !running => {
            let problem = sandbox_problem(runtime, name).await?.unwrap_or_else(|| "the sandbox container is not running".into());
            tracing::warn!(id = %instance.id, %problem, "reconcile: marking instance as error");
            machine::apply_with_error(&state.db, instance.id, Op::Died, Some(&problem)).await?;
            "marked_error"
        }
        InstanceStatus::Ready | InstanceStatus::Pooled if paused => {
            runtime.unpause(name).await?;
            "unpaused"
        }
        InstanceStatus::Paused if !paused => {
            runtime.pause(name).await?;
            "paused"
        }
        InstanceStatus::Stopped if running => {
            runtime.stop(name, 10).await?;
            "stopped"
        }
        _ => return Ok(None),
    };
    tracing::info!(id = %instance.id, status = instance.status.as_str(), fix, "reconcile: converged");
    Ok(Some(fix))
}

/// Why a `ready` instance's sandbox is not serving (`None` when it runs).
async fn sandbox_problem(runtime: &dyn Runtime, sandbox_id: &str) -> RuntimeResult<Option<String>> {
    Ok(match runtime.inspect(sandbox_id).await {
        Ok(info) if info.running => None,
        Ok(info) => Some(match info.exit_code {
            Some(code) => format!("the sandbox container stopped unexpectedly (exit code {code})"),
            None => format!("the sandbox container is {}", info.state),
        }),
        Err(RuntimeError::NotFound(_)) => Some("the sandbox container disappeared".to_owned()),
        Err(error) => return Err(error),
    })
}

/// Removes this deployment's containers whose instance (label) is not among `known`.
async fn remove_orphans(
    runtime: &dyn Runtime,
    containers: &[ManagedContainer],
    known: &HashSet<String>,
    disk_of: &(dyn Fn(&str) -> DiskSpec + Sync),
) -> RuntimeResult<usize> {
    let mut removed = 0;
    for container in containers {
        let instance_id = container.labels.get(LABEL_INSTANCE).map(String::as_str).unwrap_or_default();
        if !known.contains(instance_id) {
            tracing::info!(container = %container.name, "reconcile: removing a container with no instance");
            runtime.remove_sandbox(&container.name, &disk_of(&container.name)).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::LABEL_DEPLOYMENT;
    use crate::runtime::memory::MemoryRuntime;

    #[tokio::test]
    async fn a_ready_instance_whose_container_died_or_vanished_has_a_problem() {
        let runtime = MemoryRuntime::default().with_container("sandy-up", "running", &[]).with_container("sandy-dead", "exited", &[]);
        assert_eq!(sandbox_problem(&runtime, "sandy-up").await.unwrap(), None);
        let dead = sandbox_problem(&runtime, "sandy-dead").await.unwrap().unwrap();
        assert!(dead.contains("exit code 137"), "{dead}");
        let gone = sandbox_problem(&runtime, "sandy-gone").await.unwrap().unwrap();
        assert!(gone.contains("disappeared"), "{gone}");
    }

    #[tokio::test]
    async fn only_containers_without_an_instance_are_removed_and_only_this_deployments() {
        let runtime = MemoryRuntime::default()
            .with_container("sandy-kept", "running", &[(LABEL_DEPLOYMENT, "d1"), (LABEL_INSTANCE, "i-known")])
            .with_container("sandy-orphan", "running", &[(LABEL_DEPLOYMENT, "d1"), (LABEL_INSTANCE, "i-gone")])
            .with_container("sandy-other", "running", &[(LABEL_DEPLOYMENT, "d2"), (LABEL_INSTANCE, "i-gone")]);
        let containers = runtime.list_managed("d1").await.unwrap();
        let known = HashSet::from(["i-known".to_owned()]);
        let disk_of = |name: &str| DiskSpec::new(std::path::Path::new("/nonexistent"), name, 0);
        assert_eq!(remove_orphans(&runtime, &containers, &known, &disk_of).await.unwrap(), 1);
        assert_eq!(*runtime.disks.lock().unwrap(), Vec::<std::path::PathBuf>::new());
        assert_eq!(runtime.state_of("sandy-kept").as_deref(), Some("running"));
        assert_eq!(runtime.state_of("sandy-orphan"), None);
        assert_eq!(runtime.state_of("sandy-other").as_deref(), Some("running"), "another deployment's container is never touched");
    }
}
