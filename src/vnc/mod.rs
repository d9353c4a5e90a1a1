//! The instance's desktop: `vnc-url` hands out a ticket and the URLs of the desktop page and
//! websocket; `vnc/ws` bridges a websocket to the sandbox's VNC server (RFB on port 5900),
//! answering its password itself (`rfb`).

pub mod rfb; // public for the benchmark's direct connection

use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::tickets;
use crate::auth::ws::DesktopCaller;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{PublicOrigin, ws_origin};
use crate::instances::extract::{Intent, RunningInstance, running};
use crate::instances::power::Wake;
use crate::runtime::dial::Tunnel;
use crate::runtime::sandbox::VNC_PORT;
use crate::state::AppState;
use crate::wsbridge::{self, Upstream, WsUpgrade};

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "url": "https://ocaas.example.com/desktop/0193b6c2-7d1e-7cc0-9f43-2b1f7e0c9a11#ticket=q9Xn…",
    "ws_url": "wss://ocaas.example.com/api/instances/0193b6c2-7d1e-7cc0-9f43-2b1f7e0c9a11/vnc/ws?ticket=q9Xn…",
    "expires_at": "2026-11-26T12:00:60Z"}))]
pub struct VncUrl {
    /// This server's desktop page (noVNC), already holding the ticket: open it in a browser.
    pub url: String,
    /// The websocket to connect a VNC client to directly (`wss` when the origin is https).
    pub ws_url: String,
    /// The ticket works for one handshake until then.
    pub expires_at: DateTime<Utc>,
}

/// Documents the `ticket` parameter, which `DesktopCaller` reads.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TicketQuery {
    /// A single-use ticket from `vnc-url` (browsers), instead of the `Authorization` header.
    pub ticket: Option<String>,
}

/// Desktop URL
///
/// A single-use ticket for the instance's desktop, valid `OCAAS_TICKET_TTL` seconds (default
/// 60) for one websocket handshake, with the URL of this server's desktop page (which connects
/// with it) and the `vnc/ws` websocket URL carrying it.
#[utoipa::path(get, path = "/api/instances/{instanceId}/vnc-url", tag = "terminal",
    params(RunningInstance),
    responses(
        (status = 200, description = "Desktop page and websocket URLs with a fresh ticket", body = VncUrl),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
    ))]
pub async fn vnc_url(
    State(state): State<AppState>,
    RunningInstance { user, instance, .. }: RunningInstance,
    origin: PublicOrigin,
) -> AppResult<Json<VncUrl>> {
    let id = instance.id;
    let ticket = tickets::issue(&state.db, state.settings.ticket_ttl, user.user_id, id).await?;
    let ws_origin = ws_origin(&origin.0);
    Ok(Json(VncUrl {
        url: origin.url(&format!("/desktop/{id}#ticket={}", ticket.secret)),
        ws_url: format!("{ws_origin}/api/instances/{id}/vnc/ws?ticket={}", ticket.secret),
        expires_at: ticket.expires_at,
    }))
}

/// Desktop websocket
///
/// Upgrades to a WebSocket bridged to the sandbox's VNC server until either side closes. ocaas
/// greets the client as an RFB 3.8 server offering security type None (the ticket or key is the
/// access control) and answers the sandbox's own VNC password itself; after the handshake,
/// bytes pass unchanged. Binary frames
/// both ways; the subprotocol `binary` is accepted (noVNC asks for it). Authenticate with a
/// `ticket` from `vnc-url`, `Authorization: Bearer <API key>`, or the `/account` session cookie
/// from a page of this server's origin; refusals are JSON errors before the upgrade.
#[utoipa::path(get, path = "/api/instances/{instanceId}/vnc/ws", tag = "terminal",
    params(RunningInstance, TicketQuery),
    extensions(("x-websocket" = json!({
        "subprotocols": ["binary"],
        "client_frames": {"binary": "RFB client messages"},
        "server_frames": {"binary": "RFB server messages, starting with the `RFB 003.008` greeting"},
        "security": "RFB security type 1 (None): the ticket or API key is the access control",
        "example": "wss://HOST/api/instances/INSTANCE_ID/vnc/ws?ticket=TICKET_FROM_VNC_URL"
    }))),
    responses(
        (status = 101, description = "Switching protocols: RFB over websocket"),
        (status = 401, description = "Missing, invalid, expired or used key or ticket", body = ErrorBody,
            example = json!({"error": "unauthorized", "message": "The ticket has expired; get a new one from vnc-url."})),
        (status = 403, description = "`origin_mismatch`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
        (status = 426, description = "`websocket_required`", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's desktop connections are all open", body = ErrorBody),
        (status = 502, description = "`desktop_unavailable`: the sandbox's VNC server does not answer", body = ErrorBody),
    ))]
pub async fn vnc_ws(State(state): State<AppState>, DesktopCaller(caller): DesktopCaller, WsUpgrade(upgrade): WsUpgrade) -> AppResult<Response> {
    let intent = Intent { method: &axum::http::Method::GET, template: "/api/instances/{instanceId}/vnc/ws" };
    let instance = running(&state, caller.user.user_id, caller.instance_id, intent, Wake::Start).await?;
    let slot = state.user_slots.acquire(caller.user.user_id, crate::state::SlotKind::Desktop)?;
    let busy = state.activity.hold(instance.id);
    // Connected before upgrading, so a desktop that is down is an HTTP error, not a dead socket.
    let mut vnc = connect(&state, &instance.sandbox_id).await?;
    let password = crate::runtime::sandbox::vnc_password(&instance.gateway_token);
    if let Err(problem) = rfb::authenticate_upstream(&mut vnc, &password).await {
        tracing::warn!(instance = %instance.id, %problem, "desktop: the sandbox's VNC server refused ocaas");
        return Err(AppError::new(ErrorCode::DesktopUnavailable, "The sandbox's desktop (VNC server) did not accept the connection."));
    }
    Ok(upgrade.protocols(["binary"]).on_upgrade(move |mut socket| async move {
        let _open = (slot, state.metrics.stream_open("vnc"), busy);
        let Ok(early) = rfb::greet_client(&mut socket).await else { return };
        let (from_vnc, mut to_vnc) = tokio::io::split(vnc);
        if tokio::io::AsyncWriteExt::write_all(&mut to_vnc, &early).await.is_err() {
            return;
        }
        let from_vnc = Box::pin(tokio_util::io::ReaderStream::with_capacity(from_vnc, READ_BUFFER));
        wsbridge::bridge(socket, from_vnc, Box::pin(to_vnc), &mut RfbPipe, &state.shutdown).await;
    }))
}

async fn connect(state: &AppState, sandbox: &str) -> AppResult<Tunnel> {
    let unavailable = || AppError::new(ErrorCode::DesktopUnavailable, "The sandbox's desktop (VNC server) does not answer.");
    let info = state.runtime.inspect(sandbox).await?;
    if !info.running {
        return Err(unavailable());
    }
    // The VNC server starts beside the gateway and may be a moment behind it (or restarting).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match state.runtime.connect(sandbox, VNC_PORT).await {
            Ok(stream) => return Ok(stream),
            _ if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            _ => return Err(unavailable()),
        }
    }
}

/// Bytes read from the VNC server at once: below the allocator's mmap threshold (128 KiB, set
/// in `serve.rs`), so a buffer is not a fresh mapping, page-faulted in, for every read.
const READ_BUFFER: usize = 64 << 10;

/// RFB is binary only; text frames are ignored.
struct RfbPipe;

#[async_trait]
impl Upstream for RfbPipe {}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(vnc_url)).routes(routes!(vnc_ws))
}
