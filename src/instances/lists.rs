//! `GET /api/instances` answered from `state::UserViews` when it may be trusted, else read
//! from the database and remembered; the instance behind `/api/instances/{id}/…` found in the
//! same remembered rows (a chat turn or a file call then costs no lookup round trip); and the
//! listener that keeps that cache honest: the `ocaas_instances` notifications a trigger sends
//! with the owner's id on every change of an instance row, from any process.

use std::sync::Arc;

use sqlx::PgPool;
use uuid::Uuid;

use super::models::Instance;
use super::repo::{self, InstanceRow};
use crate::db::notify::Listeners;
use crate::error::AppResult;
use crate::state::{AppState, CachedJson, UserViews};

pub const CHANNEL: &str = "ocaas_instances";

pub fn listen(state: &AppState, listeners: &mut Listeners) {
    crate::state::follow(&state.instance_lists, listeners, CHANNEL);
}

/// The user's instances, newest first, as the JSON array the API answers.
pub async fn listed(db: &PgPool, lists: &UserViews, user_id: Uuid) -> AppResult<CachedJson> {
    Ok(CachedJson(rows(db, lists, user_id).await?.0))
}

/// The user's instance `id`, from the user's rows as remembered (read and remembered first if
/// they may not be trusted); `None` when the user has no such instance. An id missing from
/// the remembered rows is looked up once more: it may have been created by another process a
/// moment ago, before its notification arrived.
pub async fn find(db: &PgPool, lists: &UserViews, user_id: Uuid, id: Uuid) -> AppResult<Option<InstanceRow>> {
    if let Some(row) = rows(db, lists, user_id).await?.1.iter().find(|row| row.id == id) {
        return Ok(Some(row.clone()));
    }
    Ok(repo::get_for_user(db, id, user_id).await?)
}

async fn rows(db: &PgPool, lists: &UserViews, user_id: Uuid) -> AppResult<(bytes::Bytes, Arc<Vec<InstanceRow>>)> {
    lists
        .view(user_id, async {
            let rows = repo::list_for_user(db, user_id).await?;
            let listed = rows.iter().cloned().map(Instance::from).collect::<Vec<_>>();
            Ok((listed, None, Arc::new(rows)))
        })
        .await
}
