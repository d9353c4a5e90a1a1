//! A node as stored, and as the operator's commands show it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

pub struct NodeRow {
    pub id: Uuid,
    pub name: String,
    pub address: String,
    pub fingerprint: String,
    /// Sealed with the server's secret key.
    pub credential: Vec<u8>,
    pub capacity: i32,
    pub labels: Value,
    pub draining: bool,
    pub last_seen: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// Instances placed on it.
    pub instances: i64,
}

/// `ocaas admin nodes list --json`.
#[derive(Serialize)]
pub struct NodeView {
    pub id: Uuid,
    pub name: String,
    pub address: String,
    pub fingerprint: String,
    pub capacity: i32,
    pub instances: i64,
    pub labels: Value,
    pub draining: bool,
    pub last_seen: Option<DateTime<Utc>>,
}

impl From<&NodeRow> for NodeView {
    fn from(n: &NodeRow) -> Self {
        NodeView {
            id: n.id,
            name: n.name.clone(),
            address: n.address.clone(),
            fingerprint: n.fingerprint.clone(),
            capacity: n.capacity,
            instances: n.instances,
            labels: n.labels.clone(),
            draining: n.draining,
            last_seen: n.last_seen,
        }
    }
}
