//! HTTP handlers of the agent's messaging channels and DM pairings.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::audit::models::AuditAction;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery, ClientAddr};
use crate::gateway::models::*;
use crate::gateway::{Link, channels};
use crate::instances::extract::{OwnedInstance, RunningInstance};
use crate::state::AppState;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case)]
pub struct KindPath {
    /// Instance id
    #[allow(dead_code)]
    instanceId: uuid::Uuid,
    /// `telegram`, `discord`, `slack` or `whatsapp`.
    #[param(value_type = ChannelKind)]
    kind: String,
}

fn kind(raw: &str) -> AppResult<ChannelKind> {
    ChannelKind::parse(raw).ok_or_else(|| AppError::new(ErrorCode::InvalidRequest, "The channel is one of telegram, discord, slack, whatsapp."))
}

/// List the agent's channels
///
/// Every channel ocaas can connect, as the gateway reports it, and whether a token is stored.
#[utoipa::path(get, path = "/api/instances/{instanceId}/channels", tag = "agent", operation_id = "list_channels", params(OwnedInstance),
    responses(
        (status = 200, description = "The channel list", body = [Channel]),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, running: RunningInstance) -> AppResult<Json<Vec<Channel>>> {
    Ok(Json(channels::list(&Link::of(&state), &running.instance).await?))
}

/// Connect a token channel
///
/// Telegram and Discord take `bot_token`, Slack `bot_token` and `app_token` (socket mode). The
/// token is written into the gateway's configuration (the same checked patch as
/// `PATCH …/config`) and kept sealed on the server; it is never returned (`token_set` says it
/// is there). `dm_policy` defaults to `pairing`: strangers who write get a code to approve.
#[utoipa::path(put, path = "/api/instances/{instanceId}/channels/{kind}", tag = "agent", operation_id = "set_channel", params(KindPath), request_body = ChannelTokens,
    responses(
        (status = 200, description = "The channel", body = Channel),
        (status = 400, description = "Bad JSON, an unknown channel or a bad token", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 422, description = "`invalid_config` or `gateway_rejected`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn set(
    State(state): State<AppState>,
    running: RunningInstance,
    client: ClientAddr,
    ApiPath(path): ApiPath<KindPath>,
    ApiJson(tokens): ApiJson<ChannelTokens>,
) -> AppResult<Json<Channel>> {
    let kind = kind(&path.kind)?;
    let disk = crate::instances::lifecycle::disk_spec(&state, &running.instance);
    let channel = channels::set(&Link::of(&state), &disk, &running.instance, kind, &tokens).await?;
    let target = format!("{} {}", running.instance.id, kind);
    crate::audit::record_action(&state.db, AuditAction::ChannelSet, &running.user, client.as_deref(), Some(target)).await?;
    Ok(Json(channel))
}

/// Disconnect a channel
///
/// Removes its token from the configuration and the server, and logs it out (WhatsApp: unlinks).
#[utoipa::path(delete, path = "/api/instances/{instanceId}/channels/{kind}", tag = "agent", operation_id = "remove_channel", params(KindPath),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 400, description = "An unknown channel", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 422, description = "`invalid_config` or `gateway_rejected`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn remove(
    State(state): State<AppState>,
    running: RunningInstance,
    client: ClientAddr,
    ApiPath(path): ApiPath<KindPath>,
) -> AppResult<StatusCode> {
    let kind = kind(&path.kind)?;
    let disk = crate::instances::lifecycle::disk_spec(&state, &running.instance);
    channels::remove(&Link::of(&state), &disk, &running.instance, kind).await?;
    let target = format!("{} {}", running.instance.id, kind);
    crate::audit::record_action(&state.db, AuditAction::ChannelRemoved, &running.user, client.as_deref(), Some(target)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginStart {
    /// Make a new QR code even when one is linked already.
    #[serde(default)]
    pub force: bool,
}

/// Start a QR login (WhatsApp)
///
/// Answers the QR code to scan with the phone (WhatsApp → Linked devices), as a PNG data URL.
#[utoipa::path(post, path = "/api/instances/{instanceId}/channels/{kind}/login", tag = "agent", operation_id = "start_channel_login", params(KindPath),
    request_body(content = LoginStart, description = "Optional"),
    responses(
        (status = 200, description = "The QR login", body = QrLogin),
        (status = 400, description = "Not a QR channel", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    running: RunningInstance,
    ApiPath(path): ApiPath<KindPath>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<LoginStart>,
) -> AppResult<Json<QrLogin>> {
    Ok(Json(channels::login_start(&Link::of(&state), &running.instance, kind(&path.kind)?, body.force).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// How long to wait for the scan, 0 to 20,000 ms (default 10,000); longer is cut to 20,000.
    #[param(maximum = 20000)]
    pub timeout_ms: Option<u64>,
}

/// Wait for the QR code's scan
///
/// Answers when the phone is linked (`connected`) or the wait is over (with the QR code still to
/// scan, possibly a new one).
#[utoipa::path(get, path = "/api/instances/{instanceId}/channels/{kind}/login", tag = "agent", operation_id = "wait_channel_login", params(KindPath, WaitQuery),
    responses(
        (status = 200, description = "The QR login", body = QrLogin),
        (status = 400, description = "Not a QR channel, or a bad `timeout_ms`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn login_wait(
    State(state): State<AppState>,
    running: RunningInstance,
    ApiPath(path): ApiPath<KindPath>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> AppResult<Json<QrLogin>> {
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(10_000).min(20_000));
    Ok(Json(channels::login_wait(&Link::of(&state), &running.instance, kind(&path.kind)?, timeout).await?))
}

/// List pending DM pairings
///
/// People who wrote to the agent on a channel under `dm_policy: pairing` and wait to be let in.
#[utoipa::path(get, path = "/api/instances/{instanceId}/pairings", tag = "agent", operation_id = "list_pairings", params(OwnedInstance),
    responses(
        (status = 200, description = "The pairing list", body = [Pairing]),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn pairings(State(state): State<AppState>, running: RunningInstance) -> AppResult<Json<Vec<Pairing>>> {
    Ok(Json(channels::pairings(&Link::of(&state), &running.instance).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case)]
pub struct PairingPath {
    /// Instance id
    #[allow(dead_code)]
    instanceId: uuid::Uuid,
    /// Pairing request id
    pairingId: String,
}

/// Answer a DM pairing
///
/// `approve: true` lets the sender talk to the agent; `false` dismisses the request.
#[utoipa::path(post, path = "/api/instances/{instanceId}/pairings/{pairingId}", tag = "agent", operation_id = "answer_pairing", params(PairingPath), request_body = PairingAnswer,
    responses(
        (status = 204, description = "Answered"),
        (status = 400, description = "Bad JSON", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `pairing_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `instance_stopped`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 503, description = "`gateway_unavailable`", body = ErrorBody),
    ))]
pub async fn answer_pairing(
    State(state): State<AppState>,
    running: RunningInstance,
    ApiPath(path): ApiPath<PairingPath>,
    ApiJson(answer): ApiJson<PairingAnswer>,
) -> AppResult<StatusCode> {
    if !crate::gateway::rpc::plain_id(&path.pairingId) {
        return Err(AppError::new(ErrorCode::PairingNotFound, "No pending DM pairing request with that id."));
    }
    channels::answer_pairing(&Link::of(&state), &running.instance, &path.pairingId, answer.approve).await?;
    Ok(StatusCode::NO_CONTENT)
}
