//! Database layer: connecting (to `DATABASE_URL` or the private cluster), migrations.

pub mod embedded;
pub mod leases;
pub mod notify;
mod text_enum;

use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::GlobalArgs;
use embedded::EmbeddedPostgres;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The name of ocaas's database inside the private cluster.
const EMBEDDED_DATABASE: &str = "ocaas";

/// Whether closing the database also stops a private cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterUse {
    /// The server owns the cluster: it stops it when it exits.
    Server,
    /// A one-off command: it stops the cluster only if it had to start it.
    Command,
}

pub struct Database {
    pub pool: PgPool,
    embedded: Option<EmbeddedPostgres>,
    stop_on_close: bool,
}

impl Database {
    pub async fn open(global: &GlobalArgs, cluster_use: ClusterUse) -> anyhow::Result<Self> {
        if let Some(url) = &global.database_url {
            let options: PgConnectOptions = url.expose_secret().parse().context("DATABASE_URL is not a PostgreSQL URL")?;
            return Ok(Database { pool: pool(options).await?, embedded: None, stop_on_close: false });
        }
        let cluster = EmbeddedPostgres::new(&global.data_dir)?;
        let started = cluster.ensure_running().await?;
        create_database_if_missing(&cluster.connect_options("postgres"), EMBEDDED_DATABASE).await?;
        let pool = pool(cluster.connect_options(EMBEDDED_DATABASE)).await?;
        let stop_on_close = cluster_use == ClusterUse::Server || started;
        Ok(Database { pool, embedded: Some(cluster), stop_on_close })
    }

    pub async fn close(self) {
        self.pool.close().await;
        if let (Some(cluster), true) = (&self.embedded, self.stop_on_close) {
            match cluster.stop().await {
                Ok(()) => tracing::info!("private PostgreSQL stopped"),
                Err(error) => tracing::warn!(error = format!("{error:#}"), "stopping the private PostgreSQL"),
            }
        }
    }
}

pub async fn pool(options: PgConnectOptions) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        // sqlx pings every connection before handing it out: a round trip in front of every
        // query. A connection used in the last second is alive; only one idle for longer (it
        // may predate a database restart) is checked and replaced if dead.
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for < Duration::from_secs(1) {
                    return Ok(true);
                }
                Ok(sqlx::Connection::ping(connection).await.is_ok())
            })
        })
        .connect_with(options)
        .await
        .context("connecting to PostgreSQL")
}

/// The id that names this database's containers on a shared engine.
pub async fn deployment_id(db: &PgPool) -> sqlx::Result<uuid::Uuid> {
    sqlx::query_scalar!("SELECT id FROM deployment").fetch_one(db).await
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    MIGRATOR.run(pool).await.context("running database migrations")
}

/// Creates `name` (a plain identifier) on the server behind `admin` unless it exists.
pub async fn create_database_if_missing(admin: &PgConnectOptions, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
        "database name {name:?} must be a plain identifier"
    );
    let mut conn = admin.connect().await.context("connecting to PostgreSQL's maintenance database")?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)").bind(name).fetch_one(&mut conn).await?;
    if !exists {
        // Identifiers cannot be bound as parameters; `name` was checked above.
        let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await;
        match created {
            Ok(_) => {}
            // Another process created it between our check and now.
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A read-only transaction in which every query sees the same snapshot: for answers made of
/// several queries that must agree (a row and its children).
pub async fn snapshot(db: &PgPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    db.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await
}

/// Locks the user's row until the transaction ends: a limit on what a user has (pins, webhook
/// endpoints) is counted and used one request at a time, whichever replica serves it. The
/// count must be a statement after this one, to see what the request before committed.
pub async fn lock_user(tx: &mut sqlx::PgConnection, user_id: uuid::Uuid) -> sqlx::Result<()> {
    sqlx::query!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id).fetch_optional(tx).await?;
    Ok(())
}
