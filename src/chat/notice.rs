//! System messages ocaas posts into an instance's chat (limits reached, an upgrade rolled
//! back): a `system` message in the latest session — or a new one — which the event feed
//! carries like any other message.

use sqlx::PgPool;
use uuid::Uuid;

use super::models::{MessageStatus, Role};
use super::repo;

pub async fn post(db: &PgPool, instance_id: Uuid, text: &str) -> sqlx::Result<()> {
    let session = match repo::latest_session(db, instance_id).await? {
        Some(session) => session,
        None => repo::insert_session(db, instance_id, Some("Notices")).await?,
    };
    repo::insert_message(db, Uuid::now_v7(), session.id, Role::System, text, MessageStatus::Complete).await?;
    Ok(())
}
