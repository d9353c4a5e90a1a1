//! Who may create an instance: an active subscription, or an invite code redeemed on the spot;
//! the plan's `max_instances`; the server's capacity. Checked and inserted in one transaction
//! under an advisory lock, so concurrent creates cannot overshoot either limit. A create takes
//! a warm sandbox from the pool when there is one.

use chrono::Utc;
use uuid::Uuid;

use super::repo::{self, InstanceRow, NewInstance};
use crate::auth::{repo as auth_repo, secrets, service as auth_service};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::nodes::service::Pick;
use crate::state::AppState;

/// Seconds a client is told to wait when the server is full.
const CAPACITY_RETRY_AFTER_SECS: u64 = 60;
const MAX_NAME_CHARS: usize = 100;

/// What a create asks for.
pub struct Admission<'a> {
    pub invite_code: Option<&'a str>,
    pub name: Option<&'a str>,
    /// A clone's source snapshot (checked by `clone_source`).
    pub seed: Option<Uuid>,
    /// The organisation it is made for (the caller must manage it).
    pub org_id: Option<Uuid>,
}

/// The snapshot a clone starts from, `ready`: one of the user's own instances', or of an
/// organisation's instance whose snapshots the user's role may download (not one of an
/// organisation they left); else 404 or 409.
pub async fn clone_source(state: &AppState, user_id: Uuid, snapshot_id: Uuid) -> AppResult<Uuid> {
    let not_yours = || AppError::new(ErrorCode::SnapshotNotFound, "`from_snapshot` is not one of your snapshots.");
    let snapshot = crate::snapshots::repo::get(&state.db, snapshot_id).await?.ok_or_else(not_yours)?;
    let source = repo::get(&state.db, snapshot.instance_id).await?.ok_or_else(not_yours)?;
    match source.org_id {
        Some(org_id) => {
            let download = "/api/instances/{instanceId}/snapshots/{snapshotId}/download";
            crate::orgs::roles::check(&state.db, org_id, user_id, &axum::http::Method::GET, download).await.map_err(|_| not_yours())?;
        }
        None if snapshot.user_id != user_id => return Err(not_yours()),
        None => {}
    }
    if snapshot.status != crate::snapshots::models::SnapshotStatus::Ready {
        return Err(AppError::new(ErrorCode::InvalidState, format!("The snapshot is {}.", snapshot.status.as_str())));
    }
    Ok(snapshot.id)
}

pub async fn admit_and_insert(state: &AppState, user_id: Uuid, request: &Admission<'_>) -> AppResult<InstanceRow> {
    let name = request.name.map(check_name).transpose()?.flatten();
    let invite_code = request.invite_code.map(str::trim).filter(|c| !c.is_empty());
    let mut tx = state.db.begin().await?;
    repo::lock_creation(&mut *tx).await?;
    let max_instances = match request.org_id {
        Some(org_id) => org_plan(&mut tx, user_id, org_id).await?,
        None => user_plan(&mut tx, user_id, invite_code).await?,
    };
    let count = match request.org_id {
        Some(org_id) => repo::count_for_org(&mut *tx, org_id).await?,
        None => repo::count_for_user(&mut *tx, user_id).await?,
    };
    if count >= i64::from(max_instances) {
        let whose = if request.org_id.is_some() { "The organisation's plan" } else { "Your plan" };
        return Err(AppError::new(
            ErrorCode::InstanceLimitReached,
            format!("{whose} allows {max_instances} instance(s); delete one to create another."),
        ));
    }
    // A warm sandbox, if the pool has one: the instance is `ready` at once (not for a clone,
    // whose storage must hold its snapshot before the gateway first starts).
    if request.seed.is_none()
        && let Some(claimed) =
            super::pool::repo::claim(&mut tx, user_id, request.org_id, name, &state.settings.instances.image, crate::nodes::FRESH_SECS).await?
    {
        tx.commit().await?;
        crate::state::user_data_written();
        state.pool_refill.notify_one();
        return Ok(claimed);
    }
    if repo::count_all(&mut *tx).await? >= i64::from(state.settings.instances.max_instances) {
        return Err(
            AppError::new(ErrorCode::CapacityExhausted, "The server is at capacity; try again later.").with_retry_after(CAPACITY_RETRY_AFTER_SECS)
        );
    }
    let pick = crate::nodes::service::pick(&mut tx).await?;
    if matches!(pick, Pick::Full) {
        return Err(AppError::new(ErrorCode::CapacityExhausted, "No node has room for another instance; try again later.")
            .with_retry_after(CAPACITY_RETRY_AFTER_SECS));
    }
    let sandbox_id = new_sandbox_id();
    let token = secrets::new_session_token();
    let facts = super::facts::Facts::for_new(&state.settings.instances, &sandbox_id);
    let new = NewInstance {
        user_id: Some(user_id),
        sandbox_id: &sandbox_id,
        name,
        image: &state.settings.instances.image,
        gateway_token: &token,
        seed_snapshot: request.seed,
        facts: &facts,
        org_id: request.org_id,
    };
    let row = repo::insert(&mut *tx, &new).await?;
    if let Pick::Node(node) = pick {
        crate::nodes::repo::assign(&mut tx, row.id, node).await?;
    }
    tx.commit().await?;
    crate::state::user_data_written();
    Ok(row)
}

/// The organisation's `max_instances`, if the caller manages it (owner or admin).
async fn org_plan(tx: &mut sqlx::PgConnection, user_id: Uuid, org_id: Uuid) -> AppResult<i32> {
    let role = crate::orgs::repo::role(&mut *tx, org_id, user_id).await?;
    let Some(role) = role else { return Err(AppError::new(ErrorCode::OrgNotFound, "`org_id` is not an organisation you belong to.")) };
    if !role.manages() {
        return Err(AppError::new(
            ErrorCode::RoleInsufficient,
            format!("Your role in the organisation ({role}) does not allow creating instances; owners and admins may."),
        ));
    }
    Ok(crate::orgs::repo::lock_plan(tx, org_id).await?.unwrap_or(0))
}

/// The user's plan's `max_instances`: an active subscription, or one the invite code grants.
async fn user_plan(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>, user_id: Uuid, invite_code: Option<&str>) -> AppResult<i32> {
    let current = auth_repo::subscription(&mut **tx, user_id).await?;
    let active = current.as_ref().filter(|s| s.expires_at.is_none_or(|at| at > Utc::now()));
    match (active, invite_code) {
        (Some(plan), _) => Ok(plan.max_instances),
        (None, Some(code)) => {
            auth_service::redeem_invite(tx, user_id, code).await?;
            Ok(auth_repo::subscription(&mut **tx, user_id).await?.map(|s| s.max_instances).unwrap_or(0))
        }
        (None, None) => {
            let message = if current.is_some() {
                "Your subscription has expired; pass an `invite_code` to renew it."
            } else {
                "Creating an instance needs an active subscription or an `invite_code`."
            };
            Err(AppError::new(ErrorCode::SubscriptionRequired, message))
        }
    }
}

/// A label as stored: trimmed, `None` when empty; refused when too long or not printable.
pub fn check_name(raw: &str) -> AppResult<Option<&str>> {
    crate::extract::printable_label(raw, "name", MAX_NAME_CHARS)
}

pub fn new_sandbox_id() -> String {
    let hex = Uuid::new_v4().simple().to_string();
    format!("sandy-{}", &hex[..12])
}
