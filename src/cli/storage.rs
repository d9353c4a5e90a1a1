//! `ocaas admin instances migrate-storage`: moves instances' storage to what the server's
//! settings say now (`instances::storage_move`). This command takes the safety snapshot,
//! records the new storage and marks each instance `restoring`; the running server finishes
//! (new storage, contents back, container started), and the command waits for each outcome.

use std::time::{Duration, Instant};

use clap::Args;
use sqlx::PgPool;

use super::audit::admin_action;
use super::upgrade::{admin_state, only_user};
use crate::audit::AuditAction;
use crate::config::GlobalArgs;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::models::InstanceStatus;
use crate::instances::{facts::Facts, repo, storage_move};

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Only this user's instances.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub email: Option<String>,
    /// Every user's instances.
    #[arg(long)]
    pub all: bool,
    /// Give up waiting for one instance after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
}

pub async fn run(global: &GlobalArgs, db: &PgPool, args: MigrateArgs) -> AppResult<String> {
    let state = admin_state(global, db, "").await?;
    let user = only_user(db, &args.email).await?;
    let targets: Vec<_> = repo::list_all(db)
        .await?
        .into_iter()
        .filter(|i| i.user_id.is_some() && (user.is_none() || i.user_id == user) && storage_move::target(&state, i).is_some())
        .collect();
    let wanted = storage_move::describe(&Facts::for_new(&state.settings.instances, ""));
    if targets.is_empty() {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("Every instance has {wanted} already.")));
    }
    admin_action(db, AuditAction::AdminStorageMigrated, format!("{} instance(s) moved to {wanted}", targets.len())).await?;
    let mut lines = Vec::new();
    for instance in targets {
        let begun = Instant::now();
        let outcome = match storage_move::begin(&state, instance.id).await {
            Ok(Some(_)) => wait(db, instance.id, begun, Duration::from_secs(args.timeout_secs)).await?,
            Ok(None) => format!("has {wanted} already"),
            Err(error) => format!("not moved: {}", error.into_message()),
        };
        lines.push(format!("{} ({}): {outcome}", instance.id, instance.sandbox_id));
    }
    lines.push(format!("moved to {wanted}"));
    Ok(lines.join("\n"))
}

/// Waits until the server has finished the restore the move started.
async fn wait(db: &PgPool, id: uuid::Uuid, begun: Instant, timeout: Duration) -> AppResult<String> {
    loop {
        let now = repo::get(db, id).await?.ok_or_else(crate::extract::instance_not_found)?;
        let waited = begun.elapsed().as_secs_f64();
        match now.status {
            InstanceStatus::Ready => return Ok(format!("moved (down {waited:.1} s)")),
            InstanceStatus::Error => return Ok(format!("error: {} (its data is in the safety snapshot)", now.last_error.unwrap_or_default())),
            _ if begun.elapsed() > timeout => return Ok(format!("still {} after {waited:.0} s: is `ocaas serve` running?", now.status)),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
