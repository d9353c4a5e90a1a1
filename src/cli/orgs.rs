//! `ocaas admin org …`: the operator's view of organisations and their plans.

use clap::Subcommand;
use uuid::Uuid;

use crate::error::{AppError, ErrorCode};

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Every organisation: id, name, plan, members, instances.
    List,
    /// Set an organisation's plan.
    Plan {
        #[arg(long)]
        org: Uuid,
        /// Instances it may have at once.
        #[arg(long)]
        max_instances: u32,
        /// Model tokens a month for all its instances; absent: unlimited.
        #[arg(long)]
        monthly_tokens: Option<u64>,
    },
}

pub async fn run(db: &sqlx::PgPool, command: OrgCommand) -> Result<String, AppError> {
    match command {
        OrgCommand::List => {
            let rows = crate::orgs::repo::all(db).await?;
            let lines: Vec<String> = rows
                .into_iter()
                .map(|o| {
                    let tokens = o.monthly_tokens.map_or("unlimited".to_owned(), |n| n.to_string());
                    let name = super::admin::terminal_safe(&o.name);
                    format!(
                        "{}  {name}  max_instances={} monthly_tokens={tokens} members={} instances={}",
                        o.id, o.max_instances, o.members, o.instances
                    )
                })
                .collect();
            Ok(if lines.is_empty() { "no organisations".to_owned() } else { lines.join("\n") })
        }
        OrgCommand::Plan { org, max_instances, monthly_tokens } => {
            let max = i32::try_from(max_instances).unwrap_or(i32::MAX);
            let tokens = monthly_tokens.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            if !crate::orgs::repo::set_plan(db, org, max, tokens).await? {
                return Err(AppError::new(ErrorCode::OrgNotFound, format!("No organisation has the id {org}.")));
            }
            let allowance = tokens.map_or("unlimited".to_owned(), |n| n.to_string());
            Ok(format!("organisation {org}: {max_instances} instance(s), {allowance} model tokens a month"))
        }
    }
}
