//! Joining: a node trades a one-use token for its place in the table and a credential, and
//! the operator's tokens are made here too.

use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use super::repo;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::runtime::node::new_credential;
use crate::secrets::SecretKey;

/// How long a join token may wait to be used.
pub const JOIN_TOKEN_SECS: i64 = 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    pub token: String,
    /// `host:port` where the replicas reach the node.
    pub address: String,
    /// SHA-256 (hex) of the node's certificate.
    pub fingerprint: String,
}

#[derive(Serialize, Deserialize)]
pub struct Joined {
    pub node_id: Uuid,
    pub name: String,
    /// What the replicas will present; the node keeps only its hash.
    pub credential: String,
}

fn token_hash(token: &str) -> Vec<u8> {
    crate::runtime::node::credential_hash(token).to_vec()
}

/// A new join token for a node to be called `name`.
pub async fn join_token(db: &PgPool, name: &str, capacity: i32, labels: &serde_json::Value) -> anyhow::Result<String> {
    let token = format!("ocaasjoin_{}", &new_credential()["ocaasnode_".len()..]);
    repo::add_join_token(db, &token_hash(&token), name, capacity, labels, JOIN_TOKEN_SECS).await?;
    Ok(token)
}

/// Where a new sandbox goes.
pub enum Pick {
    /// The server's own engine: no node is registered.
    Here,
    Node(Uuid),
    /// Nodes are registered and none has room (or answers).
    Full,
}

/// Chooses where a new sandbox goes; call with the creation lock held, and `Pick::Node`'s
/// node is the instance's once `repo::assign` is called in the same transaction.
pub async fn pick(tx: &mut sqlx::PgConnection) -> sqlx::Result<Pick> {
    if !repo::any(&mut *tx).await? {
        return Ok(Pick::Here);
    }
    Ok(repo::pick(tx, super::FRESH_SECS, None).await?.map_or(Pick::Full, Pick::Node))
}

fn check_address(address: &str) -> AppResult<()> {
    let parsed = url::Url::parse(&format!("https://{address}")).ok();
    let plain = parsed.as_ref().is_some_and(|u| u.host().is_some() && u.port().is_some() && u.path() == "/" && u.username().is_empty());
    if address.len() > 255 || !plain {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`address` must be host:port."));
    }
    Ok(())
}

pub async fn join(db: &PgPool, key: &SecretKey, request: &JoinRequest) -> AppResult<Joined> {
    check_address(&request.address)?;
    if request.fingerprint.len() != 64 || !request.fingerprint.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()) {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`fingerprint` must be 64 lowercase hex digits."));
    }
    let mut tx = db.begin().await?;
    let Some(joining) = repo::take_join_token(&mut tx, &token_hash(&request.token)).await? else {
        return Err(AppError::new(ErrorCode::JoinTokenInvalid, "The join token is unknown, used or expired."));
    };
    let credential = new_credential();
    let sealed = key.seal(credential.as_bytes());
    let new = repo::NewNode {
        name: &joining.name,
        address: &request.address,
        fingerprint: &request.fingerprint,
        credential: &sealed,
        capacity: joining.capacity,
        labels: &joining.labels,
    };
    let Some(node_id) = repo::insert(&mut tx, &new).await? else {
        return Err(AppError::new(ErrorCode::NodeExists, format!("A node called {} has joined already.", joining.name)));
    };
    tx.commit().await?;
    tracing::info!(node = %joining.name, address = %request.address, "nodes: a node joined");
    Ok(Joined { node_id, name: joining.name, credential })
}

/// Whether `presented` is the relay key of node `id` (`runtime::node::relay_key`).
pub async fn relay_key_is(db: &PgPool, key: &SecretKey, id: Uuid, presented: &str) -> sqlx::Result<bool> {
    use subtle::ConstantTimeEq;
    let Some(sealed) = repo::credential_of(db, id).await? else { return Ok(false) };
    let Some(credential) = key.open(&sealed).and_then(|c| String::from_utf8(c).ok()) else { return Ok(false) };
    let expected = crate::runtime::node::relay_key(&credential);
    Ok(bool::from(expected.as_bytes().ct_eq(presented.as_bytes())))
}
