//! Wire types of outbound webhooks: endpoints, deliveries, and the events ocaas sends (the body
//! of every delivery, `{type, timestamp, data}` as Standard Webhooks recommends). The events'
//! bodies are written by the database (`migrations/…_webhooks.sql`) in the transaction that made
//! them happen; the types here document them, and the tests hold the two together.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

crate::text_enum! {
    /// What happened.
    pub enum EventType {
        /// An instance's status changed (`data`: `InstanceStatusData`).
        InstanceStatusChanged => "instance.status_changed",
        /// The idle policy paused or stopped an instance (`InstanceIdleData`).
        InstanceIdle => "instance.idle",
        /// An assistant message ended: complete, error or aborted (`ChatMessageData`).
        ChatMessageCompleted => "chat.message.completed",
        /// A tool step of an assistant message ended (`ChatToolData`).
        ChatToolCompleted => "chat.tool.completed",
        /// A snapshot is ready (`SnapshotData`).
        SnapshotReady => "snapshot.ready",
        /// A snapshot failed (`SnapshotData`, with `error`).
        SnapshotFailed => "snapshot.failed",
        /// An account's or instance's monthly tokens passed 80 % (`UsageThresholdData`).
        UsageThreshold => "usage.threshold",
        /// Sent by `POST …/webhooks/{id}/test` only (`TestData`).
        WebhookTest => "webhook.test",
    }
}

impl EventType {
    /// The scope a key needs to read what the event says through the API.
    pub fn scope(self) -> crate::auth::scopes::Scope {
        use crate::auth::scopes::Scope;
        match self {
            EventType::ChatMessageCompleted | EventType::ChatToolCompleted => Scope::Chat,
            EventType::SnapshotReady | EventType::SnapshotFailed => Scope::Snapshots,
            EventType::InstanceStatusChanged | EventType::InstanceIdle | EventType::UsageThreshold => Scope::InstancesRead,
            EventType::WebhookTest => Scope::Account,
        }
    }
}

crate::text_enum! {
    /// Where a delivery is: waiting for its next attempt, answered 2xx, or given up.
    pub enum DeliveryStatus {
        Pending => "pending",
        Delivered => "delivered",
        Failed => "failed",
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"url": "https://hooks.example.com/ocaas", "events": ["chat.message.completed", "instance.status_changed"]}))]
pub struct CreateWebhook {
    /// An `https` (or `http`) URL on a public address; redirects are not followed.
    pub url: String,
    /// The events to send; left out: every event.
    pub events: Option<Vec<EventType>>,
    /// A note for the account's owner.
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"disabled": true}))]
pub struct UpdateWebhook {
    pub url: Option<String>,
    pub events: Option<Vec<EventType>>,
    pub description: Option<String>,
    /// A disabled endpoint gets no new events (those queued are still delivered).
    pub disabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3a", "url": "https://hooks.example.com/ocaas",
    "events": ["chat.message.completed"], "description": null, "disabled": false,
    "created_at": "2026-03-20T18:22:54.000Z", "previous_secret_until": null}))]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: Option<String>,
    pub disabled: bool,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    /// After a rotation: until when the previous secret also signs (a second `v1,` signature).
    #[serde(with = "crate::timefmt::option")]
    pub previous_secret_until: Option<DateTime<Utc>>,
}

/// An endpoint with its signing secret: answered on creation and rotation only.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// `whsec_…` (base64 after the prefix): verify each delivery's `webhook-signature` with it.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// The `webhook-id` header: the same on every attempt.
    pub message_id: String,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// The receiver's last answer's status code (`null`: no answer).
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    /// While pending: when the next attempt is due.
    #[serde(with = "crate::timefmt::option")]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::timefmt::option")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// The body sent, byte for byte.
    #[schema(value_type = WebhookEvent)]
    pub payload: Value,
    /// Every attempt, oldest first.
    pub log: Vec<AttemptView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: i32,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
    pub duration_ms: i32,
}

/// The body of every delivery.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"type": "instance.status_changed", "timestamp": "2026-03-20T18:22:54.000Z",
    "data": {"instance_id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3a", "name": "research", "status": "ready", "previous_status": "provisioning"}}))]
pub struct WebhookEvent {
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When the event happened (RFC 3339, UTC, milliseconds).
    pub timestamp: String,
    pub data: EventData,
}

/// `data` of an event, by its `type`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventData {
    InstanceStatus(InstanceStatusData),
    InstanceIdle(InstanceIdleData),
    ChatMessage(ChatMessageData),
    ChatTool(ChatToolData),
    Snapshot(SnapshotData),
    UsageThreshold(UsageThresholdData),
    Test(TestData),
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceStatusData {
    pub instance_id: Uuid,
    pub name: Option<String>,
    #[schema(value_type = crate::instances::models::InstanceStatus)]
    pub status: String,
    /// `null` for a new instance.
    #[schema(required = true, value_type = Option<crate::instances::models::InstanceStatus>)]
    pub previous_status: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstanceIdleData {
    pub instance_id: Uuid,
    pub name: Option<String>,
    /// `paused` or `stopped`.
    #[schema(value_type = crate::instances::models::InstanceStatus)]
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageData {
    pub instance_id: Uuid,
    pub session_id: Uuid,
    pub message_id: Uuid,
    /// `complete`, `error` or `aborted`.
    #[schema(value_type = crate::chat::models::MessageStatus)]
    pub status: String,
    /// The message's text, at most 16 KiB of it.
    pub content: String,
    pub content_truncated: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatToolData {
    pub instance_id: Uuid,
    pub session_id: Uuid,
    pub message_id: Uuid,
    pub tool_call_id: String,
    pub name: String,
    /// `completed`, `error` or `aborted`.
    #[schema(value_type = crate::chat::tools::ToolStatus)]
    pub status: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotData {
    pub snapshot_id: Uuid,
    pub instance_id: Uuid,
    pub name: Option<String>,
    #[schema(value_type = crate::snapshots::models::SnapshotKind)]
    pub kind: String,
    pub size_bytes: i64,
    pub error: Option<String>,
}

crate::text_enum! {
    /// Whose allowance: the account's monthly tokens or the instance's own limit.
    pub enum UsageSubject {
        Account => "account",
        Instance => "instance",
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageThresholdData {
    pub subject: UsageSubject,
    /// The instance whose model call passed the threshold.
    pub instance_id: Uuid,
    pub used_tokens: i64,
    pub limit_tokens: i64,
    /// The threshold passed, in percent.
    pub percent: u8,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TestData {
    pub webhook_id: Uuid,
    pub message: String,
}
