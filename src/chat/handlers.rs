//! HTTP handlers of the chat API (`/api/instances/{instanceId}/chat…`).

use std::convert::Infallible;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event;
use tokio::sync::mpsc;

use super::events;
use super::models::*;
use super::repo;
use super::turn::{self, StartedTurn, TurnEvent};
use super::wire::{ChatFeedEvent, ChatStreamEvent, MessageData, NotificationData, ReadyData, TurnState};
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiJsonOrEmpty, ApiQuery};
use crate::instances::extract::{OwnedInstance, RunningInstance};
use crate::instances::power::{self, Wake};
use crate::sse::to_sse;
use crate::state::{AppState, SlotKind};

/// Chat sessions one instance may have (each is a row, and listed whole).
pub const MAX_SESSIONS: i64 = 1000;

use crate::sse::EventStream;

/// List chat sessions
///
/// The instance's chat sessions, most recently active first, with message counts (a bare JSON array).
#[utoipa::path(get, path = "/api/instances/{instanceId}/chat/sessions", tag = "chat",
    params(OwnedInstance),
    responses(
        (status = 200, description = "Sessions", body = [ChatSession]),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn list_sessions(State(state): State<AppState>, OwnedInstance { instance, .. }: OwnedInstance) -> AppResult<Json<Vec<ChatSession>>> {
    Ok(Json(repo::list_sessions(&state.db, instance.id).await?.into_iter().map(Into::into).collect()))
}

/// Create a chat session
///
/// A new, empty session; the body (`{title}`) is optional.
#[utoipa::path(post, path = "/api/instances/{instanceId}/chat/sessions", tag = "chat",
    params(OwnedInstance),
    request_body(content = CreateSession, description = "Optional"),
    responses(
        (status = 201, description = "Created", body = ChatSession),
        (status = 400, description = "Bad JSON or title", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`session_limit_reached`: the instance has 1,000 sessions", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn create_session(
    State(state): State<AppState>,
    OwnedInstance { instance, .. }: OwnedInstance,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<CreateSession>,
) -> AppResult<(StatusCode, Json<ChatSession>)> {
    let title = body.title.as_deref().map(str::trim).filter(|t| !t.is_empty());
    if title.is_some_and(|t| t.chars().count() > 200) {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`title` must be at most 200 characters."));
    }
    let created = repo::insert_session_capped(&state.db, instance.id, title, MAX_SESSIONS).await?.ok_or_else(|| {
        AppError::new(
            ErrorCode::SessionLimitReached,
            format!("The instance has {MAX_SESSIONS} chat sessions, the most it may; continue one of them."),
        )
    })?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// Send a message (synchronous)
///
/// Persists the user message, runs the agent turn and answers with both persisted messages
/// once it is over. A failed turn still answers 200, with the assistant message in `error`.
/// A paused instance is resumed, a stopped one started (the call waits until it is ready).
#[utoipa::path(post, path = "/api/instances/{instanceId}/chat", tag = "chat",
    params(RunningInstance),
    request_body = SendMessage,
    responses(
        (status = 200, description = "The turn is over", body = ChatExchange),
        (status = 400, description = "Bad JSON, empty or oversize message", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `session_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `session_busy`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's event streams are all open (a synchronous turn takes one too)", body = ErrorBody),
    ))]
pub async fn send(
    State(state): State<AppState>,
    OwnedInstance { instance, user }: OwnedInstance,
    ApiJson(body): ApiJson<SendMessage>,
) -> AppResult<Json<ChatExchange>> {
    // A synchronous turn holds its request as long as a stream would: it takes a stream's slot.
    let _slot = state.user_slots.acquire(user.user_id, SlotKind::Stream)?;
    let instance = power::awake(&state, instance, Wake::Start).await?;
    let mut started = turn::start(&state, &instance, body.session_id, &body.message).await?;
    let mut assistant = started.assistant;
    while let Some(event) = started.events.recv().await {
        if let TurnEvent::Finished { assistant: done } = event {
            assistant = done;
        }
    }
    Ok(Json(ChatExchange { session_id: started.session_id, user_message: started.user_message, assistant_message: assistant }))
}

/// Send a message, stream the answer (SSE)
///
/// Server-sent events, in order: `status` `{state:"queued"}`, `message` `{message}` (the
/// persisted user message), `status` `running`, `status` `streaming`, then `message`
/// `{message, delta}` as the assistant message grows (full content so far plus the new
/// piece), `tool` `{message_id, tool_call_id, name, phase, args?, output?, is_error?}` for each
/// step of a tool the agent runs (`start`, `update` as output grows, `result`),
/// `system_notification` `{level, message}` on trouble, `status` `done`, `error` or `aborted`,
/// and `complete` `{session_id, user_message, assistant_message}` last. The turn belongs to
/// the server: if the client disconnects it still finishes and is stored. On a stopped
/// instance the stream opens at once with `status` `{state:"starting"}` while the instance
/// starts (a failed start ends with `system_notification` and `status` `error`); a paused
/// one is resumed first.
#[utoipa::path(post, path = "/api/instances/{instanceId}/chat/stream", tag = "chat",
    params(RunningInstance),
    request_body = SendMessage,
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "Bad JSON, empty or oversize message", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `session_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `session_busy`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's event streams are all open", body = ErrorBody),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    OwnedInstance { instance, user }: OwnedInstance,
    ApiJson(body): ApiJson<SendMessage>,
) -> AppResult<EventStream> {
    let slot = state.user_slots.acquire(user.user_id, SlotKind::Stream)?;
    let open = (slot, state.metrics.stream_open("sse"), state.activity.hold(instance.id));
    // Small: each queued event carries the answer so far; a slow client holds the turn's own
    // queue back, where deltas are merged (see `turn`).
    let (sink, receiver) = mpsc::channel(8);
    if power::needs_start(&state, &instance) {
        tokio::spawn(super::wake::start_then_forward(state, instance, body, sink));
        return Ok(crate::sse::response(receiver, open));
    }
    let instance = power::awake(&state, instance, Wake::Start).await?;
    let started = turn::start(&state, &instance, body.session_id, &body.message).await?;
    tokio::spawn(forward_turn(started, sink));
    Ok(crate::sse::response(receiver, open))
}

pub(super) async fn forward_turn(mut started: StartedTurn, sink: mpsc::Sender<Result<Event, Infallible>>) {
    let user_message = started.user_message.clone();
    let mut streaming = false;
    let _ = sink.send(to_sse(&ChatStreamEvent::status(TurnState::Queued, None))).await;
    let _ = sink.send(to_sse(&ChatStreamEvent::Message(MessageData { message: user_message.clone(), delta: None }))).await;
    while let Some(turn_event) = started.events.recv().await {
        let out = match turn_event {
            TurnEvent::Running => vec![ChatStreamEvent::status(TurnState::Running, None)],
            TurnEvent::Delta { message, delta } => {
                let mut out = Vec::new();
                if !streaming {
                    streaming = true;
                    out.push(ChatStreamEvent::status(TurnState::Streaming, None));
                }
                out.push(ChatStreamEvent::Message(MessageData { message, delta: Some(delta) }));
                out
            }
            TurnEvent::Tool(event) => {
                let mut out = Vec::new();
                if !streaming {
                    streaming = true;
                    out.push(ChatStreamEvent::status(TurnState::Streaming, None));
                }
                out.push(ChatStreamEvent::Tool(event));
                out
            }
            TurnEvent::Notice { level, message } => vec![ChatStreamEvent::SystemNotification(NotificationData { level: level.to_owned(), message })],
            TurnEvent::Finished { assistant } => {
                let state = match assistant.status {
                    MessageStatus::Complete => ChatStreamEvent::status(TurnState::Done, None),
                    MessageStatus::Aborted => ChatStreamEvent::status(TurnState::Aborted, None),
                    _ => ChatStreamEvent::status(TurnState::Error, assistant.error.clone()),
                };
                let complete = ChatExchange { session_id: started.session_id, user_message: user_message.clone(), assistant_message: assistant };
                vec![state, ChatStreamEvent::Complete(complete)]
            }
        };
        for item in out {
            // A gone client stops the forwarding, not the turn.
            if sink.send(to_sse(&item)).await.is_err() {
                return;
            }
        }
    }
}

/// Read chat history
///
/// Messages of a session in chronological order (a bare JSON array): the first `limit` after
/// `after`, or with `tail=true` the latest `limit`. `limit` is 1–500 (default 50); an unknown
/// `after` id is a 400.
#[utoipa::path(get, path = "/api/instances/{instanceId}/chat/messages", tag = "chat",
    params(OwnedInstance, HistoryQuery),
    responses(
        (status = 200, description = "Messages", body = [ChatMessage]),
        (status = 400, description = "Bad `limit` or unknown `after`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `session_not_found`", body = ErrorBody),
    ))]
pub async fn messages(
    State(state): State<AppState>,
    OwnedInstance { instance, .. }: OwnedInstance,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> AppResult<Json<Vec<ChatMessage>>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`limit` must be between 1 and 500."));
    }
    let session = match q.session_id {
        Some(sid) => repo::session(&state.db, instance.id, sid).await?.ok_or_else(turn::session_not_found)?,
        None => match repo::latest_session(&state.db, instance.id).await? {
            Some(session) => session,
            None => return Ok(Json(Vec::new())),
        },
    };
    let after_seq = match q.after {
        Some(after) => repo::message(&state.db, session.id, after)
            .await?
            .map(|m| m.seq)
            .ok_or_else(|| AppError::new(ErrorCode::InvalidRequest, "`after` is not the id of a message in this session."))?,
        None => 0,
    };
    let rows = repo::history(&state.db, session.id, after_seq, limit, q.tail).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}

/// Follow chat events (SSE)
///
/// `ready` `{session_id, after}` once, then `message` `{message}` for every insert and update
/// of a persisted message of the session — from any ocaas process on the same database, and
/// turns made on the agent's own side (its UI, channels, schedules), imported as they happen.
/// A change to a message's tool steps is preceded by `tool` events (as on `chat/stream`).
/// Events carry `id:`; reconnect with `Last-Event-ID` to get only what was missed. With
/// `after`, the messages later than that id are sent first. Keep-alive comments every 15 s.
#[utoipa::path(get, path = "/api/instances/{instanceId}/chat/events", tag = "chat",
    params(OwnedInstance, EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = String,
            example = json!("event: ready\ndata: {\"session_id\":\"0193b6c2-7d1e-7cc0-9f43-2b1f7e0c9a12\"}\n\nid: 42\nevent: message\ndata: {\"message\":{\"id\":\"0193b6c2-9a00-7cc0-9f43-2b1f7e0c9a13\",\"role\":\"assistant\",\"content\":\"Hello!\",\"status\":\"complete\"}}\n\n")),
        (status = 400, description = "Unknown `after` or bad `Last-Event-ID`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `session_not_found`", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's event streams are all open", body = ErrorBody),
    ))]
pub async fn follow(
    State(state): State<AppState>,
    OwnedInstance { instance, user }: OwnedInstance,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> AppResult<EventStream> {
    let slot = state.user_slots.acquire(user.user_id, SlotKind::Stream)?;
    let session = match q.session_id {
        Some(sid) => repo::session(&state.db, instance.id, sid).await?,
        None => repo::latest_session(&state.db, instance.id).await?,
    }
    .ok_or_else(turn::session_not_found)?;
    let last_event_id = match headers.get("last-event-id").map(|v| v.to_str().unwrap_or("").trim().parse::<i64>()) {
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return Err(AppError::new(ErrorCode::InvalidRequest, "`Last-Event-ID` must be an event id from this stream.")),
        None => None,
    };
    let after_seq = match q.after {
        Some(after) => Some(
            repo::message(&state.db, session.id, after)
                .await?
                .map(|m| m.seq)
                .ok_or_else(|| AppError::new(ErrorCode::InvalidRequest, "`after` is not the id of a message in this session."))?,
        ),
        None => None,
    };
    // Subscribe before reading the backlog, so nothing falls between the two.
    let notifications = state.chat_events.subscribe();
    if state.settings.gateway_protocol == crate::config::GatewayProtocol::Auto {
        // Someone watches: turns made on the agent's side must be heard from now on.
        let (link, instance) = (crate::gateway::Link::of(&state), instance.clone());
        tokio::spawn(async move { link.connection(&instance, std::time::Duration::ZERO).await });
    }
    let replay = match (last_event_id, after_seq) {
        (Some(last), _) => events::Replay::AfterEvent(last),
        (None, Some(seq)) => events::Replay::AfterSeq { seq, cursor: repo::last_event(&state.db, session.id).await? },
        (None, None) => events::Replay::Nothing { cursor: repo::last_event(&state.db, session.id).await? },
    };
    let (sink, receiver) = mpsc::channel(64);
    // The answer starts at once; the backlog is read page by page while the client reads.
    let ready = to_sse(&ChatFeedEvent::Ready(ReadyData { session_id: session.id, after: q.after }));
    sink.try_send(ready).expect("a new channel has room");
    tokio::spawn(events::replay_and_follow(state.db.clone(), state.shutdown.clone(), session.id, replay, notifications, sink));
    Ok(crate::sse::response(receiver, (slot, state.metrics.stream_open("sse"), state.activity.hold(instance.id))))
}
