//! The warm pool (`OCAAS_WARM_POOL=N`): N sandboxes started and ready, owned by nobody and
//! never having run user code, so a create is answered with a `ready` instance at once. Each
//! pool sandbox is an instance row with no owner, created like any other — its own sandbox
//! name, gateway token, broker token, storage and labels (without an owner label) — so a
//! claim only writes the owner: nothing of anyone else can be in it, and a sandbox is claimed
//! once (the row is deleted with its instance, never returned to the pool). The pool counts
//! against `OCAAS_MAX_INSTANCES`; sandboxes of an older image are replaced.

pub mod repo;

use uuid::Uuid;

use super::lifecycle;
use super::machine::{self, Op};
use super::repo::{self as instances_repo, NewInstance};
use crate::auth::secrets;
use crate::state::AppState;

/// Refills the pool now and then every reconcile interval (or when a claim asks) until shutdown.
pub fn spawn(state: AppState) {
    tokio::spawn(async move {
        loop {
            if let Err(error) = fill_once(&state).await {
                tracing::warn!(error = format!("{error:#}"), "warm pool refill failed");
            }
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                () = state.pool_refill.notified() => {}
                () = tokio::time::sleep(state.settings.instances.reconcile_interval) => {}
            }
        }
    });
}

/// Replaces stale pool sandboxes and starts new ones up to the pool size, within capacity.
pub async fn fill_once(state: &AppState) -> anyhow::Result<()> {
    let image = &state.settings.instances.image;
    let target = i64::from(state.settings.idle.warm_pool);
    let mut unwanted = repo::stale(&state.db, image).await?;
    unwanted.extend(repo::surplus(&state.db, image, target).await?);
    for id in unwanted {
        release(state, id).await?;
    }
    let mut tx = state.db.begin().await?;
    instances_repo::lock_creation(&mut *tx).await?;
    let warm = repo::count_warm(&mut tx, image).await?;
    let room = i64::from(state.settings.instances.max_instances) - instances_repo::count_all(&mut *tx).await?;
    let mut added = Vec::new();
    for _ in 0..(target - warm).min(room).max(0) {
        // With nodes, each warm sandbox goes where a create would put it.
        let pick = crate::nodes::service::pick(&mut tx).await?;
        if matches!(pick, crate::nodes::service::Pick::Full) {
            break;
        }
        let sandbox_id = super::access::new_sandbox_id();
        let token = secrets::new_session_token();
        let facts = crate::instances::facts::Facts::for_new(&state.settings.instances, &sandbox_id);
        let new = NewInstance {
            user_id: None,
            sandbox_id: &sandbox_id,
            name: None,
            image,
            gateway_token: &token,
            seed_snapshot: None,
            facts: &facts,
            org_id: None,
        };
        let id = instances_repo::insert(&mut *tx, &new).await?.id;
        if let crate::nodes::service::Pick::Node(node) = pick {
            crate::nodes::repo::assign(&mut tx, id, node).await?;
        }
        added.push(id);
    }
    tx.commit().await?;
    for id in added {
        tracing::info!(%id, "warm pool: starting a sandbox");
        lifecycle::spawn_drive(state, id);
    }
    Ok(())
}

/// Removes a pool sandbox (the deleting driver removes container and storage, then the row),
/// unless a create claimed it since it was listed (another replica's, on another image).
async fn release(state: &AppState, id: Uuid) -> sqlx::Result<()> {
    if machine::apply_guarded(&state.db, id, Op::Delete, instances_repo::Guard::Unowned).await?.is_some() {
        tracing::info!(%id, "warm pool: removing a stale or surplus sandbox");
        lifecycle::spawn_drive(state, id);
    }
    Ok(())
}
