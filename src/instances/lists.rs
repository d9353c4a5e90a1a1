//! `GET /api/instances` answered from `state::UserViews` when it may be trusted, else read
//! from the database and remembered; and the listener that keeps that cache honest: the
//! `ocaas_instances` notifications a trigger sends with the owner's id on every change of an
//! instance row, from any process.

use axum::body::Bytes;
use sqlx::PgPool;
use uuid::Uuid;

use super::models::Instance;
use super::repo;
use crate::error::AppResult;
use crate::state::{AppState, UserViews};

pub const CHANNEL: &str = "ocaas_instances";

pub fn spawn(state: &AppState) {
    crate::state::follow(&state.instance_lists, state.db.clone(), state.shutdown.clone(), CHANNEL);
}

/// The user's instances, newest first, as the JSON array the API answers.
pub async fn listed(db: &PgPool, lists: &UserViews, user_id: Uuid) -> AppResult<Bytes> {
    if let Some(body) = lists.get(user_id) {
        return Ok(body);
    }
    let ticket = lists.ticket();
    let rows = repo::list_for_user(db, user_id).await?;
    let instances: Vec<Instance> = rows.into_iter().map(Instance::from).collect();
    let body = Bytes::from(serde_json::to_vec(&instances).map_err(anyhow::Error::from)?);
    lists.put(user_id, ticket, body.clone(), None);
    Ok(body)
}
