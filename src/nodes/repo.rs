//! SQL of nodes: join tokens, the nodes themselves, and placing an instance on one.

use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::models::NodeRow;

pub async fn add_join_token(db: &PgPool, token_hash: &[u8], name: &str, capacity: i32, labels: &Value, valid_secs: i64) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO node_join_tokens (token_hash, name, capacity, labels, expires_at) VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        token_hash,
        name,
        capacity,
        labels,
        valid_secs as f64
    )
    .execute(db)
    .await
    .map(drop)
}

pub struct Joining {
    pub name: String,
    pub capacity: i32,
    pub labels: Value,
}

/// Uses up a join token that is still valid.
pub async fn take_join_token(db: &mut PgConnection, token_hash: &[u8]) -> sqlx::Result<Option<Joining>> {
    sqlx::query_as!(Joining, "DELETE FROM node_join_tokens WHERE token_hash = $1 AND expires_at > now() RETURNING name, capacity, labels", token_hash)
        .fetch_optional(db)
        .await
}

pub struct NewNode<'a> {
    pub name: &'a str,
    pub address: &'a str,
    pub fingerprint: &'a str,
    pub credential: &'a [u8],
    pub capacity: i32,
    pub labels: &'a Value,
}

/// `None` when a node of that name exists.
pub async fn insert(db: &mut PgConnection, new: &NewNode<'_>) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "INSERT INTO nodes (id, name, address, fingerprint, credential, capacity, labels) VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (name) DO NOTHING RETURNING id",
        Uuid::now_v7(),
        new.name,
        new.address,
        new.fingerprint,
        new.credential,
        new.capacity,
        new.labels
    )
    .fetch_optional(db)
    .await
}

pub async fn all(db: impl PgExecutor<'_>) -> sqlx::Result<Vec<NodeRow>> {
    sqlx::query_as!(
        NodeRow,
        r#"SELECT n.id, n.name, n.address, n.fingerprint, n.credential, n.capacity, n.labels, n.draining, n.last_seen, n.created_at,
                (SELECT count(*) FROM instances i WHERE i.node_id = n.id) AS "instances!"
         FROM nodes n ORDER BY n.name"#
    )
    .fetch_all(db)
    .await
}

/// A node's sealed credential.
pub async fn credential_of(db: &PgPool, id: Uuid) -> sqlx::Result<Option<Vec<u8>>> {
    sqlx::query_scalar!("SELECT credential FROM nodes WHERE id = $1", id).fetch_optional(db).await
}

/// Every node's id.
pub async fn ids(db: &PgPool) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query_scalar!("SELECT id FROM nodes ORDER BY name").fetch_all(db).await
}

pub async fn seen(db: &PgPool, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("UPDATE nodes SET last_seen = now() WHERE id = $1", id).execute(db).await.map(drop)
}

/// Sets `draining`; false when no node has that name.
pub async fn set_draining(db: &PgPool, name: &str, draining: bool) -> sqlx::Result<bool> {
    Ok(sqlx::query!("UPDATE nodes SET draining = $2 WHERE name = $1", name, draining).execute(db).await?.rows_affected() == 1)
}

/// Removes a node that holds no instance: `Ok(None)` if there is no such node, `Ok(Some(n))`
/// with the instances it still holds (then nothing is removed).
pub async fn remove(db: &PgPool, name: &str) -> sqlx::Result<Option<i64>> {
    let mut tx = db.begin().await?;
    let Some(id) = sqlx::query_scalar!("SELECT id FROM nodes WHERE name = $1 FOR UPDATE", name).fetch_optional(&mut *tx).await? else {
        return Ok(None);
    };
    let held = sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM instances WHERE node_id = $1"#, id).fetch_one(&mut *tx).await?;
    if held == 0 {
        sqlx::query!("DELETE FROM nodes WHERE id = $1", id).execute(&mut *tx).await?;
        tx.commit().await?;
    }
    Ok(Some(held))
}

/// Whether any node is registered (then new sandboxes go to nodes only).
pub async fn any(db: &mut PgConnection) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM nodes) AS "any!""#).fetch_one(db).await
}

/// The least-loaded node that answers, is not draining and has room, other than `except`;
/// `None` if none has. `fresh_secs`: how recently a node must have answered. Call with the
/// creation lock held when the choice is for a new instance.
pub async fn pick(db: &mut PgConnection, fresh_secs: i64, except: Option<Uuid>) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        r#"SELECT n.id AS "id!" FROM nodes n
           LEFT JOIN LATERAL (SELECT count(*) AS held FROM instances i WHERE i.node_id = n.id) c ON true
           WHERE NOT n.draining AND n.last_seen > now() - make_interval(secs => $1) AND c.held < n.capacity
             AND n.id IS DISTINCT FROM $2
           ORDER BY c.held::float8 / n.capacity, n.name
           LIMIT 1"#,
        fresh_secs as f64,
        except
    )
    .fetch_optional(db)
    .await
}

pub async fn assign(db: &mut PgConnection, instance_id: Uuid, node: Uuid) -> sqlx::Result<()> {
    sqlx::query!("UPDATE instances SET node_id = $2 WHERE id = $1", instance_id, node).execute(db).await.map(drop)
}

/// The node an instance is on (`None`: the server's own engine).
pub async fn node_id_of(db: &PgPool, instance_id: Uuid) -> sqlx::Result<Option<Uuid>> {
    Ok(sqlx::query_scalar!("SELECT node_id FROM instances WHERE id = $1", instance_id).fetch_optional(db).await?.flatten())
}

/// Records the instance on `node` (`None`: this host) with `snapshot` pending for its storage.
pub async fn set_moved(db: &PgPool, instance_id: Uuid, node: Option<Uuid>, snapshot: Option<Uuid>) -> sqlx::Result<()> {
    sqlx::query!("UPDATE instances SET node_id = $2, pending_snapshot_id = $3, updated_at = now() WHERE id = $1", instance_id, node, snapshot)
        .execute(db)
        .await
        .map(drop)
}

/// The node an instance's sandbox is on (`None`: the server's own engine, or no such row).
pub async fn node_of_sandbox(db: &PgPool, sandbox_id: &str) -> sqlx::Result<Option<Uuid>> {
    Ok(sqlx::query_scalar!("SELECT node_id FROM instances WHERE sandbox_id = $1", sandbox_id).fetch_optional(db).await?.flatten())
}

/// The node of an instance, with whether it answered lately.
pub async fn node_of_instance(db: &PgPool, instance_id: Uuid, fresh_secs: i64) -> sqlx::Result<Option<(String, bool)>> {
    let row = sqlx::query!(
        r#"SELECT n.name, coalesce(n.last_seen > now() - make_interval(secs => $2), false) AS "up!"
           FROM instances i JOIN nodes n ON n.id = i.node_id WHERE i.id = $1"#,
        instance_id,
        fresh_secs as f64
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| (r.name, r.up)))
}
