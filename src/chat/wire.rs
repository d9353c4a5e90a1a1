//! The chat's server-sent events, typed (written as frames by `crate::sse::to_sse`, listed in
//! the OpenAPI document as each stream's `x-sse-events`).

use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::models::{ChatExchange, ChatMessage};
use super::tools::ToolEvent;

/// Where a streamed turn is (`status` events).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TurnState {
    /// The stopped instance is being started first.
    Starting,
    Queued,
    Running,
    Streaming,
    Done,
    Error,
    /// Stopped by `POST …/chat/abort`.
    Aborted,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusData {
    pub state: TurnState,
    /// Why, with `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageData {
    /// The persisted message as it is now (for the assistant's: all its content so far).
    pub message: ChatMessage,
    /// The piece added since the last event (the assistant's message while it streams).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationData {
    /// `info`, `warning` or `error`.
    pub level: String,
    pub message: String,
}

/// One event of `POST …/chat/stream`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum ChatStreamEvent {
    Status(StatusData),
    Message(MessageData),
    /// A tool step of the assistant message started, grew output or ended.
    Tool(ToolEvent),
    SystemNotification(NotificationData),
    /// Last: both persisted messages.
    Complete(ChatExchange),
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyData {
    pub session_id: Uuid,
    /// The `after` the feed was opened with.
    pub after: Option<Uuid>,
}

/// One event of `GET …/chat/events` (`message` events also carry an SSE `id:`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "event", content = "data", rename_all = "snake_case")]
pub enum ChatFeedEvent {
    /// First, once.
    Ready(ReadyData),
    /// Sent before the `message` event of the change it belongs to.
    Tool(ToolEvent),
    Message(MessageData),
}

impl ChatStreamEvent {
    pub fn status(state: TurnState, detail: Option<String>) -> Self {
        ChatStreamEvent::Status(StatusData { state, detail })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_carries_the_tag_as_its_name_and_the_content_as_its_data() {
        let event = ChatStreamEvent::status(TurnState::Queued, None);
        let value = serde_json::to_value(&event).unwrap();
        assert_eq!(value, serde_json::json!({"event": "status", "data": {"state": "queued"}}));
        let notice = ChatStreamEvent::SystemNotification(NotificationData { level: "error".into(), message: "m".into() });
        assert_eq!(serde_json::to_value(&notice).unwrap()["event"], "system_notification");
    }
}
