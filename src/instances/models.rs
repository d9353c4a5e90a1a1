//! Wire types of the instance API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::repo::InstanceRow;

// Where an instance is in its lifecycle (the `instances.status` column). A plain comment: a
// doc comment would become the schema's description and change the published document.
crate::text_enum! {
    pub enum InstanceStatus {
        Provisioning => "provisioning",
        Ready => "ready",
        Rebooting => "rebooting",
        Stopping => "stopping",
        Stopped => "stopped",
        Error => "error",
        Deleting => "deleting",
        Paused => "paused",
        Pooled => "pooled",
        Restoring => "restoring",
        Upgrading => "upgrading",
        RollingBack => "rolling_back",
    }
}

// Why a paused or stopped instance is so, when not its user's doing.
crate::text_enum! {
    pub enum StopReason {
        Idle => "idle",
    }
}

// How an instance's storage is kept on the host (the `instances.storage_kind` column): a
// quota'd ext4 image loop-mounted on its directory, or a plain directory.
crate::text_enum! {
    pub enum StorageKind {
        Image => "image",
        Directory => "directory",
    }
}

impl InstanceStatus {
    /// States in which background work is under way.
    pub fn is_transitional(self) -> bool {
        matches!(self, Self::Provisioning | Self::Rebooting | Self::Stopping | Self::Deleting | Self::Restoring | Self::Upgrading | Self::RollingBack)
    }
}

/// The instance's storage (`/workspace` and the agent's state) against its quota.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiskUsageView {
    pub used_bytes: u64,
    /// `OCAAS_INSTANCE_DISK`: writing past it fails with "No space left on device".
    pub limit_bytes: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "8b21f18f-20eb-44ce-a31a-06798aea3e50", "status": "ready", "sandbox_id": "sandy-aaaaaaaaaaaa",
    "created_at": "2026-03-20T18:22:54.000Z", "updated_at": "2026-03-20T18:23:59.000Z",
    "name": null, "last_error": null, "image": "ocaas-sandbox:offline-0123456789abcdef",
    "last_active_at": "2026-03-20T18:23:59.000Z", "stop_reason": null, "keep_awake": false,
    "openclaw_version": "2026.9.6", "org_id": null
}))]
pub struct Instance {
    pub id: Uuid,
    pub status: InstanceStatus,
    /// Name of the sandbox container (`sandy-` + 12 hex digits).
    pub sandbox_id: String,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt")]
    pub updated_at: DateTime<Utc>,
    pub name: Option<String>,
    /// Why the instance is in `error`.
    pub last_error: Option<String>,
    pub image: String,
    /// Last time the instance was used: API calls on it, open terminals, desktops and event
    /// streams, agent turns and the agent's model calls (kept to the minute).
    #[serde(with = "crate::timefmt")]
    pub last_active_at: DateTime<Utc>,
    /// `idle` when the idle policy paused or stopped the instance; else null.
    pub stop_reason: Option<StopReason>,
    /// Pinned awake: the idle policy leaves it running (`PATCH` to change).
    pub keep_awake: bool,
    /// The OpenClaw version its gateway reported when it last became ready.
    pub openclaw_version: Option<String>,
    /// The organisation it belongs to (`null`: its creator's own).
    pub org_id: Option<Uuid>,
}

impl From<InstanceRow> for Instance {
    fn from(row: InstanceRow) -> Self {
        Instance {
            id: row.id,
            status: row.status,
            sandbox_id: row.sandbox_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
            name: row.name,
            last_error: row.last_error,
            image: row.image,
            last_active_at: row.last_active_at,
            stop_reason: row.stop_reason,
            keep_awake: row.keep_awake,
            openclaw_version: row.openclaw_version,
            org_id: row.org_id,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"invite_code": "ABCD-EFGH-JKLM-NPQR", "name": "research", "from_snapshot": null}))]
pub struct CreateInstanceRequest {
    /// Needed when the account has no active subscription; redeeming it grants one.
    #[serde(default)]
    pub invite_code: Option<String>,
    /// A label for the instance.
    #[serde(default)]
    pub name: Option<String>,
    /// Clone: the new instance starts with the contents of this snapshot (one of yours).
    #[serde(default)]
    pub from_snapshot: Option<Uuid>,
    /// Make it for this organisation (you must be its owner or admin); it counts against the
    /// organisation's plan, and its members reach it as their roles allow.
    #[serde(default)]
    pub org_id: Option<Uuid>,
}

/// The changes `PATCH /api/instances/{id}` makes; absent fields stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"keep_awake": true}))]
pub struct UpdateInstanceRequest {
    /// Keep the instance awake: the idle policy never pauses or stops it. How many instances
    /// may be pinned depends on the plan (403 `keep_awake_limit`).
    #[serde(default)]
    pub keep_awake: Option<bool>,
    /// A new label (an empty string clears it).
    #[serde(default)]
    pub name: Option<String>,
}

/// The sandbox as its host sees it right now, in ocaas's own words whatever the backend
/// (Docker's state words stay behind the runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SandboxState {
    /// Made, never started.
    Created,
    Running,
    /// Frozen: its processes keep their memory but get no CPU.
    Paused,
    Restarting,
    /// Not running (it exited or was stopped).
    Stopped,
    /// Failed beyond restarting; the instance's `last_error` says why.
    Dead,
    /// No sandbox exists for the instance.
    Missing,
    /// The host it runs on does not answer (`node.reachable` is false).
    Unreachable,
}

impl SandboxState {
    pub fn of(info: &crate::runtime::ContainerInfo) -> Self {
        match (info.paused, info.running, info.state.as_str()) {
            (true, _, _) => SandboxState::Paused,
            (false, true, _) => SandboxState::Running,
            (_, _, "created") => SandboxState::Created,
            (_, _, "restarting") => SandboxState::Restarting,
            (_, _, "dead") => SandboxState::Dead,
            _ => SandboxState::Stopped,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContainerStatus {
    pub state: SandboxState,
    #[serde(with = "crate::timefmt::option")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentStatus {
    /// Whether the gateway's `/readyz` answers 200 right now.
    pub ready: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceUsage {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
}

/// Where an instance runs, when that is a node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodePlacement {
    /// The node's name (`ocaas admin nodes list`).
    pub name: String,
    /// Whether the node answered this server lately (within 15 s).
    pub reachable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "8b21f18f-20eb-44ce-a31a-06798aea3e50", "status": "ready",
    "container": {"state": "running", "started_at": "2026-03-20T18:23:50.000Z"},
    "agent": {"ready": true}, "uptime_ms": 65000,
    "resources": {"cpu_percent": 1.5, "memory_bytes": 180000000, "memory_limit_bytes": 2147483648u64},
    "disk": {"used_bytes": 52428800, "limit_bytes": 10737418240u64}
}))]
pub struct InstanceStatusView {
    pub id: Uuid,
    /// The node (Docker host) the instance runs on; absent when it runs on the server's own
    /// engine. `reachable: false` while that node does not answer: calls then get 503
    /// `engine_unavailable`, and the instance is left as it is until the node is back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<NodePlacement>,
    pub status: InstanceStatus,
    pub container: ContainerStatus,
    pub agent: AgentStatus,
    /// Milliseconds since the container started; 0 when it is not running.
    pub uptime_ms: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceUsage>,
    /// Storage use, when the server sets a disk quota and the storage is mounted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskUsageView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// While `upgrading` or `rolling_back`: from which image to which.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<UpgradeProgress>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UpgradeProgress {
    pub from_image: String,
    pub to_image: String,
}
