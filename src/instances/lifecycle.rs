//! Background work that moves an instance through its states: provisioning → ready (or
//! pooled), rebooting → ready, stopping → stopped, deleting → gone. One driver per instance at
//! a time in this process (a newer operation cancels the older one and waits for it to let go
//! of the instance); the reconciler restarts drivers for instances left mid-way by a previous
//! process. Status changes are `machine` ops.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::facts::Facts;
use super::machine::{self, Op};
use super::models::InstanceStatus;
use super::repo::{self, InstanceRow};
use crate::runtime::disk::DiskSpec;
use crate::runtime::sandbox::{HOME_DIR, STATE_DIR};
use crate::runtime::{LABEL_DEPLOYMENT, LABEL_INSTANCE, LABEL_MANAGED, LABEL_USER, Runtime, RuntimeError, SandboxSpec};
use crate::state::AppState;

const STOP_GRACE_SECS: i32 = 10;
/// How often a starting sandbox's gateway is asked whether it is ready (a local HTTP request).
const READY_POLL: Duration = Duration::from_millis(20);

/// Starts the background work the instance's current status calls for.
pub fn spawn_drive(state: &AppState, id: Uuid) {
    let (generation, token) = state.drivers.begin(id, &state.shutdown);
    let state = state.clone();
    tokio::spawn(async move {
        // The cancelled predecessor may still be inside an engine call: wait for it to end.
        let held = state.drivers.hold(id).await;
        if !token.is_cancelled() {
            drive(&state, id, &token).await;
        }
        drop(held);
        state.drivers.end(id, generation);
    });
}

pub enum DriveError {
    Cancelled,
    Failed(String),
}

impl From<RuntimeError> for DriveError {
    fn from(error: RuntimeError) -> Self {
        DriveError::Failed(error.to_string())
    }
}

async fn drive(state: &AppState, id: Uuid, token: &CancellationToken) {
    let instance = match repo::get(&state.db, id).await {
        Ok(Some(instance)) => instance,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%id, %error, "lifecycle: loading the instance failed");
            return;
        }
    };
    let status = instance.status;
    let started = std::time::Instant::now();
    let outcome = match status {
        InstanceStatus::Provisioning => provision(state, &instance, token).await,
        InstanceStatus::Rebooting => reboot(state, &instance, token).await,
        InstanceStatus::Stopping => stop(state, &instance).await,
        InstanceStatus::Deleting => remove(state, &instance).await,
        InstanceStatus::Restoring => super::restore::restore(state, &instance, token).await,
        InstanceStatus::Upgrading => super::upgrade::upgrade(state, &instance, token).await,
        InstanceStatus::RollingBack => super::upgrade::roll_back(state, &instance, token).await,
        _ => return,
    };
    if matches!(status, InstanceStatus::Provisioning | InstanceStatus::Rebooting) && !matches!(outcome, Err(DriveError::Cancelled)) {
        let kind = if status == InstanceStatus::Provisioning { "provision" } else { "reboot" };
        state.metrics.operation(kind, started, outcome.is_ok());
    }
    match outcome {
        Ok(()) | Err(DriveError::Cancelled) => {}
        Err(DriveError::Failed(message)) => {
            tracing::warn!(%id, sandbox = %instance.sandbox_id, %message, "lifecycle: {} failed", status.as_str());
            // A failed delete stays `deleting`; the reconciler tries again.
            if status != InstanceStatus::Deleting {
                let _ = machine::apply_with_error(&state.db, id, Op::Failed(status), Some(&message)).await;
            }
        }
    }
}

/// How a sandbox's gateway reaches its model: the broker's URL and the instance's own token.
pub struct BrokerAccess {
    pub url: String,
    pub token: String,
}

pub fn sandbox_spec(state: &AppState, instance: &InstanceRow, broker: &BrokerAccess) -> SandboxSpec {
    let settings = &state.settings.instances;
    let facts = Facts::of(instance, settings);
    let mut labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_DEPLOYMENT.to_owned(), state.deployment_id.to_string()),
        (LABEL_INSTANCE.to_owned(), instance.id.to_string()),
    ]);
    // A pool sandbox has no owner yet (the database says who claimed it).
    if let Some(user_id) = instance.user_id {
        labels.insert(LABEL_USER.to_owned(), user_id.to_string());
    }
    // Only this instance's own credentials and non-secret settings: never an operator secret.
    let env = vec![
        format!("OPENCLAW_GATEWAY_TOKEN={}", instance.gateway_token),
        format!("OCAAS_VNC_PASSWORD={}", crate::runtime::sandbox::vnc_password(&instance.gateway_token)),
        format!("HOME={HOME_DIR}"),
        format!("OCAAS_STATE_DIR={STATE_DIR}"),
        // The model is reached through the broker: the key here is the instance's broker token.
        format!("OCAAS_LLM_BASE_URL={}", broker.url),
        format!("OCAAS_LLM_API_KEY={}", broker.token),
        format!("OCAAS_LLM_MODEL={}", settings.llm.model),
    ];
    SandboxSpec { name: instance.sandbox_id.clone(), image: instance.image.clone(), disk: facts.disk(), labels, env, limits: facts.limits(settings) }
}

/// Where the instance's storage lives on the host and its quota, as recorded at create.
pub fn disk_spec(state: &AppState, instance: &InstanceRow) -> DiskSpec {
    Facts::of(instance, &state.settings.instances).disk()
}

/// The storage of a container no row knows (an orphan): where the current settings put it.
pub fn orphan_disk_spec(state: &AppState, sandbox_id: &str) -> DiskSpec {
    Facts::for_new(&state.settings.instances, sandbox_id).disk()
}

const NO_BROKER: &str = "the model broker is not listening on the sandbox network (the server's log says why), so the sandbox \
would have no model endpoint; start the instance again once it listens";

/// Starts the instance's container, creating it first (with a fresh broker token) if it does
/// not exist. A container that exists already (a provision resumed after a crash) keeps its
/// token, whose hash was stored before the container was created.
async fn create_and_start(state: &AppState, instance: &InstanceRow) -> Result<(), DriveError> {
    let runtime = state.runtime.as_ref();
    match runtime.inspect(&instance.sandbox_id).await {
        Ok(_) => runtime.prepare_storage(&disk_spec(state, instance)).await?,
        Err(RuntimeError::NotFound(_)) => {
            runtime.ensure_network(&state.settings.instances.egress).await?;
            // A node's own relay for a sandbox there; else this server's listener.
            let url = match runtime.broker_relay(&instance.sandbox_id).await? {
                Some(relay) => Some(format!("http://{relay}/v1")),
                None => crate::broker::url(state).await,
            };
            // Without one the gateway would refuse its configuration and exit: say why instead.
            let url = url.ok_or_else(|| DriveError::Failed(NO_BROKER.to_owned()))?;
            let token = crate::broker::rotate_token(&state.db, instance.id).await.map_err(|e| DriveError::Failed(e.to_string()))?;
            runtime.create_sandbox(&sandbox_spec(state, instance, &BrokerAccess { url, token })).await?;
            // A clone's storage gets its source snapshot before the first start.
            if instance.status == InstanceStatus::Provisioning {
                super::restore::seed(state, instance).await?;
            }
        }
        Err(error) => return Err(error.into()),
    }
    runtime.start(&instance.sandbox_id).await?;
    Ok(())
}

/// Starts the instance's container (creating it if missing), waits until its gateway is ready
/// and records the OpenClaw version it reports.
pub async fn start_and_wait(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    create_and_start(state, instance).await?;
    wait_until_ready(state, instance, token).await?;
    record_version(state, instance).await;
    Ok(())
}

/// Stops the container if there is one (a frozen one is thawed first by the runtime).
pub async fn stop_container(state: &AppState, name: &str) -> Result<(), DriveError> {
    match state.runtime.stop(name, STOP_GRACE_SECS).await {
        Ok(()) | Err(RuntimeError::NotFound(_)) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// `openclaw --version` in the sandbox, stored with the instance (best effort).
async fn record_version(state: &AppState, instance: &InstanceRow) {
    let request = crate::runtime::ExecRequest {
        cmd: vec!["openclaw".into(), "--version".into()],
        max_output: 256,
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let version = match state.runtime.exec(&instance.sandbox_id, request).await {
        Ok(output) if output.exit_code == Some(0) => String::from_utf8_lossy(&output.stdout).trim().chars().take(64).collect::<String>(),
        _ => return,
    };
    if !version.is_empty()
        && let Err(error) = repo::set_version(&state.db, instance.id, &version).await
    {
        tracing::warn!(id = %instance.id, %error, "recording the OpenClaw version failed");
    }
}

async fn provision(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    start_and_wait(state, instance, token).await?;
    let done = if instance.user_id.is_some() { Op::Provisioned } else { Op::Warmed };
    machine::apply(&state.db, instance.id, done).await.map_err(|e| DriveError::Failed(e.to_string()))?;
    Ok(())
}

async fn reboot(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    if !restart_existing(state.runtime.as_ref(), &instance.sandbox_id, &disk_spec(state, instance)).await? {
        // It vanished behind ocaas's back: created again on the same storage.
        create_and_start(state, instance).await?;
    }
    wait_until_ready(state, instance, token).await?;
    record_version(state, instance).await;
    machine::apply(&state.db, instance.id, Op::Rebooted).await.map_err(|e| DriveError::Failed(e.to_string()))?;
    Ok(())
}

/// Restarts the sandbox's container; `false` when it no longer exists.
async fn restart_existing(runtime: &dyn Runtime, name: &str, disk: &DiskSpec) -> Result<bool, RuntimeError> {
    // After a host restart the storage is no longer mounted: mount it before the container starts.
    runtime.prepare_storage(disk).await?;
    match runtime.restart(name, STOP_GRACE_SECS).await {
        Ok(()) => Ok(true),
        Err(RuntimeError::NotFound(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

async fn stop(state: &AppState, instance: &InstanceRow) -> Result<(), DriveError> {
    stop_container(state, &instance.sandbox_id).await?;
    machine::apply(&state.db, instance.id, Op::Stopped).await.map_err(|e| DriveError::Failed(e.to_string()))?;
    Ok(())
}

/// Removes the container and its storage, then the row.
pub async fn remove(state: &AppState, instance: &InstanceRow) -> Result<(), DriveError> {
    state.runtime.remove_sandbox(&instance.sandbox_id, &disk_spec(state, instance)).await?;
    crate::snapshots::service::delete_all_of(state, instance.id).await.map_err(|e| DriveError::Failed(format!("{e:#}")))?;
    repo::delete(&state.db, instance.id).await.map_err(|e| DriveError::Failed(e.to_string()))?;
    state.activity.forget(instance.id);
    state.drivers.forget(instance.id);
    Ok(())
}

/// Polls the gateway's `/readyz` until it answers 200, the container dies, or the timeout.
async fn wait_until_ready(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    let deadline = Instant::now() + state.settings.instances.ready_timeout;
    loop {
        if token.is_cancelled() {
            return Err(DriveError::Cancelled);
        }
        let info = state.runtime.inspect(&instance.sandbox_id).await?;
        if !info.running && info.state != "created" && info.state != "restarting" {
            let code = info.exit_code.map(|c| format!(" with code {c}")).unwrap_or_default();
            return Err(DriveError::Failed(format!("the sandbox container exited{code} before its gateway was ready")));
        }
        if info.running && crate::runtime::dial::gateway_ready(state.runtime.as_ref(), &instance.sandbox_id).await {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(DriveError::Failed(format!(
                "the gateway did not become ready within {} s",
                state.settings.instances.ready_timeout.as_secs()
            )));
        }
        tokio::select! {
            () = token.cancelled() => return Err(DriveError::Cancelled),
            // Often: every poll interval is time a user waits for a fresh instance.
            () = tokio::time::sleep(READY_POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::memory::MemoryRuntime;

    fn disk(name: &str) -> DiskSpec {
        DiskSpec::new(std::path::Path::new("/nonexistent"), name, 0)
    }

    #[tokio::test]
    async fn reboot_restarts_an_existing_sandbox_on_its_mounted_storage() {
        let runtime = MemoryRuntime::default().with_container("sandy-a", "exited", &[]);
        assert!(restart_existing(&runtime, "sandy-a", &disk("sandy-a")).await.unwrap());
        assert_eq!(*runtime.calls.lock().unwrap(), ["restart sandy-a"]);
        assert_eq!(runtime.state_of("sandy-a").as_deref(), Some("running"));
        assert_eq!(*runtime.disks.lock().unwrap(), [std::path::PathBuf::from("/nonexistent/sandy-a")], "storage prepared first");
    }

    #[tokio::test]
    async fn reboot_reports_a_sandbox_that_vanished_so_it_is_created_again() {
        let runtime = MemoryRuntime::default();
        assert!(!restart_existing(&runtime, "sandy-b", &disk("sandy-b")).await.unwrap());
        assert_eq!(*runtime.calls.lock().unwrap(), ["restart sandy-b"]);
    }
}
