//! Websocket tickets: random, single-use, short-lived, bound to one user and one instance.
//! Browsers cannot put an `Authorization` header on a websocket handshake, so `vnc-url` hands
//! out a ticket to put in the query string instead; only its SHA-256 is stored.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{repo, secrets};
use crate::error::{AppError, AppResult};
use sqlx::PgPool;

pub struct Ticket {
    pub secret: String,
    pub expires_at: DateTime<Utc>,
}

pub async fn issue(db: &PgPool, ttl: std::time::Duration, user_id: Uuid, instance_id: Uuid) -> AppResult<Ticket> {
    let secret = secrets::random_token(32);
    let ttl = chrono::Duration::from_std(ttl).map_err(anyhow::Error::from)?;
    let expires_at = Utc::now() + ttl;
    repo::insert_ticket(db, &secrets::sha256(&secret), user_id, instance_id, expires_at).await?;
    Ok(Ticket { secret, expires_at })
}

/// The user a ticket stands for, consuming it; 401 saying why when it cannot be used.
pub async fn redeem(db: &PgPool, secret: &str, instance_id: Uuid) -> AppResult<Uuid> {
    let hash = secrets::sha256(secret);
    if let Some(user_id) = repo::redeem_ticket(db, &hash, instance_id).await? {
        return Ok(user_id);
    }
    let reason = match repo::ticket(db, &hash).await? {
        None => "The ticket is not valid.",
        Some(t) if t.used_at.is_some() => "The ticket was already used; each ticket opens one connection (get a new one from vnc-url).",
        Some(t) if t.expires_at <= Utc::now() => "The ticket has expired; get a new one from vnc-url.",
        Some(t) if t.instance_id != instance_id => "The ticket is for another instance.",
        Some(_) => "The ticket is not valid.",
    };
    Err(AppError::unauthorized(reason))
}
