//! Terminal access to an instance: one-shot commands (`terminal/exec`) and interactive
//! shells over a websocket (`terminal/ws`).

pub mod exec;
pub mod pty;
pub mod ws;

use axum::Json;
use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{AppResult, ErrorBody};
use crate::extract::ApiJson;
use crate::instances::extract::RunningInstance;
use crate::state::AppState;
use exec::{ExecCommand, ExecResult};

/// Execute one command
///
/// Runs `command` with `/bin/sh -lc` as the sandbox user in `cwd` (default `/workspace`) and
/// returns its output and exit code. On `timeout_ms` the command's whole process group is
/// killed and `timed_out` is true. Each stream is capped at `OCAAS_EXEC_MAX_OUTPUT` bytes
/// (`truncated`); output that is not UTF-8 is returned with replacement characters.
#[utoipa::path(post, path = "/api/instances/{instanceId}/terminal/exec", tag = "terminal",
    params(RunningInstance),
    request_body = ExecCommand,
    responses(
        (status = 200, description = "The command ran (whatever its exit code)", body = ExecResult),
        (status = 400, description = "Bad JSON, `invalid_path`, `invalid_cwd` or a bad timeout/env", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's commands are all running", body = ErrorBody),
    ))]
pub async fn exec_command(
    State(state): State<AppState>,
    RunningInstance { instance, user, .. }: RunningInstance,
    ApiJson(body): ApiJson<ExecCommand>,
) -> AppResult<Json<ExecResult>> {
    let _slot = state.user_slots.acquire(user.user_id, crate::state::SlotKind::Exec)?;
    Ok(Json(exec::run(state.runtime.clone(), state.settings.instances.exec_max_output, &instance.sandbox_id, body).await?))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(exec_command)).routes(routes!(ws::terminal_ws))
}
