//! Background work that moves an instance through its states: provisioning → ready,
//! rebooting → ready, stopping → stopped, deleting → gone. One driver per instance at a time
//! in this process (a newer operation cancels the older one); the reconciler restarts drivers
//! for instances left mid-way by a previous process.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::models::InstanceStatus;
use super::repo::{self, InstanceRow};
use crate::runtime::disk::DiskSpec;
use crate::runtime::egress::EgressPolicy;
use crate::runtime::sandbox::{GATEWAY_PORT, HOME_DIR, STATE_DIR};
use crate::runtime::{LABEL_DEPLOYMENT, LABEL_INSTANCE, LABEL_MANAGED, LABEL_USER, Runtime, RuntimeError, SandboxSpec};
use crate::state::AppState;

const STOP_GRACE_SECS: i32 = 10;

/// Starts the background work the instance's current status calls for.
pub fn spawn_drive(state: &AppState, id: Uuid) {
    let (generation, token) = state.drivers.begin(id, &state.shutdown);
    let state = state.clone();
    tokio::spawn(async move {
        drive(&state, id, &token).await;
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
                let _ = repo::transition(&state.db, id, &[status], InstanceStatus::Error, Some(&message)).await;
            }
        }
    }
}

pub fn sandbox_spec(state: &AppState, instance: &InstanceRow) -> SandboxSpec {
    let settings = &state.settings.instances;
    let labels = HashMap::from([
        (LABEL_MANAGED.to_owned(), "true".to_owned()),
        (LABEL_DEPLOYMENT.to_owned(), state.deployment_id.to_string()),
        (LABEL_INSTANCE.to_owned(), instance.id.to_string()),
        (LABEL_USER.to_owned(), instance.user_id.to_string()),
    ]);
    // Only this instance's own credentials and non-secret settings: never an operator secret.
    let mut env = vec![
        format!("OPENCLAW_GATEWAY_TOKEN={}", instance.gateway_token),
        format!("OCAAS_VNC_PASSWORD={}", crate::runtime::sandbox::vnc_password(&instance.gateway_token)),
        format!("HOME={HOME_DIR}"),
        format!("OCAAS_STATE_DIR={STATE_DIR}"),
    ];
    env.extend(settings.llm.sandbox_env());
    SandboxSpec {
        name: instance.sandbox_id.clone(),
        image: instance.image.clone(),
        disk: disk_spec(state, &instance.sandbox_id),
        labels,
        env,
        limits: settings.limits,
    }
}

/// Where the instance's storage lives on the host, with the server's quota.
pub fn disk_spec(state: &AppState, sandbox_id: &str) -> DiskSpec {
    DiskSpec::new(&state.settings.instances.disk_root, sandbox_id, state.settings.instances.disk_quota_bytes)
}

async fn provision(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    let runtime = &state.runtime;
    runtime.ensure_network(&state.settings.instances.egress).await?;
    runtime.create_sandbox(&sandbox_spec(state, instance)).await?;
    runtime.start(&instance.sandbox_id).await?;
    wait_until_ready(state, instance, token).await?;
    repo::transition(&state.db, instance.id, &[InstanceStatus::Provisioning], InstanceStatus::Ready, None)
        .await
        .map_err(|e| DriveError::Failed(e.to_string()))?;
    Ok(())
}

async fn reboot(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    restart_or_recreate(state.runtime.as_ref(), &sandbox_spec(state, instance), &state.settings.instances.egress).await?;
    wait_until_ready(state, instance, token).await?;
    repo::transition(&state.db, instance.id, &[InstanceStatus::Rebooting], InstanceStatus::Ready, None)
        .await
        .map_err(|e| DriveError::Failed(e.to_string()))?;
    Ok(())
}

/// Restarts the sandbox; one that vanished behind ocaas's back is created again (its storage,
/// on the host, is reused).
async fn restart_or_recreate(runtime: &dyn Runtime, spec: &SandboxSpec, egress: &EgressPolicy) -> Result<(), RuntimeError> {
    // After a host restart the storage is no longer mounted: mount it before the container starts.
    runtime.prepare_storage(&spec.disk).await?;
    match runtime.restart(&spec.name, STOP_GRACE_SECS).await {
        Err(RuntimeError::NotFound(_)) => {
            runtime.ensure_network(egress).await?;
            runtime.create_sandbox(spec).await?;
            runtime.start(&spec.name).await
        }
        other => other,
    }
}

async fn stop(state: &AppState, instance: &InstanceRow) -> Result<(), DriveError> {
    match state.runtime.stop(&instance.sandbox_id, STOP_GRACE_SECS).await {
        Ok(()) | Err(RuntimeError::NotFound(_)) => {}
        Err(error) => return Err(error.into()),
    }
    repo::transition(&state.db, instance.id, &[InstanceStatus::Stopping], InstanceStatus::Stopped, None)
        .await
        .map_err(|e| DriveError::Failed(e.to_string()))?;
    Ok(())
}

/// Removes the container and its workspace, then the row.
pub async fn remove(state: &AppState, instance: &InstanceRow) -> Result<(), DriveError> {
    state.runtime.remove_sandbox(&instance.sandbox_id, &disk_spec(state, &instance.sandbox_id)).await?;
    repo::delete(&state.db, instance.id).await.map_err(|e| DriveError::Failed(e.to_string()))
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
        if let Some(ip) = info.ip
            && gateway_ready(&state.http, ip).await
        {
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
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

pub async fn gateway_ready(http: &reqwest::Client, ip: std::net::IpAddr) -> bool {
    let url = format!("http://{}/readyz", std::net::SocketAddr::new(ip, GATEWAY_PORT));
    matches!(http.get(url).timeout(Duration::from_secs(2)).send().await, Ok(r) if r.status().is_success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::memory::MemoryRuntime;

    fn spec(name: &str) -> SandboxSpec {
        let limits = crate::runtime::Limits { memory_bytes: 1, nano_cpus: 1, pids: 1, log_bytes: 1 };
        let disk = DiskSpec::new(std::path::Path::new("/nonexistent"), name, 0);
        SandboxSpec { name: name.into(), image: "img".into(), disk, labels: HashMap::new(), env: vec![], limits }
    }

    #[tokio::test]
    async fn reboot_restarts_an_existing_sandbox_without_recreating_it() {
        let runtime = MemoryRuntime::default().with_container("sandy-a", "exited", &[]);
        restart_or_recreate(&runtime, &spec("sandy-a"), &EgressPolicy::default()).await.unwrap();
        assert_eq!(*runtime.calls.lock().unwrap(), ["restart sandy-a"]);
        assert_eq!(runtime.state_of("sandy-a").as_deref(), Some("running"));
    }

    #[tokio::test]
    async fn reboot_recreates_a_sandbox_that_vanished() {
        let runtime = MemoryRuntime::default();
        restart_or_recreate(&runtime, &spec("sandy-b"), &EgressPolicy::default()).await.unwrap();
        assert_eq!(*runtime.calls.lock().unwrap(), ["restart sandy-b", "create sandy-b", "start sandy-b"]);
        assert_eq!(runtime.state_of("sandy-b").as_deref(), Some("running"));
        assert_eq!(*runtime.disks.lock().unwrap(), [std::path::PathBuf::from("/nonexistent/sandy-b")]);
    }
}
