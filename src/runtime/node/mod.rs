//! `ocaas node`: one per Docker host, serving that host's sandboxes to the API replicas over
//! one TLS connection (HTTP/2, each call a stream; byte streams — terminals, gateway and
//! desktop ports, archives, logs — are full-duplex HTTP/2 streams). The node runs the same
//! `DockerRuntime` the one-box server runs in process (`server`); the API side speaks to it
//! as a `Runtime` too (`client::RemoteRuntime`), so the domains above cannot tell the two
//! apart. The node holds no database credentials: it knows only its own certificate (pinned
//! by the API, `tls`) and the hash of the credential the API presents.

pub mod client;
pub mod server;
pub mod tls;
mod wire;

pub use wire::{NODE_HEADER, RELAY_KEY_HEADER, SANDBOX_HEADER};

use sha2::{Digest, Sha256};

/// SHA-256 of a node credential: what a node keeps instead of the credential itself.
pub fn credential_hash(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

/// The key a node presents when it relays a sandbox's broker call to the server: derived
/// from its credential, so the server (which can open the credential) checks it without
/// storing anything new, and a node keeps neither the credential nor anything that drives it.
pub fn relay_key(credential: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"ocaas node broker relay\n");
    hash.update(credential.as_bytes());
    crate::secrets::hex(&hash.finalize())
}

/// A new random node credential.
pub fn new_credential() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("ocaasnode_{}", crate::secrets::hex(&bytes))
}

/// `runtime` served as a node on a loopback port of this process, and the `RemoteRuntime` that
/// reaches it over the real link (TLS, credential, HTTP/2): what the test suite's
/// `OCAAS_TEST_NODE=local` switch and the node benchmark run the server through. The node
/// stops when `shutdown` is cancelled.
pub async fn serve_loopback(
    runtime: std::sync::Arc<dyn super::Runtime>,
    disk_root: std::path::PathBuf,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<client::RemoteRuntime> {
    let identity = tls::Identity::generate()?;
    let credential = new_credential();
    let node =
        std::sync::Arc::new(server::Node { runtime, credential: credential_hash(&credential), disk_root, execs: Default::default(), relay: None });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(server::serve(listener, identity.server_config()?, server::router(node), shutdown));
    client::RemoteRuntime::new(address, &identity.fingerprint(), credential)
}
