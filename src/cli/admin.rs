//! `ocaas admin …`: account administration against the same database as the server
//! (with the private cluster: the running one, or one started just for the command).

use std::io::BufRead;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use uuid::Uuid;

use super::audit::admin_action;
use crate::audit::AuditAction;
use crate::auth::{repo, service};
use crate::config::GlobalArgs;
use crate::db::{self, ClusterUse, Database};
use crate::error::{AppError, ErrorCode};
use crate::timefmt::rfc3339_millis;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Users.
    #[command(subcommand)]
    User(UserCommand),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Invite codes.
    #[command(subcommand)]
    Invite(InviteCommand),
    /// Subscriptions.
    #[command(subcommand)]
    Subscription(SubscriptionCommand),
    /// Organisations and their plans.
    #[command(subcommand)]
    Org(super::orgs::OrgCommand),
    /// Docker hosts running sandboxes for this server (`ocaas node`).
    #[command(subcommand)]
    Nodes(super::nodes::NodesCommand),
    /// The audit log (logins, keys, instances, admin actions).
    Audit(super::audit::AuditArgs),
    /// Model usage through the broker, per user, day and model.
    Usage {
        /// Only this user.
        #[arg(long)]
        email: Option<String>,
        /// From this day (YYYY-MM-DD, UTC); default: the last 30 days.
        #[arg(long)]
        since: Option<chrono::NaiveDate>,
    },
    /// The sandboxes' egress rules on this host (iptables).
    #[command(subcommand)]
    Egress(super::egress::EgressCommand),
    /// Instances across users: upgrades to another sandbox image.
    #[command(subcommand)]
    Instances(super::upgrade::InstancesCommand),
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user (the password is read from stdin when `--password` is absent).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// List users with their subscriptions.
    List,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for a user; prints only the key.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: Option<String>,
        /// Days until the key expires.
        #[arg(long)]
        days: Option<u32>,
    },
    /// Revoke a key by id.
    Revoke {
        #[arg(long)]
        id: Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub enum InviteCommand {
    /// Create an invite code; prints only the code.
    Create(InviteArgs),
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    /// How many accounts or redemptions the code allows.
    #[arg(long, default_value_t = 1)]
    uses: u32,
    /// `max_instances` of the subscription the code grants.
    #[arg(long, default_value_t = 1)]
    max_instances: u32,
    /// Days the code can be redeemed (forever when absent).
    #[arg(long)]
    days: Option<u32>,
    /// Days the granted subscription lasts (forever when absent).
    #[arg(long)]
    subscription_days: Option<u32>,
    /// Model tokens a month the granted subscription allows (unlimited when absent).
    #[arg(long)]
    monthly_tokens: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionCommand {
    /// Grant (or replace) a user's subscription.
    Grant {
        #[arg(long)]
        email: String,
        #[arg(long)]
        max_instances: u32,
        /// Days until it expires (never when absent).
        #[arg(long)]
        days: Option<u32>,
        /// Model tokens (prompt + completion) a month for all the user's instances; absent:
        /// unlimited.
        #[arg(long)]
        monthly_tokens: Option<u64>,
        /// The plan's idle policy: pause after this long without use (`0`: never); absent:
        /// the server's `OCAAS_IDLE_PAUSE_AFTER`. Like `15m`, `2h`.
        #[arg(long, value_parser = crate::config::parse_duration)]
        pause_after: Option<std::time::Duration>,
        /// Stop after this long without use (`0`: never); absent: `OCAAS_IDLE_STOP_AFTER`.
        #[arg(long, value_parser = crate::config::parse_duration)]
        stop_after: Option<std::time::Duration>,
        /// Instances the user may pin awake; absent: `OCAAS_KEEP_AWAKE_MAX`.
        #[arg(long)]
        keep_awake_max: Option<u32>,
    },
}

/// `text` with every control character but newline and tab written as a `\u{…}` escape, so
/// a stored escape sequence cannot move the cursor, retitle or recolour a terminal.
pub fn terminal_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

pub async fn run(global: &GlobalArgs, command: AdminCommand) -> ExitCode {
    if let AdminCommand::Egress(command) = command {
        return match super::egress::run(command).await {
            Ok(output) => {
                println!("{output}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    let database = match Database::open(global, ClusterUse::Command).await {
        Ok(database) => database,
        Err(error) => {
            eprintln!("error: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let result = match db::migrate(&database.pool).await {
        Ok(()) => match command {
            AdminCommand::Instances(command) => super::upgrade::run(global, &database.pool, command).await,
            command => execute(&database.pool, command).await,
        },
        Err(error) => Err(AppError::Internal(error)),
    };
    database.close().await;
    // What was stored came from users (emails, targets, addresses): shown, never obeyed by the
    // operator's terminal.
    match result {
        Ok(output) => {
            println!("{}", terminal_safe(&output));
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {}", terminal_safe(&describe(&error)));
            ExitCode::FAILURE
        }
    }
}

fn describe(error: &AppError) -> String {
    match error {
        AppError::Client { message, .. } => message.clone(),
        AppError::Database(cause) => format!("database error: {cause}"),
        AppError::Runtime(cause) => format!("container engine error: {cause}"),
        AppError::Internal(cause) => format!("{cause:#}"),
    }
}

async fn execute(db: &sqlx::PgPool, command: AdminCommand) -> Result<String, AppError> {
    match command {
        AdminCommand::User(UserCommand::Create { email, password }) => {
            let password = match password {
                Some(password) => password,
                None => read_password_from_stdin()?,
            };
            let user = service::create_user(db, &email, &password, None).await?;
            admin_action(db, AuditAction::AdminUserCreated, user.email.clone()).await?;
            Ok(format!("created user {} ({})", user.email, user.id))
        }
        AdminCommand::User(UserCommand::List) => list_users(db).await,
        AdminCommand::Key(KeyCommand::Create { email, name, days }) => {
            let user = service::user_by_email_or_404(db, &email).await?;
            let created = service::create_api_key(db, user.id, name.as_deref(), days).await?;
            admin_action(db, AuditAction::AdminKeyCreated, format!("{} {}", user.email, created.view.id)).await?;
            Ok(created.key)
        }
        AdminCommand::Key(KeyCommand::Revoke { id }) => {
            if repo::revoke_api_key(db, id, None).await? {
                admin_action(db, AuditAction::AdminKeyRevoked, id.to_string()).await?;
                Ok(format!("revoked key {id}"))
            } else {
                Err(AppError::new(ErrorCode::KeyNotFound, format!("No active key has the id {id}.")))
            }
        }
        AdminCommand::Invite(InviteCommand::Create(args)) => {
            let spec = service::InviteSpec {
                uses: args.uses,
                max_instances: args.max_instances,
                valid_days: args.days,
                subscription_days: args.subscription_days,
                monthly_tokens: args.monthly_tokens,
            };
            let code = service::create_invite(db, &spec).await?;
            let target = format!("invite: {} use(s), {} instance(s)", spec.uses, spec.max_instances);
            admin_action(db, AuditAction::AdminInviteCreated, target).await?;
            Ok(code)
        }
        AdminCommand::Subscription(SubscriptionCommand::Grant {
            email,
            max_instances,
            days,
            monthly_tokens,
            pause_after,
            stop_after,
            keep_awake_max,
        }) => {
            let user = service::grant_subscription(db, &email, max_instances, days).await?;
            let tokens = monthly_tokens.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            repo::set_monthly_tokens(db, user.id, tokens).await?;
            crate::state::user_data_written();
            let secs = |d: Option<std::time::Duration>| d.map(|d| i32::try_from(d.as_secs()).unwrap_or(i32::MAX));
            let keep = keep_awake_max.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
            crate::instances::idle::repo::set_policy(db, user.id, secs(pause_after), secs(stop_after), keep).await?;
            let allowance = tokens.map_or("unlimited".to_owned(), |n| n.to_string());
            admin_action(
                db,
                AuditAction::AdminSubscriptionGranted,
                format!("{} max_instances={max_instances} monthly_tokens={allowance}", user.email),
            )
            .await?;
            Ok(format!("granted {} a subscription of {max_instances} instance(s), {allowance} model tokens a month", user.email))
        }
        AdminCommand::Org(command) => super::orgs::run(db, command).await,
        AdminCommand::Nodes(command) => super::nodes::run(db, command).await,
        AdminCommand::Audit(args) => super::audit::list(db, &args).await,
        AdminCommand::Usage { email, since } => usage(db, email.as_deref(), since).await,
        // `run` answers these itself; kept here so the match stays whole.
        AdminCommand::Egress(command) => super::egress::run(command).await.map_err(AppError::Internal),
        AdminCommand::Instances(_) => Err(AppError::Internal(anyhow::anyhow!("handled by run"))),
    }
}

fn read_password_from_stdin() -> Result<String, AppError> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

async fn list_users(db: &sqlx::PgPool) -> Result<String, AppError> {
    let mut lines = vec![format!("{:<36}  {:<32}  {:<24}  subscription", "id", "email", "created_at")];
    for user in repo::list_users(db).await? {
        let subscription = match repo::subscription(db, user.id).await? {
            Some(s) => format!(
                "max_instances={} expires_at={}",
                s.max_instances,
                s.expires_at.map(|at| rfc3339_millis(&at)).unwrap_or_else(|| "never".into())
            ),
            None => "none".into(),
        };
        lines.push(format!("{:<36}  {:<32}  {:<24}  {subscription}", user.id, user.email, rfc3339_millis(&user.created_at)));
    }
    Ok(lines.join("\n"))
}

async fn usage(db: &sqlx::PgPool, email: Option<&str>, since: Option<chrono::NaiveDate>) -> Result<String, AppError> {
    let since = match since {
        Some(day) => day.and_hms_opt(0, 0, 0).map(|t| t.and_utc()).unwrap_or_else(chrono::Utc::now),
        None => chrono::Utc::now() - chrono::Duration::days(30),
    };
    let mut lines = vec![format!("{:<32}  {:<10}  {:<24}  {:>8}  {:>12}  {:>12}", "email", "day", "model", "requests", "prompt", "completion")];
    for (email, row) in crate::broker::repo::usage_of_users(db, email, since).await? {
        let estimated = if row.estimated_requests > 0 { format!("  ({} estimated)", row.estimated_requests) } else { String::new() };
        lines.push(format!(
            "{email:<32}  {:<10}  {:<24}  {:>8}  {:>12}  {:>12}{estimated}",
            row.day, row.model, row.requests, row.prompt_tokens, row.completion_tokens
        ));
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_are_shown_not_obeyed() {
        assert_eq!(super::terminal_safe("a\u{1b}]0;pwned\u{7}b\nc\td\u{9b}"), "a\\u{1b}]0;pwned\\u{7}b\nc\td\\u{9b}");
    }
}
