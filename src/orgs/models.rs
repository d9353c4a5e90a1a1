//! Wire types of organisations: roles, the organisation, its members and invitations.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

crate::text_enum! {
    /// What a member may do (`docs/api.md`, "Organisations", has the table).
    pub enum OrgRole {
        /// Everything, the organisation itself and its owners included.
        Owner => "owner",
        /// Everything on its instances; members, invitations, the organisation's name.
        Admin => "admin",
        /// Uses its instances: chat, files, commands, terminal, desktop, snapshots, start/stop.
        Member => "member",
        /// Reads: instances, chat history, files, snapshots, the agent's settings.
        Viewer => "viewer",
    }
}

impl OrgRole {
    /// Runs the organisation's people and instances.
    pub fn manages(self) -> bool {
        matches!(self, OrgRole::Owner | OrgRole::Admin)
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3a", "name": "Research", "role": "owner",
    "max_instances": 3, "monthly_tokens": null, "instances": 1, "created_at": "2026-03-20T18:22:54.000Z"}))]
pub struct OrgView {
    pub id: Uuid,
    pub name: String,
    /// The caller's role in it.
    pub role: OrgRole,
    /// Its plan: instances at once (set by the operator).
    pub max_instances: i32,
    /// Its plan: model tokens a month for all its instances; `null`: unlimited.
    pub monthly_tokens: Option<i64>,
    /// Instances it has now.
    pub instances: i64,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "Research"}))]
pub struct OrgRequest {
    /// 1–100 printable characters.
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"user_id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3a", "email": "ada@example.com", "role": "member", "joined_at": "2026-03-20T18:22:54.000Z"}))]
pub struct MemberView {
    pub user_id: Uuid,
    pub email: String,
    pub role: OrgRole,
    #[serde(with = "crate::timefmt")]
    pub joined_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"role": "viewer"}))]
pub struct RoleChange {
    pub role: OrgRole,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"email": "grace@example.com", "role": "member"}))]
pub struct InviteRequest {
    /// Who may join: the account registered with this email accepts it after signing in.
    pub email: String,
    /// `admin`, `member` or `viewer` (owners are made by owners, from members).
    pub role: OrgRole,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3b", "org_id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3a",
    "org_name": "Research", "email": "grace@example.com", "role": "member", "created_at": "2026-03-20T18:22:54.000Z",
    "expires_at": "2026-03-27T18:22:54.000Z"}))]
pub struct InvitationView {
    pub id: Uuid,
    pub org_id: Uuid,
    pub org_name: String,
    pub email: String,
    pub role: OrgRole,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt")]
    pub expires_at: DateTime<Utc>,
}
