//! `ocaas admin egress`: shows or removes the sandbox egress rules on this host (no database
//! needed). Removing them while a server runs is undone at its next reconciler pass: stop the
//! server first, or start it with `OCAAS_EGRESS=open`.

use clap::Subcommand;

use crate::runtime::{DockerRuntime, egress};

#[derive(Debug, Subcommand)]
pub enum EgressCommand {
    /// Print ocaas's iptables chains and the sandbox bridge they apply to.
    Show,
    /// Remove ocaas's iptables chains and their jumps.
    Remove,
}

pub async fn run(command: EgressCommand) -> anyhow::Result<String> {
    let bridge = DockerRuntime::connect()?.sandbox_bridge().await?;
    match command {
        EgressCommand::Show => Ok(format!("sandbox bridge: {bridge}\n{}", egress::listing().await)),
        EgressCommand::Remove => Ok(if egress::remove(&bridge).await? {
            format!("removed the egress rules of {bridge}")
        } else {
            "no egress rules were in place".to_owned()
        }),
    }
}
