//! The container runtime: the `Runtime` trait every domain uses to manage sandboxes, and its
//! Docker implementation (`docker.rs`, the only code in ocaas that speaks to Docker).

pub mod archive;
pub mod confined;
pub mod conformance;
pub mod dial;
pub mod disk;
pub mod docker;
mod docker_config;
mod docker_exec;
mod docker_logs;
pub mod egress;
pub mod fleet;
pub mod fsys;
pub mod gateway;
mod host;
pub mod image;
#[cfg(test)]
pub mod memory;
pub mod node;
pub mod outbound;
pub mod sandbox;
pub mod tree;

use std::collections::HashMap;
use std::net::IpAddr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use docker::DockerRuntime;

pub use sandbox::{LABEL_DEPLOYMENT, LABEL_INSTANCE, LABEL_MANAGED, LABEL_USER, NETWORK as SANDBOX_NETWORK};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("container engine unavailable: {0}")]
    Unavailable(String),
    #[error("container engine error: {0}")]
    Other(String),
}

pub type RuntimeResult<T> = Result<T, RuntimeError>;

/// Everything needed to create one sandbox container and its storage.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxSpec {
    pub name: String,
    pub image: String,
    /// The instance's `/workspace` and agent state, on the host.
    pub disk: disk::DiskSpec,
    pub labels: HashMap<String, String>,
    /// Only this instance's own credentials: never an operator secret.
    pub env: Vec<String>,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Limits {
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
    /// Cap of the container's log (the engine rotates it).
    pub log_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// Docker's state word: `created`, `running`, `exited`, `restarting`, …
    pub state: String,
    /// Running, whether frozen by `pause` or not.
    pub running: bool,
    /// Frozen by `pause`: its processes keep their memory but get no CPU.
    pub paused: bool,
    pub exit_code: Option<i64>,
    pub started_at: Option<DateTime<Utc>>,
    pub ip: Option<IpAddr>,
    pub error: Option<String>,
    /// Labelled as ocaas's (`ocaas.managed=true`): a node touches no other container.
    pub managed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ManagedContainer {
    pub name: String,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    /// Per-stream cap; output beyond it is dropped and `truncated` set.
    pub max_output: usize,
    /// Stop waiting after this long (the process is left running: the caller decides how to end it).
    pub timeout: Option<std::time::Duration>,
}

#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// `None` when the wait timed out.
    pub exit_code: Option<i64>,
    pub truncated: bool,
    pub timed_out: bool,
}

/// An interactive command on a pseudo-terminal.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TtyRequest {
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub cols: u16,
    pub rows: u16,
}

/// A running TTY exec: what the terminal prints, and its keyboard.
pub struct TtySession {
    pub exec_id: String,
    /// Raw terminal output; ends when the process exits.
    pub output: ByteStream,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// A stream of bytes to or from the engine (tar archives).
pub type ByteStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send>>;

/// A piece of a container's output as the engine hands it over (not necessarily whole lines).
#[derive(Debug, Clone)]
pub struct LogChunk {
    pub stderr: bool,
    pub bytes: bytes::Bytes,
}

pub type LogStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = RuntimeResult<LogChunk>> + Send>>;

/// A stream that exists once `open` has answered (a call to a node, a routing step): its
/// items, or the one item `failed` makes of `open`'s error. For the `Runtime` methods that
/// return a stream at once.
pub fn deferred<T: Send + 'static, E: Send + 'static>(
    open: impl std::future::Future<Output = Result<futures_util::stream::BoxStream<'static, T>, E>> + Send + 'static,
    failed: impl FnOnce(E) -> T + Send + 'static,
) -> futures_util::stream::BoxStream<'static, T> {
    use futures_util::StreamExt;
    futures_util::stream::once(async move {
        match open.await {
            Ok(stream) => stream,
            Err(error) => futures_util::stream::once(std::future::ready(failed(error))).boxed(),
        }
    })
    .flatten()
    .boxed()
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Resources {
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub memory_limit_bytes: u64,
}

#[async_trait]
pub trait Runtime: Send + Sync {
    /// Whether the engine answers.
    async fn ping(&self) -> RuntimeResult<()>;
    /// Creates the sandbox network if missing and puts the egress policy in place for it.
    async fn ensure_network(&self, egress: &egress::EgressPolicy) -> RuntimeResult<()>;
    /// The host's address on the sandbox network (where ocaas offers sandboxes its endpoints).
    async fn sandbox_gateway(&self) -> RuntimeResult<IpAddr>;
    /// Prepares the storage and creates the container (an already existing one is kept).
    async fn create_sandbox(&self, spec: &SandboxSpec) -> RuntimeResult<()>;
    /// Makes the instance's storage ready (mounted again after a host restart); call before
    /// starting an existing container.
    async fn prepare_storage(&self, disk: &disk::DiskSpec) -> RuntimeResult<()>;
    async fn start(&self, name: &str) -> RuntimeResult<()>;
    async fn stop(&self, name: &str, grace_secs: i32) -> RuntimeResult<()>;
    async fn restart(&self, name: &str, grace_secs: i32) -> RuntimeResult<()>;
    /// Freezes every process of the container (memory kept, no CPU); `stop`, `restart` and
    /// `remove_sandbox` also work on a paused container.
    async fn pause(&self, name: &str) -> RuntimeResult<()>;
    /// Thaws a paused container; one that is not paused is fine.
    async fn unpause(&self, name: &str) -> RuntimeResult<()>;
    /// Removes the container (forcibly) and keeps its storage (an upgrade recreates it on
    /// another image); a missing one is fine.
    async fn remove_container(&self, name: &str) -> RuntimeResult<()>;
    /// Removes the container (forcibly) and its storage; missing ones are fine.
    async fn remove_sandbox(&self, name: &str, disk: &disk::DiskSpec) -> RuntimeResult<()>;
    async fn inspect(&self, name: &str) -> RuntimeResult<ContainerInfo>;
    /// Containers (running or not) labelled as managed by `deployment`.
    async fn list_managed(&self, deployment: &str) -> RuntimeResult<Vec<ManagedContainer>>;
    /// `list_managed` of one host only: the server's own engine (`None`) or a node's (the
    /// reconciler works host by host, each under its lease).
    async fn list_managed_on(&self, node: Option<uuid::Uuid>, deployment: &str) -> RuntimeResult<Vec<ManagedContainer>> {
        match node {
            None => self.list_managed(deployment).await,
            Some(_) => Ok(Vec::new()),
        }
    }
    /// Runs a command without a TTY; stdout and stderr apart, with the exit code.
    async fn exec(&self, name: &str, request: ExecRequest) -> RuntimeResult<ExecOutput>;
    /// Starts a command on a pseudo-terminal, attached both ways.
    async fn exec_tty(&self, name: &str, request: TtyRequest) -> RuntimeResult<TtySession>;
    async fn resize_tty(&self, exec_id: &str, cols: u16, rows: u16) -> RuntimeResult<()>;
    /// The exit code of an exec, `None` while it still runs.
    async fn exec_exit_code(&self, exec_id: &str) -> RuntimeResult<Option<i64>>;
    /// Extracts the tar archive `tar` into directory `dir` of the container (as the engine's root;
    /// ownership comes from the archive's headers).
    async fn upload_archive(&self, name: &str, dir: &str, tar: ByteStream) -> RuntimeResult<()>;
    /// A tar archive of `path` in the container, streamed.
    fn download_archive(&self, name: &str, path: &str) -> ByteStream;
    /// One sample of CPU and memory use.
    async fn resources(&self, name: &str) -> RuntimeResult<Resources>;
    /// The container's last `tail` lines of output, then (with `follow`) what it prints next.
    fn logs(&self, name: &str, tail: u32, follow: bool) -> LogStream;
    /// A byte stream to `port` inside the running sandbox (its gateway, its desktop): callers
    /// never learn or dial a sandbox's address, so the sandbox may live on another host.
    async fn connect(&self, name: &str, port: u16) -> RuntimeResult<dial::Tunnel>;
    /// Whether the sandbox's storage directories are on this host, where ocaas may write into
    /// them directly (`files::direct`) and pack them (snapshots); else only through the sandbox.
    async fn storage_here(&self, _name: &str) -> bool {
        true
    }
    /// A small regular file of the agent's state directory (`disk`'s `state/`), read without
    /// following links; at most `max` bytes, else an error.
    async fn read_state_file(&self, disk: &disk::DiskSpec, name: &str, max: u64) -> RuntimeResult<Vec<u8>> {
        let (dir, name) = (disk.state(), name.to_owned());
        let read = tokio::task::spawn_blocking(move || fsys::read_small_beneath(&dir, &name, max)).await;
        read.map_err(|e| RuntimeError::Other(e.to_string()))?
            .map_err(|e| RuntimeError::Other(format!("reading the agent's {}: {e}", disk.dir.display())))
    }
    /// The archive of the instance's storage (`runtime::archive`), made where it lives.
    fn pack_storage(&self, disk: &disk::DiskSpec, bounds: archive::Bounds) -> archive::PackStream {
        archive::pack_stream(disk.dir.clone(), bounds)
    }
    /// Replaces the instance's storage contents with `archive`'s.
    async fn unpack_storage(&self, disk: &disk::DiskSpec, archive: ByteStream) -> RuntimeResult<()> {
        archive::unpack_stream(archive, disk.dir.clone())
            .await
            .map_err(|e| RuntimeError::Other(format!("unpacking into the instance's storage: {e}")))
    }
    /// Where a sandbox on this host reaches the model broker when it is not the server's own
    /// listener: a node's relay (`node::server::relay`), which names its callers to the
    /// server. `None`: the in-process broker (`broker::url`).
    async fn broker_relay(&self, _name: &str) -> RuntimeResult<Option<std::net::SocketAddr>> {
        Ok(None)
    }
    /// The managed sandbox with `ip` on the sandbox network of this host, if any: how a node's
    /// relay tells which sandbox called it.
    async fn sandbox_at(&self, _ip: IpAddr) -> RuntimeResult<Option<String>> {
        Ok(None)
    }
    /// How full the instance's storage is; `None` when that cannot be told.
    async fn disk_usage(&self, disk: &disk::DiskSpec) -> Option<disk::DiskUsage> {
        let disk = disk.clone();
        tokio::task::spawn_blocking(move || disk::usage(&disk)).await.ok().flatten()
    }
}
