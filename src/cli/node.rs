//! `ocaas node`: run on each Docker host that should hold sandboxes. The first start joins the
//! server with a token from `ocaas admin nodes join-token` (sending the address replicas should
//! dial and this node's certificate fingerprint; keeping only the hash of the credential it gets
//! back); every start then serves this host's engine to the API replicas (`runtime::node`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::runtime::node::credential_hash;
use crate::runtime::node::server::{Node, router, serve};
use crate::runtime::node::tls::Identity;
use crate::runtime::{DockerRuntime, Runtime};

#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Where the node keeps its key, certificate, credential hash and instance storage.
    #[arg(long, env = "OCAAS_NODE_DIR", default_value = "/var/lib/ocaas-node")]
    pub dir: PathBuf,
    /// Where to listen for the API replicas (TLS).
    #[arg(long, env = "OCAAS_NODE_LISTEN", default_value = "0.0.0.0:7443")]
    pub listen: std::net::SocketAddr,
    /// First start only: the join token.
    #[arg(long, env = "OCAAS_NODE_JOIN_TOKEN", hide_env_values = true)]
    pub join: Option<String>,
    /// First start only: the server's base URL (https:// in production).
    #[arg(long, env = "OCAAS_NODE_API")]
    pub api: Option<String>,
    /// First start only: `host:port` where the replicas reach this node.
    #[arg(long, env = "OCAAS_NODE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Let the join go over plain `http://` (a lab or a test network): its answer carries the
    /// credential, so anyone on the path could take it.
    #[arg(long)]
    pub insecure_join: bool,
}

const CREDENTIAL_FILE: &str = "credential.sha256";

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)?;
    let identity = Identity::load_or_create(&args.dir)?;
    let credential = match std::fs::read_to_string(args.dir.join(CREDENTIAL_FILE)) {
        Ok(hex) => {
            crate::secrets::parse_hex32(hex.trim()).ok_or_else(|| anyhow::anyhow!("{CREDENTIAL_FILE} is damaged; remove the node and join again"))?
        }
        Err(_) => join(&args, &identity).await?,
    };
    let docker: Arc<dyn Runtime> = Arc::new(DockerRuntime::connect()?);
    docker.ping().await.map_err(|e| anyhow::anyhow!("the Docker engine does not answer: {e}"))?;
    let node = Arc::new(Node { runtime: docker, credential, disk_root: args.dir.join("instances"), execs: Default::default() });
    std::fs::create_dir_all(&node.disk_root)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| anyhow::anyhow!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, fingerprint = %identity.fingerprint(), "ocaas node listening");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        stop.cancel();
    });
    serve(listener, identity.server_config()?, router(node), shutdown).await;
    Ok(())
}

/// Trades the join token for a credential; its hash, also written to the node's directory.
async fn join(args: &NodeArgs, identity: &Identity) -> anyhow::Result<[u8; 32]> {
    let (Some(token), Some(api), Some(advertise)) = (&args.join, &args.api, &args.advertise) else {
        anyhow::bail!("this node has not joined yet: pass --join, --api and --advertise (see `ocaas admin nodes join-token`)");
    };
    let url = format!("{}/internal/nodes/join", api.trim_end_matches('/'));
    let loopback =
        url::Url::parse(&url).ok().and_then(|u| u.host_str().map(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]")).unwrap_or(false);
    if !url.starts_with("https://") && !loopback && !args.insecure_join {
        anyhow::bail!("--api must be https:// (the join's answer is the node's credential); --insecure-join allows http:// on a trusted network");
    }
    let body = serde_json::json!({"token": token, "address": advertise, "fingerprint": identity.fingerprint()});
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).redirect(reqwest::redirect::Policy::none()).build()?;
    let response = client.post(&url).json(&body).send().await.map_err(|e| anyhow::anyhow!("joining through {url}: {e}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        anyhow::bail!("the server refused the join ({status}): {}", text.chars().take(500).collect::<String>());
    }
    let joined: crate::nodes::service::Joined = serde_json::from_str(&text)?;
    let hash = credential_hash(&joined.credential);
    crate::secrets::write_private(&args.dir.join(CREDENTIAL_FILE), crate::secrets::hex(&hash).as_bytes())?;
    tracing::info!(node = %joined.name, id = %joined.node_id, "joined the server");
    Ok(hash)
}
