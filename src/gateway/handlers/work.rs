//! HTTP handlers of the agent's schedules, approval requests and tool policy.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::audit::models::AuditAction;
use crate::error::{AppResult, ErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, ClientAddr};
use crate::gateway::models::*;
use crate::gateway::repo::agent as repo;
use crate::gateway::{Link, approvals, schedules};
use crate::instances::extract::{OwnedInstance, RunningInstance};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case)]
pub struct SchedulePath {
    /// Instance id
    #[allow(dead_code)]
    instanceId: uuid::Uuid,
    /// Schedule id
    scheduleId: String,
}

/// List schedules
///
/// The agent's schedules (its gateway's cron jobs that send it a message), with their next and
/// last runs.
#[utoipa::path(get, path = "/api/instances/{instanceId}/schedules", tag = "agent", operation_id = "list_schedules", params(OwnedInstance),
    responses(
        (status = 200, description = "The schedule list", body = [Schedule]),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn list_schedules(State(state): State<AppState>, running: RunningInstance) -> AppResult<Json<Vec<Schedule>>> {
    Ok(Json(schedules::list(&Link::of(&state), &running.instance).await?))
}

/// Create a schedule
///
/// `name`, `message` (what the agent is told) and either `cron` (five fields, UTC) or `at` (an
/// RFC 3339 time, once). The answer lands in the chat history of the agent's main session. A
/// paused instance is woken ahead of each run (`OCAAS_SCHEDULE_WAKE_LEAD`).
#[utoipa::path(post, path = "/api/instances/{instanceId}/schedules", tag = "agent", operation_id = "create_schedule", params(OwnedInstance),
    request_body = ScheduleInput,
    responses(
        (status = 201, description = "Created: the schedule", body = Schedule),
        (status = 400, description = "Bad JSON or fields", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "`gateway_rejected`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn create_schedule(
    State(state): State<AppState>,
    running: RunningInstance,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> AppResult<(StatusCode, Json<Schedule>)> {
    Ok((StatusCode::CREATED, Json(schedules::create(&Link::of(&state), &running.instance, &input).await?)))
}

/// Change a schedule
///
/// Any of `name`, `cron` or `at`, `message`, `enabled`.
#[utoipa::path(patch, path = "/api/instances/{instanceId}/schedules/{scheduleId}", tag = "agent", operation_id = "update_schedule", params(SchedulePath),
    request_body = ScheduleInput,
    responses(
        (status = 200, description = "The schedule", body = Schedule),
        (status = 400, description = "Bad JSON or fields", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `schedule_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "`gateway_rejected`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn update_schedule(
    State(state): State<AppState>,
    running: RunningInstance,
    ApiPath(path): ApiPath<SchedulePath>,
    ApiJson(input): ApiJson<ScheduleInput>,
) -> AppResult<Json<Schedule>> {
    if !crate::gateway::rpc::plain_id(&path.scheduleId) {
        return Err(crate::gateway::schedules::not_found());
    }
    Ok(Json(schedules::update(&Link::of(&state), &running.instance, &path.scheduleId, &input).await?))
}

/// Delete a schedule
///
/// The schedule stops; its past runs stay in the chat history.
#[utoipa::path(delete, path = "/api/instances/{instanceId}/schedules/{scheduleId}", tag = "agent", operation_id = "delete_schedule", params(SchedulePath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `schedule_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn delete_schedule(State(state): State<AppState>, running: RunningInstance, ApiPath(path): ApiPath<SchedulePath>) -> AppResult<StatusCode> {
    if !crate::gateway::rpc::plain_id(&path.scheduleId) {
        return Err(crate::gateway::schedules::not_found());
    }
    schedules::remove(&Link::of(&state), &running.instance, &path.scheduleId).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Run a schedule now
///
/// Starts a run at once (its answer lands in history like any run's).
#[utoipa::path(post, path = "/api/instances/{instanceId}/schedules/{scheduleId}/run", tag = "agent", operation_id = "run_schedule", params(SchedulePath),
    responses(
        (status = 202, description = "Started", body = RunStarted),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `schedule_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn run_schedule(
    State(state): State<AppState>,
    running: RunningInstance,
    ApiPath(path): ApiPath<SchedulePath>,
) -> AppResult<(StatusCode, Json<RunStarted>)> {
    if !crate::gateway::rpc::plain_id(&path.scheduleId) {
        return Err(crate::gateway::schedules::not_found());
    }
    let run_id = schedules::run_now(&Link::of(&state), &running.instance, &path.scheduleId).await?;
    Ok((StatusCode::ACCEPTED, Json(RunStarted { run_id })))
}

/// A schedule's runs
///
/// Its last 50 runs, newest first: outcome, when, how long, and the start of the answer.
#[utoipa::path(get, path = "/api/instances/{instanceId}/schedules/{scheduleId}/runs", tag = "agent", operation_id = "list_schedule_runs", params(SchedulePath),
    responses(
        (status = 200, description = "The schedule run list", body = [ScheduleRun]),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn schedule_runs(
    State(state): State<AppState>,
    running: RunningInstance,
    ApiPath(path): ApiPath<SchedulePath>,
) -> AppResult<Json<Vec<ScheduleRun>>> {
    if !crate::gateway::rpc::plain_id(&path.scheduleId) {
        return Err(crate::gateway::schedules::not_found());
    }
    Ok(Json(schedules::runs(&Link::of(&state), &running.instance, &path.scheduleId).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApprovalsQuery {
    /// `true`: only requests still waiting for an answer.
    pub pending: Option<bool>,
}

/// List approval requests
///
/// The agent's requests to run a command or a plugin action, newest first (at most 200).
#[utoipa::path(get, path = "/api/instances/{instanceId}/approvals", tag = "agent", operation_id = "list_approvals", params(OwnedInstance, ApprovalsQuery),
    responses(
        (status = 200, description = "The approval list", body = [Approval]),
        (status = 400, description = "A bad query", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn list_approvals(
    State(state): State<AppState>,
    OwnedInstance { instance, .. }: OwnedInstance,
    ApiQuery(q): ApiQuery<ApprovalsQuery>,
) -> AppResult<Json<Vec<Approval>>> {
    Ok(Json(repo::approvals(&state.db, instance.id, q.pending.unwrap_or(false)).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case)]
pub struct ApprovalPath {
    /// Instance id
    #[allow(dead_code)]
    instanceId: uuid::Uuid,
    /// Approval request id
    approvalId: String,
}

/// Answer an approval request
///
/// `allow_once`, `allow_always` (the same command runs without asking from now on) or `deny`.
#[utoipa::path(post, path = "/api/instances/{instanceId}/approvals/{approvalId}", tag = "agent", operation_id = "resolve_approval", params(ApprovalPath),
    request_body = ApprovalAnswer,
    responses(
        (status = 200, description = "The approval", body = Approval),
        (status = 400, description = "Bad JSON or decision", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `approval_not_found`", body = ErrorBody),
        (status = 409, description = "`approval_closed`, `instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn resolve_approval(
    State(state): State<AppState>,
    running: RunningInstance,
    client: ClientAddr,
    ApiPath(path): ApiPath<ApprovalPath>,
    ApiJson(answer): ApiJson<ApprovalAnswer>,
) -> AppResult<Json<Approval>> {
    if !crate::gateway::rpc::plain_id(&path.approvalId) {
        return Err(crate::error::AppError::new(crate::error::ErrorCode::ApprovalNotFound, "The agent has no approval request with that id."));
    }
    let approval = approvals::resolve(&Link::of(&state), &running.instance, &path.approvalId, answer.decision).await?;
    let target = format!("{} {} {}", running.instance.id, path.approvalId.chars().take(64).collect::<String>(), answer.decision);
    crate::audit::record_action(&state.db, AuditAction::ApprovalResolved, &running.user, client.as_deref(), Some(target)).await?;
    Ok(Json(approval))
}

/// Read the tool policy
///
/// What the agent may do without asking, per tool family.
#[utoipa::path(get, path = "/api/instances/{instanceId}/tool-policy", tag = "agent", operation_id = "get_tool_policy", params(OwnedInstance),
    responses(
        (status = 200, description = "The tool policy", body = ToolPolicy),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn get_tool_policy(State(state): State<AppState>, running: RunningInstance) -> AppResult<Json<ToolPolicy>> {
    Ok(Json(approvals::policy(&Link::of(&state), &running.instance).await?))
}

/// Set the tool policy
///
/// `exec`: `allow`, `ask` (every command becomes an approval request) or `deny`; `web` and
/// `browser`: `allow` or `deny`. Written into the gateway's configuration (a checked patch).
#[utoipa::path(put, path = "/api/instances/{instanceId}/tool-policy", tag = "agent", operation_id = "set_tool_policy", params(OwnedInstance),
    request_body = ToolPolicy,
    responses(
        (status = 200, description = "The tool policy", body = ToolPolicy),
        (status = 400, description = "Bad JSON or modes", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "`invalid_config` or `gateway_rejected`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn set_tool_policy(
    State(state): State<AppState>,
    running: RunningInstance,
    ApiJson(policy): ApiJson<ToolPolicy>,
) -> AppResult<Json<ToolPolicy>> {
    let disk = crate::instances::lifecycle::disk_spec(&state, &running.instance);
    Ok(Json(approvals::set_policy(&Link::of(&state), &disk, &running.instance, &policy).await?))
}
