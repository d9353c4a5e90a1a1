//! `ocaas admin nodes …`: the operator's side of nodes — join tokens, the list, draining and
//! removal.

use clap::Subcommand;

use crate::error::{AppError, ErrorCode};
use crate::nodes::{models::NodeView, repo, service};

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// A one-use token (valid 1 h) for `ocaas node --join` on a new Docker host.
    JoinToken {
        /// The node's name (lowercase letters, digits, dashes).
        #[arg(long)]
        name: String,
        /// Instances it may hold at once.
        #[arg(long)]
        capacity: u32,
        /// Labels, `key=value`, repeated.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Every node: address, load, whether it answers, draining.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Takes no new instances (existing ones stay until moved).
    Drain { name: String },
    /// Takes new instances again.
    Undrain { name: String },
    /// Forgets a node that holds no instance.
    Remove { name: String },
}

#[derive(Debug, clap::Args)]
pub struct MoveArgs {
    /// The instance.
    #[arg(long)]
    pub id: uuid::Uuid,
    /// The node to move it to; absent: the least-loaded other node with room.
    #[arg(long)]
    pub to: Option<String>,
}

/// `ocaas admin instances move`: the instance goes to the other node through a snapshot, its
/// old sandbox removed once the new one serves (`instances::relocate`).
pub async fn move_instance(global: &crate::config::GlobalArgs, db: &sqlx::PgPool, args: MoveArgs) -> Result<String, AppError> {
    let (state, fleet) = super::upgrade::admin_fleet(global, db, "").await?;
    let nodes = repo::all(db).await?;
    let from = repo::node_id_of(db, args.id).await?;
    let target = match &args.to {
        Some(name) => {
            let node =
                nodes.iter().find(|n| &n.name == name).ok_or_else(|| AppError::new(ErrorCode::NotFound, format!("No node is called {name}.")))?;
            if node.draining || node.instances >= i64::from(node.capacity) {
                return Err(AppError::new(ErrorCode::CapacityExhausted, format!("Node {name} is draining or full.")));
            }
            node
        }
        None => {
            // The placement's own choice, leaving out the node it is on.
            let picked = repo::pick(&mut *db.acquire().await?, crate::nodes::FRESH_SECS, from).await?;
            let picked = picked.ok_or_else(|| AppError::new(ErrorCode::CapacityExhausted, "No other node that answers has room."))?;
            nodes
                .iter()
                .find(|n| n.id == picked)
                .ok_or_else(|| AppError::new(ErrorCode::CapacityExhausted, "No other node that answers has room."))?
        }
    };
    let started = std::time::Instant::now();
    crate::instances::relocate::relocate(&state, &fleet, args.id, target.id, &target.name).await?;
    state.shutdown.cancel();
    Ok(format!("instance {} moved to node {} in {:.1} s", args.id, target.name, started.elapsed().as_secs_f64()))
}

fn labels(raw: &[String]) -> Result<serde_json::Value, AppError> {
    let mut map = serde_json::Map::new();
    for label in raw {
        let (k, v) = label
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| AppError::new(ErrorCode::InvalidRequest, format!("`{label}` is not key=value")))?;
        map.insert(k.to_owned(), v.into());
    }
    Ok(map.into())
}

pub async fn run(db: &sqlx::PgPool, command: NodesCommand) -> Result<String, AppError> {
    let unknown = |name: &str| AppError::new(ErrorCode::NotFound, format!("No node is called {name}."));
    match command {
        NodesCommand::JoinToken { name, capacity, labels: raw } => {
            let valid = !name.is_empty()
                && name.len() <= 63
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !name.starts_with('-');
            if !valid {
                return Err(AppError::new(ErrorCode::InvalidRequest, "A node's name is lowercase letters, digits and dashes (at most 63)."));
            }
            let token = service::join_token(db, &name, i32::try_from(capacity).unwrap_or(i32::MAX), &labels(&raw)?).await?;
            Ok(token)
        }
        NodesCommand::List { json } => {
            let nodes = repo::all(db).await?;
            let fresh = chrono::Utc::now() - chrono::Duration::seconds(crate::nodes::FRESH_SECS);
            if json {
                let views: Vec<NodeView> = nodes.iter().map(NodeView::from).collect();
                return Ok(serde_json::to_string_pretty(&views).expect("nodes serialize"));
            }
            let lines: Vec<String> = nodes
                .iter()
                .map(|n| {
                    let up = if n.last_seen.is_some_and(|at| at > fresh) { "up" } else { "DOWN" };
                    let draining = if n.draining { " draining" } else { "" };
                    format!("{}  {}  {}  {up}{draining}  instances={}/{}", n.id, n.name, n.address, n.instances, n.capacity)
                })
                .collect();
            Ok(if lines.is_empty() { "no nodes: sandboxes run on the server's own engine".to_owned() } else { lines.join("\n") })
        }
        NodesCommand::Drain { name } => match repo::set_draining(db, &name, true).await? {
            true => Ok(format!("node {name} takes no new instances; move its instances with `ocaas admin instances move`")),
            false => Err(unknown(&name)),
        },
        NodesCommand::Undrain { name } => match repo::set_draining(db, &name, false).await? {
            true => Ok(format!("node {name} takes new instances again")),
            false => Err(unknown(&name)),
        },
        NodesCommand::Remove { name } => match repo::remove(db, &name).await? {
            None => Err(unknown(&name)),
            Some(0) => Ok(format!("node {name} removed")),
            Some(held) => {
                Err(AppError::new(ErrorCode::InvalidState, format!("Node {name} still holds {held} instance(s); move or delete them first.")))
            }
        },
    }
}
