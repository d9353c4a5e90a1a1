//! Wire types of the chat API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::repo::{MessageRow, SessionRow};
use super::tools::ToolStep;

crate::text_enum! {
    /// Who wrote a chat message (the `chat_messages.role` column).
    pub enum Role {
        User => "user",
        Assistant => "assistant",
        System => "system",
    }
}

crate::text_enum! {
    /// How far a chat message is (the `chat_messages.status` column).
    pub enum MessageStatus {
        Complete => "complete",
        Streaming => "streaming",
        Error => "error",
        /// Stopped by `POST …/chat/abort` (or by the agent's own stop).
        Aborted => "aborted",
    }
}

crate::text_enum! {
    /// Where a chat session was started (the `chat_sessions.origin` column).
    pub enum SessionOrigin {
        /// Through ocaas's API or dashboard.
        Api => "api",
        /// On the gateway without ocaas (the agent's own UI, a channel, a schedule): imported.
        Gateway => "gateway",
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "019a0f4c-3c2e-7b61-9d1e-6a0b5d1f2c3a", "session_id": "019a0f4c-1111-7b61-9d1e-6a0b5d1f2c3a",
    "role": "assistant", "content": "The repo holds a Rust web service.", "status": "complete",
    "created_at": "2026-03-20T18:22:54.000Z", "updated_at": "2026-03-20T18:22:57.000Z"
}))]
pub struct ChatMessage {
    /// UUID v7.
    pub id: Uuid,
    pub session_id: Uuid,
    /// `user`, `assistant` or `system`.
    pub role: Role,
    pub content: String,
    /// `complete`, `streaming`, `error` or `aborted`.
    pub status: MessageStatus,
    /// Why the message is `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The tool steps the agent took for this (assistant) message, in order; empty otherwise.
    pub tools: Vec<ToolStep>,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt")]
    pub updated_at: DateTime<Utc>,
}

impl From<MessageRow> for ChatMessage {
    fn from(row: MessageRow) -> Self {
        ChatMessage {
            id: row.id,
            session_id: row.session_id,
            role: row.role,
            content: row.content,
            status: row.status,
            error: row.error,
            tools: row.tools.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "019a0f4c-1111-7b61-9d1e-6a0b5d1f2c3a", "instance_id": "8b21f18f-20eb-44ce-a31a-06798aea3e50",
    "title": "CLI session", "created_at": "2026-03-20T18:22:54.000Z", "last_activity_at": "2026-03-20T18:30:00.000Z",
    "message_count": 4, "origin": "api"
}))]
pub struct ChatSession {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub title: Option<String>,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt")]
    pub last_activity_at: DateTime<Utc>,
    pub message_count: i64,
    /// `api` (started through ocaas) or `gateway` (started on the agent's side, imported).
    pub origin: SessionOrigin,
}

impl From<SessionRow> for ChatSession {
    fn from(row: SessionRow) -> Self {
        ChatSession {
            id: row.id,
            instance_id: row.instance_id,
            title: row.title,
            created_at: row.created_at,
            last_activity_at: row.last_activity_at,
            message_count: row.message_count,
            origin: row.origin,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"title": "CLI session"}))]
pub struct CreateSession {
    #[serde(default)]
    #[schema(max_length = 200)]
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"session_id": "019a0f4c-1111-7b61-9d1e-6a0b5d1f2c3a", "message": "Inspect /workspace and summarize the repo."}))]
pub struct SendMessage {
    /// The chat session; without it the most recently active one (created if there is none).
    #[serde(default)]
    pub session_id: Option<Uuid>,
    #[schema(min_length = 1, max_length = 100000)]
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatExchange {
    /// The session the turn went to.
    pub session_id: Uuid,
    pub user_message: ChatMessage,
    pub assistant_message: ChatMessage,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Defaults to the most recently active session.
    pub session_id: Option<Uuid>,
    /// The latest `limit` messages (still in chronological order).
    #[serde(default)]
    pub tail: bool,
    /// Only messages strictly later than this message id.
    pub after: Option<Uuid>,
    /// 1 to 500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Defaults to the most recently active session.
    pub session_id: Option<Uuid>,
    /// Replay messages strictly later than this message id first.
    pub after: Option<Uuid>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"session_id": "019a0f4c-1111-7b61-9d1e-6a0b5d1f2c3a"}))]
pub struct AbortTurn {
    /// The session whose running turn to stop; without it the most recently active one.
    #[serde(default)]
    pub session_id: Option<Uuid>,
}
