//! Wire types of the snapshot API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::repo::SnapshotRow;

// Who took a snapshot. A plain comment: a doc comment would become the schema's description.
crate::text_enum! {
    pub enum SnapshotKind {
        Manual => "manual",
        Scheduled => "scheduled",
        Safety => "safety",
        Upgrade => "upgrade",
    }
}

crate::text_enum! {
    pub enum SnapshotStatus {
        Creating => "creating",
        Ready => "ready",
        Failed => "failed",
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193b6c2-7d1e-7cc0-9f43-2b1f7e0c9a12", "instance_id": "8b21f18f-20eb-44ce-a31a-06798aea3e50",
    "name": "before refactor", "kind": "manual", "status": "ready", "size_bytes": 1048576,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "image": "ocaas-sandbox:offline-0123456789abcdef", "created_at": "2026-03-20T18:22:54.000Z", "error": null
}))]
pub struct Snapshot {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub name: Option<String>,
    /// `manual` (yours), `scheduled` (the backup schedule), `safety` (taken before a restore),
    /// `upgrade` (taken before an upgrade: its rollback point).
    pub kind: SnapshotKind,
    pub status: SnapshotStatus,
    /// Compressed size (a gzip-compressed tar of `workspace/` and `state/`).
    pub size_bytes: i64,
    /// SHA-256 of the download, in hex.
    pub sha256: Option<String>,
    /// The image the instance ran.
    pub image: String,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    /// Why a `failed` snapshot failed.
    pub error: Option<String>,
}

impl From<SnapshotRow> for Snapshot {
    fn from(row: SnapshotRow) -> Self {
        Snapshot {
            id: row.id,
            instance_id: row.instance_id,
            name: row.name,
            kind: row.kind,
            status: row.status,
            size_bytes: row.size_bytes,
            sha256: row.sha256,
            image: row.image,
            created_at: row.created_at,
            error: row.error,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "before refactor"}))]
pub struct CreateSnapshot {
    /// A label (at most 100 characters).
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"snapshot_id": "0193b6c2-7d1e-7cc0-9f43-2b1f7e0c9a12"}))]
pub struct RestoreRequest {
    /// A `ready` snapshot of this instance.
    pub snapshot_id: Uuid,
}
