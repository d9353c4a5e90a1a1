//! Background work that moves an instance through its states: provisioning → ready,
//! rebooting → ready, stopping → stopped, deleting → gone. One driver per instance at a time
//! in this process (a newer operation cancels the older one); the reconciler restarts drivers
//! for instances left mid-way by a previous process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::models::InstanceStatus;
use super::repo::{self, InstanceRow};
use crate::app::AppState;
use crate::runtime::{
    LABEL_DEPLOYMENT, LABEL_INSTANCE, LABEL_MANAGED, LABEL_USER, RuntimeError, SandboxSpec,
};

pub const GATEWAY_PORT: u16 = 18789;
const STOP_GRACE_SECS: i32 = 10;

#[derive(Default)]
pub struct Drivers {
    running: Mutex<HashMap<Uuid, (u64, CancellationToken)>>,
    next_generation: std::sync::atomic::AtomicU64,
}

impl Drivers {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (u64, CancellationToken)>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self, id: Uuid, parent: &CancellationToken) -> (u64, CancellationToken) {
        let generation = self.next_generation.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let token = parent.child_token();
        if let Some((_, previous)) = self.lock().insert(id, (generation, token.clone())) {
            previous.cancel();
        }
        (generation, token)
    }

    fn end(&self, id: Uuid, generation: u64) {
        let mut running = self.lock();
        if running.get(&id).is_some_and(|(current, _)| *current == generation) {
            running.remove(&id);
        }
    }

    pub fn cancel(&self, id: Uuid) {
        if let Some((_, token)) = self.lock().remove(&id) {
            token.cancel();
        }
    }

    pub fn is_driving(&self, id: Uuid) -> bool {
        self.lock().contains_key(&id)
    }
}

pub fn workspace_volume(sandbox_id: &str) -> String {
    format!("ocaas-ws-{sandbox_id}")
}

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
    let status = instance.status();
    let outcome = match status {
        InstanceStatus::Provisioning => provision(state, &instance, token).await,
        InstanceStatus::Rebooting => reboot(state, &instance, token).await,
        InstanceStatus::Stopping => stop(state, &instance).await,
        InstanceStatus::Deleting => remove(state, &instance).await,
        _ => return,
    };
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
    let mut env = vec![format!("OPENCLAW_GATEWAY_TOKEN={}", instance.gateway_token)];
    env.extend(settings.llm_env.iter().cloned());
    SandboxSpec {
        name: instance.sandbox_id.clone(),
        image: instance.image.clone(),
        workspace_volume: workspace_volume(&instance.sandbox_id),
        labels,
        env,
        limits: settings.limits,
    }
}

async fn provision(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    let runtime = &state.runtime;
    runtime.ensure_network().await?;
    runtime.create_sandbox(&sandbox_spec(state, instance)).await?;
    runtime.start(&instance.sandbox_id).await?;
    wait_until_ready(state, instance, token).await?;
    repo::transition(&state.db, instance.id, &[InstanceStatus::Provisioning], InstanceStatus::Ready, None)
        .await
        .map_err(|e| DriveError::Failed(e.to_string()))?;
    Ok(())
}

async fn reboot(state: &AppState, instance: &InstanceRow, token: &CancellationToken) -> Result<(), DriveError> {
    match state.runtime.restart(&instance.sandbox_id, STOP_GRACE_SECS).await {
        Err(RuntimeError::NotFound(_)) => {
            state.runtime.ensure_network().await?;
            state.runtime.create_sandbox(&sandbox_spec(state, instance)).await?;
            state.runtime.start(&instance.sandbox_id).await?;
        }
        other => other?,
    }
    wait_until_ready(state, instance, token).await?;
    repo::transition(&state.db, instance.id, &[InstanceStatus::Rebooting], InstanceStatus::Ready, None)
        .await
        .map_err(|e| DriveError::Failed(e.to_string()))?;
    Ok(())
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
    state.runtime.remove_sandbox(&instance.sandbox_id, &workspace_volume(&instance.sandbox_id)).await?;
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
