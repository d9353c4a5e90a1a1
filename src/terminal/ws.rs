//! `GET …/terminal/ws`: a websocket bridged to a shell on a pseudo-terminal in the sandbox.

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use axum::response::Response;
use serde::Deserialize;
use utoipa::IntoParams;

use super::pty::{self, DEFAULT_COLS, DEFAULT_ROWS};
use crate::auth::ws::WsCaller;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::ApiQuery;
use crate::instances::extract::{Intent, RunningInstance, running};
use crate::instances::power::Wake;
use crate::state::AppState;
use crate::wsbridge::{self, WsUpgrade};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TerminalQuery {
    /// Initial width in columns (default 80, 1–1000).
    #[param(minimum = 1, maximum = 1000)]
    pub cols: Option<u16>,
    /// Initial height in rows (default 24, 1–1000).
    #[param(minimum = 1, maximum = 1000)]
    pub rows: Option<u16>,
    /// A single-use ticket from `vnc-url`, for browsers (instead of the `Authorization` header).
    pub ticket: Option<String>,
}

/// Terminal websocket
///
/// Upgrades to a WebSocket bridged to an interactive login shell (`bash -l`, else `sh -l`) on
/// a pseudo-terminal in `/workspace`, as the sandbox user, with `TERM=xterm-256color`.
///
/// Authenticate the handshake with `Authorization: Bearer <API key>`, a `ticket` query
/// parameter from `vnc-url`, or the `/account` session cookie from a page of this server's
/// origin. Refusals are answered before the upgrade with the JSON error shape.
///
/// Frames: **binary** frames carry raw terminal bytes both ways (keystrokes in, output out).
/// **Text** frames from the client are JSON control messages: `{"type":"resize","cols":120,
/// "rows":40}` or `{"type":"input","data":"ls\n"}` (other text is typed as it is). When the
/// shell exits the server sends the text frame `{"type":"exit","code":N}` and closes with 1000.
/// Closing the websocket hangs up the shell and ends every process it started. The server
/// pings every 20 s; several terminals per instance may be open at once.
#[utoipa::path(get, path = "/api/instances/{instanceId}/terminal/ws", tag = "terminal",
    params(RunningInstance, TerminalQuery),
    extensions(("x-websocket" = json!({
        "client_frames": {
            "binary": "keystrokes (raw bytes to the PTY)",
            "text": [{"type": "resize", "cols": 120, "rows": 40}, {"type": "input", "data": "ls -la\n"}]
        },
        "server_frames": {"binary": "terminal output (raw bytes)", "text": [{"type": "exit", "code": 0}]},
        "close": "1000 after the exit frame; the server pings every 20 s",
        "example": "websocat -H 'Authorization: Bearer $OPENCLAW_API_KEY' wss://HOST/api/instances/INSTANCE_ID/terminal/ws"
    }))),
    responses(
        (status = 101, description = "Switching protocols: the terminal websocket"),
        (status = 400, description = "Bad `cols`/`rows`", body = ErrorBody),
        (status = 401, description = "Missing, invalid, expired or used key or ticket", body = ErrorBody,
            example = json!({"error": "unauthorized", "message": "The ticket was already used; each ticket opens one connection (get a new one from vnc-url)."})),
        (status = 403, description = "`origin_mismatch`: a cookie-authenticated handshake from another origin", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
        (status = 426, description = "`websocket_required`: not a websocket handshake", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's terminals are all open", body = ErrorBody),
    ))]
pub async fn terminal_ws(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<TerminalQuery>,
    caller: WsCaller,
    WsUpgrade(upgrade): WsUpgrade,
) -> AppResult<Response> {
    let cols = query.cols.unwrap_or(DEFAULT_COLS);
    let rows = query.rows.unwrap_or(DEFAULT_ROWS);
    if !pty::valid_size(cols, rows) {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`cols` and `rows` must be between 1 and 1000."));
    }
    let intent = Intent { method: &axum::http::Method::GET, template: "/api/instances/{instanceId}/terminal/ws" };
    let instance = running(&state, caller.user.user_id, caller.instance_id, intent, Wake::Start).await?;
    let slot = state.user_slots.acquire(caller.user.user_id, crate::state::SlotKind::Terminal)?;
    let busy = state.activity.hold(instance.id);
    let sandbox = instance.sandbox_id;
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _open = (slot, state.metrics.stream_open("terminal"), busy);
        serve(state, sandbox, socket, cols, rows).await
    }))
}

async fn serve(state: AppState, sandbox: String, mut socket: WebSocket, cols: u16, rows: u16) {
    let (mut terminal, session) = match pty::open(state.runtime.clone(), &sandbox, cols, rows).await {
        Ok(opened) => opened,
        Err(error) => {
            tracing::warn!(%sandbox, %error, "could not open a terminal");
            let message = serde_json::json!({"type": "error", "message": "The terminal could not be started in the sandbox."});
            let _ = socket.send(Message::Text(message.to_string().into())).await;
            let close = CloseFrame { code: close_code::ERROR, reason: "terminal unavailable".into() };
            let _ = socket.send(Message::Close(Some(close))).await;
            return;
        }
    };
    wsbridge::bridge(socket, session.output, session.input, &mut terminal, &state.shutdown).await;
    terminal.hang_up().await;
}
