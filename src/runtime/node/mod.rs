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

use sha2::{Digest, Sha256};

/// SHA-256 of a node credential: what a node keeps instead of the credential itself.
pub fn credential_hash(credential: &str) -> [u8; 32] {
    Sha256::digest(credential.as_bytes()).into()
}

/// A new random node credential.
pub fn new_credential() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("ocaasnode_{}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}
