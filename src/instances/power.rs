//! Pause, resume and wake on use. Pausing freezes the sandbox in the engine (its processes
//! keep their memory, get no CPU) and takes a few milliseconds either way, so it happens in
//! the request, under the instance's lock. A call that needs the instance running wakes it:
//! a paused one is resumed on the spot; a stopped one is started (chat and the websockets
//! wait for it, up to the ready timeout) or refused with 409 `instance_stopped`.

use std::time::{Duration, Instant};

use super::lifecycle;
use super::machine::{self, Op};
use super::models::InstanceStatus;
use super::repo::{self, Guard, InstanceRow};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

/// How long a pause waits for commands and file operations in progress.
const CALLS_GRACE: Duration = Duration::from_secs(5);

/// Freezes a `ready` instance (`Op::Pause` by its user, `Op::IdlePause` by the policy, which
/// guards it with what it saw), once no command or file operation is working in it (else 409:
/// freezing would hang them).
pub async fn pause(state: &AppState, instance: &InstanceRow, op: Op, guard: Guard) -> AppResult<InstanceRow> {
    let _held = state.drivers.hold(instance.id).await;
    if !state.activity.freeze(instance.id, CALLS_GRACE).await {
        return Err(AppError::new(ErrorCode::InvalidState, "Commands or file operations are running in the instance; pause it when they are done."));
    }
    let paused = machine::apply_guarded(&state.db, instance.id, op, guard).await;
    let engine = match &paused {
        Ok(Some(_)) => Some(state.runtime.pause(&instance.sandbox_id).await),
        _ => None,
    };
    state.activity.thaw(instance.id);
    let Some(paused) = paused? else {
        return Err(machine::refusal(&current(state, instance).await?, op));
    };
    if let Some(Err(error)) = engine {
        let message = format!("pausing the sandbox failed: {error}");
        return Err(fail(state, &paused, &message).await);
    }
    Ok(paused)
}

/// Thaws a `paused` instance (`Op::Resume` or `Op::WakePaused`).
pub async fn resume(state: &AppState, instance: &InstanceRow, op: Op) -> AppResult<InstanceRow> {
    let _held = state.drivers.hold(instance.id).await;
    let Some(resumed) = machine::apply(&state.db, instance.id, op).await? else {
        return Err(machine::refusal(&current(state, instance).await?, op));
    };
    state.activity.touch(instance.id);
    if let Err(error) = state.runtime.unpause(&instance.sandbox_id).await {
        let message = format!("resuming the sandbox failed: {error}");
        return Err(fail(state, &resumed, &message).await);
    }
    Ok(resumed)
}

/// The engine refused: the instance is `error` with the reason, and the caller hears it.
async fn fail(state: &AppState, instance: &InstanceRow, message: &str) -> AppError {
    tracing::warn!(id = %instance.id, %message, "instance power change failed");
    if let Err(error) = machine::apply_with_error(&state.db, instance.id, Op::Died, Some(message)).await {
        return error.into();
    }
    AppError::new(ErrorCode::InvalidState, format!("The instance could not change state ({message}); reboot it."))
}

async fn current(state: &AppState, instance: &InstanceRow) -> AppResult<InstanceRow> {
    Ok(repo::get(&state.db, instance.id).await?.unwrap_or_else(|| instance.clone()))
}

/// How far a call goes to get a running instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Resume a paused instance; a stopped one is refused (files, commands).
    Resume,
    /// Also start a stopped one and wait until it is ready (chat, terminal, desktop).
    Start,
}

/// The instance, `ready` — woken up if it was paused (or stopped, with `Wake::Start`) and
/// `OCAAS_WAKE_ON_USE` is on. Counts as use of the instance.
pub async fn awake(state: &AppState, instance: InstanceRow, wake: Wake) -> AppResult<InstanceRow> {
    state.activity.touch(instance.id);
    let on = state.settings.idle.wake_on_use;
    match instance.status {
        InstanceStatus::Ready => Ok(instance),
        InstanceStatus::Paused if on => match resume(state, &instance, Op::WakePaused).await {
            // Resumed by a concurrent call in the meantime: fine.
            Err(error) => Some(current(state, &instance).await?).filter(|now| now.status == InstanceStatus::Ready).ok_or(error),
            resumed => resumed,
        },
        InstanceStatus::Stopped | InstanceStatus::Provisioning if on && wake == Wake::Start => start_and_wait(state, &instance).await,
        InstanceStatus::Stopped => Err(stopped(&instance, on)),
        _ => Err(super::extract::not_ready(&instance)),
    }
}

/// Whether a call would have to start the instance (and wait for it): SSE callers are told.
pub fn needs_start(state: &AppState, instance: &InstanceRow) -> bool {
    state.settings.idle.wake_on_use && matches!(instance.status, InstanceStatus::Stopped | InstanceStatus::Provisioning)
}

fn stopped(instance: &InstanceRow, wake_on_use: bool) -> AppError {
    let hint = if wake_on_use { "chat, the terminal and the desktop start it by themselves; " } else { "" };
    AppError::new(ErrorCode::InstanceStopped, format!("The instance is stopped; {hint}start it with POST /api/instances/{}/start.", instance.id))
}

/// Starts a stopped instance (or joins a start under way) and waits until it is `ready`.
async fn start_and_wait(state: &AppState, instance: &InstanceRow) -> AppResult<InstanceRow> {
    if instance.status == InstanceStatus::Stopped && machine::apply(&state.db, instance.id, Op::WakeStopped).await?.is_some() {
        lifecycle::spawn_drive(state, instance.id);
    }
    let deadline = Instant::now() + state.settings.instances.ready_timeout + Duration::from_secs(5);
    loop {
        let now = current(state, instance).await?;
        match now.status {
            InstanceStatus::Ready => return Ok(now),
            InstanceStatus::Provisioning if Instant::now() < deadline => {}
            _ => return Err(super::extract::not_ready(&now)),
        }
        tokio::select! {
            () = state.shutdown.cancelled() => return Err(super::extract::not_ready(&now)),
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}
