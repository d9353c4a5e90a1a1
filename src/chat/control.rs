//! Stopping a running turn (`POST …/chat/abort`) from any replica: the process running the
//! turn is told (`Cancels`), aborts the agent's run on the gateway and ends the message
//! `aborted`; the call answers with the message once it has ended.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use tokio::time::Instant;

use super::models::{AbortTurn, ChatMessage, MessageStatus};
use super::repo;
use super::turn::session_not_found;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::ApiJsonOrEmpty;
use crate::instances::extract::OwnedInstance;
use crate::state::AppState;

/// How long the call waits for the turn to end.
const WAIT: Duration = Duration::from_secs(5);

/// Stop a running turn
///
/// Stops the turn running in the session (without `session_id`, the most recently active
/// one): the agent's run is aborted on the gateway, a tool it was running is stopped, and the
/// assistant message ends `aborted` with what it had so far. Answers with that message once it
/// has ended (normally well within 2 s; after 5 s, as it is then).
#[utoipa::path(post, path = "/api/instances/{instanceId}/chat/abort", tag = "chat",
    params(OwnedInstance),
    request_body(content = AbortTurn, description = "Optional"),
    responses(
        (status = 200, description = "The assistant message of the stopped turn", body = ChatMessage),
        (status = 400, description = "Bad JSON", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `session_not_found`", body = ErrorBody),
        (status = 409, description = "`no_active_turn`: nothing is running in the session", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn abort(
    State(state): State<AppState>,
    OwnedInstance { instance, .. }: OwnedInstance,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<AbortTurn>,
) -> AppResult<Json<ChatMessage>> {
    let session = match body.session_id {
        Some(id) => repo::session(&state.db, instance.id, id).await?,
        None => repo::latest_session(&state.db, instance.id).await?,
    }
    .ok_or_else(session_not_found)?;
    let Some(turn) = session.active_turn else {
        return Err(AppError::new(ErrorCode::NoActiveTurn, "No turn is running in this chat session."));
    };
    let mut changes = state.chat_events.subscribe();
    state.turns.cancel_everywhere(&state.db, turn).await?;
    let deadline = Instant::now() + WAIT;
    loop {
        let message = repo::message(&state.db, session.id, turn).await?.ok_or_else(session_not_found)?;
        if message.status != MessageStatus::Streaming || Instant::now() >= deadline {
            return Ok(Json(message.into()));
        }
        // Woken by the message's next change (from any process), or a short poll.
        let _ = tokio::time::timeout_at(deadline.min(Instant::now() + Duration::from_millis(250)), changes.recv()).await;
    }
}
