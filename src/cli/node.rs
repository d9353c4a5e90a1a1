//! `ocaas node`: run on each Docker host that should hold sandboxes. The first start joins the
//! server with a token from `ocaas admin nodes join-token` (sending the address replicas should
//! dial and this node's certificate fingerprint; keeping only the hash of the credential it gets
//! back); every start then serves this host's engine to the API replicas (`runtime::node`).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use crate::runtime::node::server::relay::{Relay, RelayConfig, ServeFn};
use crate::runtime::node::server::{Node, router, serve};
use crate::runtime::node::tls::Identity;
use crate::runtime::node::{credential_hash, relay_key};
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
    /// The server's base URL (https:// in production); several replicas' URLs may be given,
    /// comma-separated: the first joins, and the model broker relay tries them in order. Needed
    /// on the first start; later starts keep the URLs they were last given.
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
/// The relay's configuration (`RelayConfig`): node id, relay key, the server's URLs.
const RELAY_FILE: &str = "relay.json";

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
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = relay(&args, docker.clone(), shutdown.clone())?;
    let node = Arc::new(Node { runtime: docker, credential, disk_root: args.dir.join("instances"), execs: Default::default(), relay });
    std::fs::create_dir_all(&node.disk_root)?;
    let listener = tokio::net::TcpListener::bind(args.listen).await.map_err(|e| anyhow::anyhow!("binding {}: {e}", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, fingerprint = %identity.fingerprint(), "ocaas node listening");
    let stop = shutdown.clone();
    tokio::spawn(async move {
        crate::serve::shutdown_signal().await;
        stop.cancel();
    });
    serve(listener, identity.server_config()?, router(node), shutdown).await;
    Ok(())
}

/// The server's URLs from `--api`: each must be https:// or loopback (the join's answer is the
/// node's credential, and the relay carries the relay key and sandboxes' broker tokens) unless
/// `insecure` (a lab or test network).
fn api_urls(api: &str, insecure: bool) -> anyhow::Result<Vec<String>> {
    let urls: Vec<String> = api.split(',').map(|u| u.trim().trim_end_matches('/').to_owned()).filter(|u| !u.is_empty()).collect();
    for url in &urls {
        let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("--api: `{url}` is not a URL: {e}"))?;
        let loopback = matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
        if parsed.scheme() != "https" && !(parsed.scheme() == "http" && (loopback || insecure)) {
            anyhow::bail!("--api must be https:// (it carries the node's credentials); --insecure-join allows http:// on a trusted network");
        }
    }
    anyhow::ensure!(!urls.is_empty(), "--api names no URL");
    Ok(urls)
}

/// The model broker relay, from what the join left (the server's URLs updated from `--api`).
fn relay(args: &NodeArgs, docker: Arc<dyn Runtime>, shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<Option<Arc<Relay>>> {
    let path = args.dir.join(RELAY_FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        tracing::warn!("{RELAY_FILE} is missing (a node joined by an older version): sandboxes here get no model broker; join again");
        return Ok(None);
    };
    let mut config: RelayConfig = serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{RELAY_FILE} is damaged: {e}"))?;
    let given = args.api.as_deref().map(|api| api_urls(api, args.insecure_join)).transpose()?;
    if let Some(api) = given.filter(|urls| *urls != config.api) {
        config.api = api;
        // Replaced whole: written beside it, then renamed over it.
        let next = path.with_extension("json.new");
        let _ = std::fs::remove_file(&next);
        crate::secrets::write_private(&next, serde_json::to_string(&config)?.as_bytes())?;
        std::fs::rename(&next, &path)?;
    }
    let serve: ServeFn = Arc::new(move |listener, router| Box::pin(crate::serve::serve_sandboxes(listener, router, shutdown.clone())));
    Ok(Some(Arc::new(Relay::new(config, docker, serve)?)))
}

/// Trades the join token for a credential; its hash, also written to the node's directory.
async fn join(args: &NodeArgs, identity: &Identity) -> anyhow::Result<[u8; 32]> {
    let (Some(token), Some(api), Some(advertise)) = (&args.join, &args.api, &args.advertise) else {
        anyhow::bail!("this node has not joined yet: pass --join, --api and --advertise (see `ocaas admin nodes join-token`)");
    };
    let urls = api_urls(api, args.insecure_join)?;
    let url = format!("{}/internal/nodes/join", urls[0]);
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
    let relay = RelayConfig { node_id: joined.node_id, key: relay_key(&joined.credential), api: urls };
    crate::secrets::write_private(&args.dir.join(RELAY_FILE), serde_json::to_string(&relay)?.as_bytes())?;
    crate::secrets::write_private(&args.dir.join(CREDENTIAL_FILE), crate::secrets::hex(&hash).as_bytes())?;
    tracing::info!(node = %joined.name, id = %joined.node_id, "joined the server");
    Ok(hash)
}
