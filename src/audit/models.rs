//! Wire types of the audit API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::repo::AuditRow;

crate::text_enum! {
    pub enum AuditAction {
        LoginSucceeded => "login_succeeded",
        LoginFailed => "login_failed",
        Logout => "logout",
        UserRegistered => "user_registered",
        KeyCreated => "key_created",
        KeyRevoked => "key_revoked",
        InstanceCreated => "instance_created",
        InstanceDeleted => "instance_deleted",
        InstanceRebooted => "instance_rebooted",
        InstanceShutDown => "instance_shut_down",
        InstanceStarted => "instance_started",
        AdminUserCreated => "admin_user_created",
        AdminKeyCreated => "admin_key_created",
        AdminKeyRevoked => "admin_key_revoked",
        AdminInviteCreated => "admin_invite_created",
        AdminSubscriptionGranted => "admin_subscription_granted",
        AdminInstancesUpgraded => "admin_instances_upgraded",
        AdminStorageMigrated => "admin_storage_migrated",
        ConfigPatched => "config_patched",
        ConfigRolledBack => "config_rolled_back",
        ChannelSet => "channel_set",
        ChannelRemoved => "channel_removed",
        ApprovalResolved => "approval_resolved",
        WebhookCreated => "webhook_created",
        WebhookDeleted => "webhook_deleted",
        WebhookSecretRotated => "webhook_secret_rotated",
        OrgCreated => "org_created",
        OrgDeleted => "org_deleted",
        OrgMemberInvited => "org_member_invited",
        OrgMemberJoined => "org_member_joined",
        OrgMemberChanged => "org_member_changed",
        OrgMemberRemoved => "org_member_removed",
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": 42, "at": "2026-03-20T18:22:54.000Z", "action": "login_failed",
    "client_addr": "203.0.113.7", "target": null}))]
pub struct AuditEvent {
    /// Increasing; pass the smallest you have as `before` for the next page.
    pub id: i64,
    #[serde(with = "crate::timefmt")]
    pub at: DateTime<Utc>,
    pub action: AuditAction,
    /// The client's address (`null` for admin commands).
    pub client_addr: Option<String>,
    /// What was acted on (an instance or key id).
    pub target: Option<String>,
    /// The API key behind the action (`null`: a browser session, an admin command, the server).
    pub key_id: Option<Uuid>,
    /// That key's name.
    pub key_name: Option<String>,
}

impl From<AuditRow> for AuditEvent {
    fn from(row: AuditRow) -> Self {
        AuditEvent {
            id: row.id,
            at: row.at,
            action: row.action,
            client_addr: row.client_addr,
            target: row.target,
            key_id: row.key_id,
            key_name: row.key_name,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events with a smaller id (the next page).
    pub before: Option<i64>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// `before` for the next page; `null` when this is the last.
    pub next_before: Option<i64>,
}
