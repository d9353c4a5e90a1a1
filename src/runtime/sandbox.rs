//! Facts about a sandbox that several domains need and that the image defines: who runs user
//! code, where the workspace is, which ports the gateway and the desktop listen on, and how
//! its volume and labels are named. One place, so the domains agree with the image and each
//! other without importing each other.

/// `uid:gid` of the unprivileged sandbox user (the image's `USER`); file operations, commands
/// and terminals run as this user, never as root.
pub const USER: &str = "1000:1000";
/// The user's working directory, on the instance's own volume.
pub const WORKSPACE_DIR: &str = "/workspace";
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

/// The named volume holding the instance's `/workspace`.
pub fn workspace_volume(sandbox_id: &str) -> String {
    format!("ocaas-ws-{sandbox_id}")
}
