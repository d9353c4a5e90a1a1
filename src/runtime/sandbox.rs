//! Facts about a sandbox that several domains need and that the image defines: who runs user
//! code, where the workspace is, which ports the gateway and the desktop listen on, and how
//! its storage and labels are named. One place, so the domains agree with the image and each
//! other without importing each other.

/// `uid:gid` of the unprivileged sandbox user; the container runs as it whatever the image's
/// `USER` says, and file operations, commands and terminals run as it, never as root.
pub const USER: &str = "1000:1000";
/// The user's working directory, on the instance's own storage.
pub const WORKSPACE_DIR: &str = "/workspace";
/// The agent's state (`~/.openclaw`: memory, sessions, credentials, pairings), on the instance's
/// own storage; the entrypoint points `OPENCLAW_STATE_DIR` and a `~/.openclaw` link at it.
pub const STATE_DIR: &str = "/agent-state";
/// Where the sandbox user's home is: a size-capped tmpfs, since the root filesystem is read-only.
pub const HOME_DIR: &str = "/home/sandbox";
/// The OpenClaw gateway's HTTP port inside the sandbox.
pub const GATEWAY_PORT: u16 = 18789;
/// The desktop's VNC (RFB) port inside the sandbox.
pub const VNC_PORT: u16 = 5900;

/// The Docker network sandboxes live on (a bridge with inter-container traffic disabled).
pub const NETWORK: &str = "ocaas-sandboxes";
pub const LABEL_MANAGED: &str = "ocaas.managed";
pub const LABEL_DEPLOYMENT: &str = "ocaas.deployment";
pub const LABEL_INSTANCE: &str = "ocaas.instance";
pub const LABEL_USER: &str = "ocaas.user";

/// The desktop's VNC password: derived from the instance's gateway token, so it is that
/// instance's own secret (never shared between instances) without another column. RFB's
/// password authentication uses at most 8 characters.
pub fn vnc_password(gateway_token: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(format!("ocaas-vnc:{gateway_token}"));
    crate::secrets::hex(&hash[..4])
}
