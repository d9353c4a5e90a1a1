//! HTTP handlers of the agent's status, feed, configuration, restart and doctor.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::audit::models::AuditAction;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ClientAddr};
use crate::gateway::feed::{self, AgentFeedEvent, FeedReady};
use crate::gateway::models::*;
use crate::gateway::repo::agent as repo;
use crate::gateway::{Link, config, ops, rpc};
use crate::instances::extract::{OwnedInstance, RunningInstance};
use crate::instances::models::InstanceStatus;
use crate::sse::{EventStream, to_sse};
use crate::state::{AppState, SlotKind};

/// The agent at a glance
///
/// Why the idle policy leaves the instance awake (if it does), its next scheduled run, its
/// connected channels and its pending approval requests. Read from what ocaas last heard
/// from the gateway; the instance is not woken.
#[utoipa::path(get, path = "/api/instances/{instanceId}/agent", tag = "agent", operation_id = "get_agent_status", params(OwnedInstance),
    responses((status = 200, description = "The agent at a glance", body = AgentOverview), (status = 404, description = "`instance_not_found`", body = ErrorBody)))]
pub async fn status(State(state): State<AppState>, OwnedInstance { instance, .. }: OwnedInstance) -> AppResult<Json<AgentOverview>> {
    let wakeup = repo::wakeup(&state.db, instance.id).await?;
    let (next_run_at, live_channels) = wakeup.map(|w| (w.next_run_at, w.live_channels)).unwrap_or_default();
    let settings = &state.settings.idle;
    let soon = next_run_at.is_some_and(|at| (at - Utc::now()).to_std().unwrap_or_default() <= settings.schedule_lead);
    let pause_after = settings.pause_after;
    let used = state.activity.is_busy(instance.id)
        || state.activity.last(instance.id).unwrap_or(instance.last_active_at).max(instance.last_active_at) + pause_after > Utc::now();
    let awake_reason = match instance.status {
        InstanceStatus::Ready if instance.keep_awake => Some(AwakeReason::KeepAwake),
        InstanceStatus::Ready if soon => Some(AwakeReason::Schedule),
        InstanceStatus::Ready if settings.channels_awake && !live_channels.is_empty() => Some(AwakeReason::Channel),
        InstanceStatus::Ready if used => Some(AwakeReason::InUse),
        _ => None,
    };
    let pending_approvals = repo::pending_count(&state.db, instance.id).await?;
    Ok(Json(AgentOverview { awake_reason, next_run_at, live_channels, pending_approvals }))
}

/// Follow the agent's feed
///
/// Server-sent events: `ready` first, then `approval` (a request asked, and again when answered
/// or expired), `schedule_run` and `system_notification` (e.g. a configuration rolled back), each
/// with an `id:`; reconnect with `Last-Event-ID` to get what was missed. Without it, only new
/// entries are sent.
#[utoipa::path(get, path = "/api/instances/{instanceId}/agent/events", tag = "agent", operation_id = "follow_agent_events", params(OwnedInstance),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String,
            example = json!("event: ready\ndata: {\"instance_id\":\"0193b6c2-7d1e-7cc0-9f43-2b1f7e0c9a12\"}\n\n")),
        (status = 400, description = "A bad `Last-Event-ID`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's event streams are all open", body = ErrorBody),
    ))]
pub async fn events(State(state): State<AppState>, OwnedInstance { instance, user }: OwnedInstance, headers: HeaderMap) -> AppResult<EventStream> {
    let slot = state.user_slots.acquire(user.user_id, SlotKind::Stream)?;
    let cursor = match headers.get("last-event-id").map(|v| v.to_str().unwrap_or("").trim().parse::<i64>()) {
        Some(Ok(id)) if id >= 0 => id,
        Some(_) => return Err(AppError::new(ErrorCode::InvalidRequest, "`Last-Event-ID` must be an event id from this stream.")),
        None => repo::last_event(&state.db, instance.id).await?,
    };
    let notifications = state.agent_events.subscribe();
    let (sink, receiver) = mpsc::channel(64);
    sink.try_send(to_sse(&AgentFeedEvent::Ready(FeedReady { instance_id: instance.id }))).expect("a new channel has room");
    tokio::spawn(feed::follow(state.db.clone(), state.shutdown.clone(), instance.id, cursor, notifications, sink));
    Ok(crate::sse::response(receiver, (slot, state.metrics.stream_open("sse"))))
}

/// Read the agent's configuration
///
/// The gateway's `openclaw.json` with every secret redacted, its version (`hash`), whether it
/// is valid, and any patch on probation or automatic rollback.
#[utoipa::path(get, path = "/api/instances/{instanceId}/config", tag = "agent", operation_id = "get_config", params(OwnedInstance),
    responses(
        (status = 200, description = "The configuration, secrets redacted", body = GatewayConfig),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn get_config(State(state): State<AppState>, running: RunningInstance) -> AppResult<Json<GatewayConfig>> {
    Ok(Json(config::get(&Link::of(&state), &running.instance).await?))
}

/// Change the agent's configuration
///
/// The body is a JSON merge patch of `openclaw.json` (`null` removes a key; send
/// `"__OPENCLAW_REDACTED__"` to keep a secret). It is refused when it touches a key ocaas manages
/// (`gateway.auth`, `gateway.port`, `gateway.mode`, `models.providers.operator`) or when the
/// gateway's own schema rejects the result. `If-Match` with a `hash` applies it only to that
/// version. The configuration running before is kept: a gateway that is not ready again within
/// 45 s gets it back and restarts, and the agent feed says so (`system_notification`).
#[utoipa::path(patch, path = "/api/instances/{instanceId}/config", tag = "agent", operation_id = "patch_config", params(OwnedInstance),
    request_body(content = Object, description = "A JSON merge patch of openclaw.json"),
    responses(
        (status = 200, description = "The configuration as applied", body = GatewayConfig),
        (status = 400, description = "Bad JSON, or not an object", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 412, description = "`config_changed`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "`invalid_config` or `gateway_rejected`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn patch_config(
    State(state): State<AppState>,
    running: RunningInstance,
    client: ClientAddr,
    headers: HeaderMap,
    ApiJson(patch): ApiJson<Value>,
) -> AppResult<Json<GatewayConfig>> {
    let (link, instance) = (Link::of(&state), &running.instance);
    let if_match = match headers.get("if-match").map(|v| v.to_str()) {
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => return Err(AppError::new(ErrorCode::InvalidRequest, "`If-Match` must be a `hash` from GET …/config.")),
        None => None,
    };
    let disk = crate::instances::lifecycle::disk_spec(&state, instance);
    let patched = config::patch(&link, &disk, instance, &patch, if_match).await?;
    crate::audit::record_action(&state.db, AuditAction::ConfigPatched, &running.user, client.as_deref(), Some(instance.id.to_string())).await?;
    if !patched.restart {
        return Ok(Json(config::get(&link, instance).await?));
    }
    // The gateway restarts to apply it: its version is known once it is back.
    let facts = crate::gateway::repo::config_facts(&state.db, instance.id).await?;
    Ok(Json(GatewayConfig {
        config: patched.config,
        hash: String::new(),
        valid: true,
        issues: Vec::new(),
        rollback_deadline: facts.and_then(|f| f.pending_until),
        last_rollback: None,
    }))
}

/// The configuration's schema
///
/// The JSON Schema the gateway checks `openclaw.json` against (from the gateway itself).
#[utoipa::path(get, path = "/api/instances/{instanceId}/config/schema", tag = "agent", operation_id = "get_config_schema", params(OwnedInstance),
    responses(
        (status = 200, description = "A JSON Schema", body = Object),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn config_schema(State(state): State<AppState>, running: RunningInstance) -> AppResult<Json<Value>> {
    let answer = rpc::call(&Link::of(&state), &running.instance, "config.schema", serde_json::json!({})).await?;
    Ok(Json(answer.get("schema").cloned().unwrap_or(Value::Null)))
}

/// Restart the gateway
///
/// Restarts the agent's gateway in place (the desktop and files are untouched) and waits up to
/// 60 s for it to answer again.
#[utoipa::path(post, path = "/api/instances/{instanceId}/gateway/restart", tag = "agent", operation_id = "restart_gateway", params(OwnedInstance),
    responses(
        (status = 200, description = "The gateway after the restart", body = Restarted),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 422, description = "`gateway_rejected`", body = ErrorBody),
    ))]
pub async fn restart(State(state): State<AppState>, running: RunningInstance) -> AppResult<(StatusCode, Json<Restarted>)> {
    Ok((StatusCode::OK, Json(ops::restart(&Link::of(&state), &state.runtime, &running.instance).await?)))
}

/// Check the agent's setup
///
/// `openclaw doctor`'s findings about the configuration, as JSON.
#[utoipa::path(get, path = "/api/instances/{instanceId}/doctor", tag = "agent", operation_id = "run_doctor", params(OwnedInstance),
    responses(
        (status = 200, description = "The findings", body = Doctor),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 422, description = "`gateway_rejected`: the doctor itself failed", body = ErrorBody),
    ))]
pub async fn doctor(State(state): State<AppState>, running: RunningInstance) -> AppResult<Json<Doctor>> {
    Ok(Json(ops::doctor(&state.runtime, &running.instance).await?))
}
