//! SQL of the driver leases (`instance_leases`): who drives an instance, until when. Each
//! acquisition has a token of its own, so a late release of an earlier holder can never end a
//! newer one's lease.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

/// What an attempt to take an instance's lease found.
#[derive(Debug, PartialEq, Eq)]
pub enum Attempt {
    Taken,
    /// Someone else holds it and it has not expired.
    Held,
    /// No such instance (deleted): there is nothing to drive.
    NoInstance,
}

/// Takes the lease for `ttl` if it is free or expired.
pub async fn try_take(db: &PgPool, instance_id: Uuid, token: Uuid, ttl: Duration) -> sqlx::Result<Attempt> {
    let taken = sqlx::query_scalar!(
        r#"INSERT INTO instance_leases (instance_id, holder, expires_at)
           SELECT $1, $2, now() + make_interval(secs => $3) WHERE EXISTS (SELECT 1 FROM instances WHERE id = $1)
           ON CONFLICT (instance_id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
               WHERE instance_leases.expires_at < now()
           RETURNING holder"#,
        instance_id,
        token,
        ttl.as_secs_f64()
    )
    .fetch_optional(db)
    .await?;
    if taken.is_some() {
        return Ok(Attempt::Taken);
    }
    let exists = sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM instances WHERE id = $1) AS "exists!""#, instance_id).fetch_one(db).await?;
    Ok(if exists { Attempt::Held } else { Attempt::NoInstance })
}

/// Extends a held lease; `false` when it is no longer this token's (expired and taken over,
/// or the instance is gone).
pub async fn renew(db: &PgPool, instance_id: Uuid, token: Uuid, ttl: Duration) -> sqlx::Result<bool> {
    let renewed = sqlx::query!(
        "UPDATE instance_leases SET expires_at = now() + make_interval(secs => $3) WHERE instance_id = $1 AND holder = $2",
        instance_id,
        token,
        ttl.as_secs_f64()
    )
    .execute(db)
    .await?;
    Ok(renewed.rows_affected() == 1)
}

pub async fn release(db: &PgPool, instance_id: Uuid, token: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM instance_leases WHERE instance_id = $1 AND holder = $2", instance_id, token).execute(db).await?;
    Ok(())
}

/// The channel on which a process asks the others to cancel their driver of an instance.
pub const CANCEL_CHANNEL: &str = "ocaas_driver_cancel";

/// Asks every process (through `CANCEL_CHANNEL`) to cancel its driver of the instance; the
/// payload is `<instance id> <asking process>` so the asker can ignore its own request.
pub async fn ask_to_cancel(db: &PgPool, instance_id: Uuid, process: Uuid) -> sqlx::Result<()> {
    sqlx::query_scalar!(r#"SELECT pg_notify($1, $2)::text AS "sent""#, CANCEL_CHANNEL, format!("{instance_id} {process}")).fetch_one(db).await?;
    Ok(())
}

/// Claims (or renews) the reconciler's lease on `scope` for `holder`; whether it holds it now.
pub async fn claim_scope(db: &PgPool, scope: &str, holder: Uuid, ttl: Duration) -> sqlx::Result<bool> {
    let held = sqlx::query_scalar!(
        r#"INSERT INTO reconcile_leases (scope, holder, expires_at) VALUES ($1, $2, now() + make_interval(secs => $3))
           ON CONFLICT (scope) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
               WHERE reconcile_leases.expires_at < now() OR reconcile_leases.holder = EXCLUDED.holder
           RETURNING holder"#,
        scope,
        holder,
        ttl.as_secs_f64()
    )
    .fetch_optional(db)
    .await?;
    Ok(held.is_some())
}

/// Lets go of one scope (its host did not answer this holder: another replica may reach it).
pub async fn release_scope(db: &PgPool, scope: &str, holder: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM reconcile_leases WHERE scope = $1 AND holder = $2", scope, holder).execute(db).await.map(drop)
}

/// Lets go of every scope `holder` reconciles (at shutdown: another replica takes over now).
pub async fn release_scopes(db: &PgPool, holder: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM reconcile_leases WHERE holder = $1", holder).execute(db).await.map(drop)
}
