//! `GET /api/instances` answered from `state::UserViews` when it may be trusted, else read
//! from the database and remembered; and the listener that keeps that cache honest: the
//! `ocaas_instances` notifications a trigger sends with the owner's id on every change of an
//! instance row, from any process.

use sqlx::PgPool;
use uuid::Uuid;

use super::models::Instance;
use super::repo;
use crate::error::AppResult;
use crate::state::{AppState, CachedJson, UserViews};

pub const CHANNEL: &str = "ocaas_instances";

pub fn spawn(state: &AppState) {
    crate::state::follow(&state.instance_lists, state.db.clone(), state.shutdown.clone(), CHANNEL);
}

/// The user's instances, newest first, as the JSON array the API answers.
pub async fn listed(db: &PgPool, lists: &UserViews, user_id: Uuid) -> AppResult<CachedJson> {
    lists
        .answer(user_id, async {
            let rows = repo::list_for_user(db, user_id).await?;
            Ok((rows.into_iter().map(Instance::from).collect::<Vec<_>>(), None))
        })
        .await
}
