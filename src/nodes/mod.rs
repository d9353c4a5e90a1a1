//! Nodes: the Docker hosts that run sandboxes for this server (`ocaas node` on each). A node
//! joins with a one-use token (`ocaas admin nodes join-token`) through `POST /internal/nodes/join`
//! and gets its credential; every API replica then watches the table (`watch`), keeps one
//! `RemoteRuntime` per node in the `Fleet`, pings each and records when it last answered.
//! Creates place an instance on the least-loaded node with room (`repo::place`), and it stays
//! there (its storage is on that host). With no node registered, everything runs on the
//! server's own engine, as a one-box server always has.

pub mod models;
pub mod repo;
pub mod service;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::error::AppResult;
use crate::extract::ApiJson;
use crate::metrics::Metrics;
use crate::runtime::Runtime;
use crate::runtime::egress::EgressPolicy;
use crate::runtime::fleet::{Fleet, Placement};
use crate::runtime::node::client::RemoteRuntime;
use crate::secrets::SecretKey;
use crate::state::AppState;

/// A node that has not answered for this long takes no new instances (and reports down).
pub const FRESH_SECS: i64 = 15;
/// How often each replica pings each node and reloads the table.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// `POST /internal/nodes/join`: for `ocaas node`, not in the public API document.
pub fn router() -> axum::Router<AppState> {
    axum::Router::new().route("/internal/nodes/join", post(join))
}

async fn join(State(state): State<AppState>, ApiJson(request): ApiJson<service::JoinRequest>) -> AppResult<axum::Json<service::Joined>> {
    Ok(axum::Json(service::join(&state.db, &state.settings.secret_key, &request).await?))
}

/// Where each sandbox is, from the instances table (the fleet remembers it briefly).
pub fn placement(db: PgPool) -> Placement {
    Arc::new(move |sandbox: String| {
        let db = db.clone();
        Box::pin(async move {
            repo::node_of_sandbox(&db, &sandbox)
                .await
                .map_err(|e| crate::runtime::RuntimeError::Unavailable(format!("where {sandbox} runs is unknown: {e}")))
        })
    })
}

/// A fleet with a runtime for every registered node now (for a command that does not watch:
/// `ocaas admin`); `serve` keeps its own in step with `watch`.
pub async fn fleet_now(db: &PgPool, key: &SecretKey, local: Arc<dyn Runtime>) -> anyhow::Result<Fleet> {
    let fleet = Fleet::new(local, placement(db.clone()));
    for node in repo::all(db).await? {
        fleet.set_node(node.id, Arc::new(remote(key, &node)?));
    }
    Ok(fleet)
}

/// The runtime that reaches `node`: its address, its pinned certificate, its credential opened.
fn remote(key: &SecretKey, node: &models::NodeRow) -> anyhow::Result<RemoteRuntime> {
    let credential = key.open(&node.credential).and_then(|c| String::from_utf8(c).ok());
    let credential = credential.ok_or_else(|| anyhow::anyhow!("node {}: its credential does not open with this server's secret key", node.name))?;
    RemoteRuntime::new(node.address.clone(), &node.fingerprint, credential)
}

/// Starts the watcher for `fleet`, the runtime `state` was made with.
pub fn spawn(state: &AppState, fleet: Fleet) {
    let egress = state.settings.instances.egress.clone();
    tokio::spawn(watch(state.db.clone(), state.settings.secret_key.clone(), fleet, egress, state.metrics.clone(), state.shutdown.clone()));
}

type Known = std::collections::HashMap<uuid::Uuid, (String, bool)>;

/// Keeps `fleet` in step with the nodes table and pings every node until `shutdown`.
pub async fn watch(db: PgPool, key: SecretKey, fleet: Fleet, egress: EgressPolicy, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let mut known = Known::default();
    loop {
        match repo::all(&db).await {
            Ok(nodes) => {
                known.retain(|id, _| {
                    let kept = nodes.iter().any(|n| n.id == *id);
                    if !kept {
                        fleet.remove_node(*id);
                    }
                    kept
                });
                let linked: Vec<_> = nodes.iter().filter_map(|node| link(&key, &fleet, &mut known, node).map(|(r, up)| (node, r, up))).collect();
                let (db, egress) = (&db, &egress);
                let pings = linked.into_iter().map(|(node, runtime, was_up)| async move {
                    let up = ping(db, runtime.as_ref(), egress, node, was_up).await;
                    (node, up)
                });
                for (node, up) in futures_util::future::join_all(pings).await {
                    metrics.node_up.with_label_values(&[&node.name]).set(i64::from(up));
                    metrics.node_instances.with_label_values(&[&node.name]).set(node.instances);
                    metrics.node_capacity.with_label_values(&[&node.name]).set(i64::from(node.capacity));
                    if let Some(entry) = known.get_mut(&node.id) {
                        entry.1 = up;
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "nodes: reading the table failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(WATCH_EVERY) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// The fleet's runtime for `node` (set up when new or re-joined), and whether it was up.
fn link(key: &SecretKey, fleet: &Fleet, known: &mut Known, node: &models::NodeRow) -> Option<(Arc<dyn Runtime>, bool)> {
    let identity = format!("{}|{}", node.address, node.fingerprint);
    let was_up = match known.get(&node.id) {
        Some((seen, up)) if *seen == identity => *up,
        _ => {
            match remote(key, node) {
                Ok(runtime) => fleet.set_node(node.id, Arc::new(runtime)),
                Err(error) => {
                    tracing::error!(node = %node.name, error = format!("{error:#}"), "nodes: cannot set up the link");
                    return None;
                }
            }
            known.insert(node.id, (identity, false));
            false
        }
    };
    Some((fleet.node(node.id)?, was_up))
}

/// Pings a node (setting up its network when it comes back); whether it answered.
async fn ping(db: &PgPool, runtime: &dyn Runtime, egress: &EgressPolicy, node: &models::NodeRow, was_up: bool) -> bool {
    if runtime.ping().await.is_err() {
        if was_up {
            tracing::warn!(node = %node.name, "nodes: a node stopped answering");
        }
        return false;
    }
    if !was_up {
        // Capped: one slow node must not hold up the round that keeps the others seen.
        let network = tokio::time::timeout(Duration::from_secs(20), runtime.ensure_network(egress));
        if let Err(error) = network.await.unwrap_or_else(|_| Err(crate::runtime::RuntimeError::Unavailable("timed out".into()))) {
            tracing::warn!(node = %node.name, %error, "nodes: the sandbox network could not be set up");
            return false;
        }
        tracing::info!(node = %node.name, "nodes: node answers");
    }
    let _ = repo::seen(db, node.id).await;
    true
}
