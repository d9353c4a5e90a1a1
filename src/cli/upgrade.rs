//! `ocaas admin instances upgrade`: moves instances to another sandbox image with automatic
//! rollback. This command takes each instance's rollback snapshot and marks it `upgrading`;
//! the running server (its reconciler picks up `upgrading` instances within
//! `OCAAS_RECONCILE_SECS`) recreates, checks and, if need be, rolls back — so an upgrade
//! survives this command and the server alike. `--parallel` instances at a time; the command
//! waits for each and prints what became of it and how long it was down.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use sqlx::PgPool;
use tokio::sync::Semaphore;

use super::audit::admin_action;
use crate::audit::AuditAction;
use crate::config::{GlobalArgs, Settings};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::models::InstanceStatus;
use crate::instances::{repo, upgrade};
use crate::runtime::fleet::Fleet;
use crate::state::AppState;

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// Upgrade instances to IMAGE, rolling each back by itself if it fails the health gate.
    Upgrade(UpgradeArgs),
    /// Move instances' storage to what `OCAAS_INSTANCE_DISK` says now (a plain directory, or a
    /// quota'd image of that size); their data goes along through a safety snapshot.
    MigrateStorage(super::storage::MigrateArgs),
    /// Move an instance to another node (its files go along through a snapshot; docs/nodes.md).
    Move(super::nodes::MoveArgs),
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The sandbox image to move to.
    #[arg(long)]
    pub image: String,
    /// Only this user's instances.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub email: Option<String>,
    /// Every user's instances.
    #[arg(long)]
    pub all: bool,
    /// Instances upgraded at once.
    #[arg(long, default_value_t = 1, value_parser = crate::config::at_least_one::<usize>)]
    pub parallel: usize,
    /// Give up waiting for one instance after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout_secs: u64,
}

/// An admin command's state: the server's own settings (its storage, limits and egress policy,
/// from the environment), never the defaults; older instances' facts recorded first.
pub(super) async fn admin_state(global: &GlobalArgs, db: &PgPool, image: &str) -> AppResult<AppState> {
    Ok(admin_fleet(global, db, image).await?.0)
}

/// `admin_state` and its fleet: instances on nodes are reached on their nodes, as `serve` does.
pub(super) async fn admin_fleet(global: &GlobalArgs, db: &PgPool, image: &str) -> AppResult<(AppState, Fleet)> {
    let serve_args = Settings::args_from_env().map_err(AppError::Internal)?;
    let image = serve_args.instances.sandbox_image.clone().unwrap_or_else(|| image.to_owned());
    let settings = super::settings(global, &serve_args, image).map_err(AppError::Internal)?;
    let docker = Arc::new(crate::runtime::DockerRuntime::connect().map_err(AppError::Internal)?);
    let fleet = crate::nodes::fleet_now(db, &settings.secret_key, docker).await.map_err(AppError::Internal)?;
    let state = AppState::new(db.clone(), settings, Arc::new(fleet.clone())).await.map_err(AppError::Internal)?;
    crate::instances::facts::backfill(db, &state.settings.instances).await?;
    Ok((state, fleet))
}

/// The user `--email` names, or everyone's.
pub(super) async fn only_user(db: &PgPool, email: &Option<String>) -> AppResult<Option<uuid::Uuid>> {
    Ok(match email {
        Some(email) => Some(crate::auth::service::user_by_email_or_404(db, email).await?.id),
        None => None,
    })
}

pub async fn run(global: &GlobalArgs, db: &PgPool, command: InstancesCommand) -> AppResult<String> {
    let args = match command {
        InstancesCommand::Upgrade(args) => args,
        InstancesCommand::MigrateStorage(args) => return super::storage::run(global, db, args).await,
        InstancesCommand::Move(args) => return super::nodes::move_instance(global, db, args).await,
    };
    let state = admin_state(global, db, &args.image).await?;
    let user = only_user(db, &args.email).await?;
    let targets: Vec<_> = repo::list_all(db)
        .await?
        .into_iter()
        .filter(|i| i.user_id.is_some() && (user.is_none() || i.user_id == user) && i.image != args.image)
        .collect();
    if targets.is_empty() {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("No instance to move to {}.", args.image)));
    }
    admin_action(db, AuditAction::AdminInstancesUpgraded, format!("{} instance(s) to {}", targets.len(), args.image)).await?;
    let slots = Arc::new(Semaphore::new(args.parallel));
    let started = Instant::now();
    let mut work = tokio::task::JoinSet::new();
    for instance in targets {
        let (state, image, slot) = (state.clone(), args.image.clone(), slots.clone().acquire_owned().await.expect("never closed"));
        let timeout = Duration::from_secs(args.timeout_secs);
        work.spawn(async move {
            let line = upgrade_one(&state, instance.id, &image, timeout).await.unwrap_or_else(|e| format!("failed: {e}"));
            drop(slot);
            format!("{} ({}): {line}", instance.id, instance.sandbox_id)
        });
    }
    let mut lines = Vec::new();
    while let Some(line) = work.join_next().await {
        lines.push(line.unwrap_or_else(|e| format!("panicked: {e}")));
    }
    lines.sort();
    lines.push(format!("total {:.1} s with --parallel {}", started.elapsed().as_secs_f64(), args.parallel));
    Ok(lines.join("\n"))
}

/// Starts one upgrade (snapshot, `upgrading`) and waits until the server has settled it.
async fn upgrade_one(state: &AppState, id: uuid::Uuid, image: &str, timeout: Duration) -> AppResult<String> {
    let begun = Instant::now();
    upgrade::prepare(state, id, image).await?;
    loop {
        let now = repo::get(&state.db, id).await?.ok_or_else(crate::extract::instance_not_found)?;
        let waited = begun.elapsed().as_secs_f64();
        match now.status {
            InstanceStatus::Ready if now.image == image => return Ok(format!("upgraded to {image} (down {waited:.1} s)")),
            InstanceStatus::Ready => return Ok(format!("rolled back: {} (down {waited:.1} s)", now.last_error.unwrap_or_default())),
            InstanceStatus::Error => return Ok(format!("error: {}", now.last_error.unwrap_or_default())),
            _ if begun.elapsed() > timeout => return Ok(format!("still {} after {waited:.0} s: is `ocaas serve` running?", now.status)),
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}
