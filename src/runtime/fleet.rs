//! The runtime the server uses when nodes are registered: every call about a sandbox goes to
//! the runtime of the node that holds it (this host's engine, in process, when it is on none),
//! which the `nodes` domain tells it (`Placement`). Calls about the whole fleet (the network,
//! listing ocaas's containers) go to every node that answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::disk::{DiskSpec, DiskUsage};
use super::*;

/// Where a sandbox lives: `Some(node)` or `None` for this host's own engine.
pub type Placement = Arc<dyn Fn(String) -> BoxFuture<'static, RuntimeResult<Option<Uuid>>> + Send + Sync>;

/// How long where a sandbox is stays trusted without asking again (a move forgets it at once
/// in the process that moves; others learn within this time).
pub const PLACED_FOR: Duration = Duration::from_secs(5);
const MAX_PLACED: usize = 100_000;

#[derive(Clone)]
pub struct Fleet {
    local: Arc<dyn Runtime>,
    nodes: Arc<RwLock<HashMap<Uuid, Arc<dyn Runtime>>>>,
    placement: Placement,
    placed: Arc<Mutex<Placed>>,
    /// The node each container was listed on last (only consulted for a container no row
    /// places: an orphan).
    listed: Arc<Mutex<HashMap<String, Uuid>>>,
}

/// Sandbox → its node (`None`: this host) and when that was read.
type Placed = HashMap<String, (Option<Uuid>, Instant)>;

impl Fleet {
    pub fn new(local: Arc<dyn Runtime>, placement: Placement) -> Self {
        Fleet { local, nodes: Arc::default(), placement, placed: Arc::default(), listed: Arc::default() }
    }

    /// This host's own engine.
    pub fn local(&self) -> Arc<dyn Runtime> {
        self.local.clone()
    }

    /// Forgets where `name` was: the next call asks the placement again.
    pub fn forget(&self, name: &str) {
        self.placed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
    }

    /// Adds or replaces the runtime of `node`.
    pub fn set_node(&self, node: Uuid, runtime: Arc<dyn Runtime>) {
        self.nodes.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(node, runtime);
    }

    pub fn remove_node(&self, node: Uuid) {
        self.nodes.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&node);
    }

    pub fn node(&self, node: Uuid) -> Option<Arc<dyn Runtime>> {
        self.nodes.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&node).cloned()
    }

    fn all(&self) -> Vec<Arc<dyn Runtime>> {
        let nodes = self.nodes.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        std::iter::once(self.local.clone()).chain(nodes.values().cloned()).collect()
    }

    /// The node holding `name`; `None` for this host (always so while no node is registered:
    /// a one-box server asks nothing more than before).
    async fn placed(&self, name: &str) -> RuntimeResult<Option<Uuid>> {
        if self.nodes.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty() {
            return Ok(None);
        }
        if let Some((node, at)) = self.placed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name)
            && at.elapsed() < PLACED_FOR
        {
            return Ok(*node);
        }
        // Read before asking: an answer racing a move is then never trusted past its time.
        let asked = Instant::now();
        let node = (self.placement)(name.to_owned()).await?;
        self.remember(name, node, asked);
        Ok(node)
    }

    fn remember(&self, name: &str, node: Option<Uuid>, at: Instant) {
        let mut placed = self.placed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if placed.len() >= MAX_PLACED {
            placed.clear();
        }
        placed.insert(name.to_owned(), (node, at));
    }

    async fn route(&self, name: &str) -> RuntimeResult<Arc<dyn Runtime>> {
        let listed = || self.listed.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).copied();
        match self.placed(name).await?.or_else(listed) {
            None => Ok(self.local.clone()),
            Some(node) => self.node(node).ok_or_else(|| RuntimeError::Unavailable(format!("node {node} is not known to this server"))),
        }
    }

    /// A stream from the sandbox's runtime, routed first.
    fn routed<T: Send + 'static>(
        &self,
        name: &str,
        open: impl FnOnce(&dyn Runtime) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = T> + Send>> + Send + 'static,
        failed: impl FnOnce(RuntimeError) -> T + Send + 'static,
    ) -> std::pin::Pin<Box<dyn futures_util::Stream<Item = T> + Send>> {
        let (this, name) = (self.clone(), name.to_owned());
        deferred(async move { Ok(open(this.route(&name).await?.as_ref())) }, failed)
    }
}

#[async_trait]
impl Runtime for Fleet {
    async fn ping(&self) -> RuntimeResult<()> {
        self.local.ping().await
    }
    async fn ensure_network(&self, egress: &egress::EgressPolicy) -> RuntimeResult<()> {
        // Each node applies it to its own bridge; one that is down gets it when it is back.
        for runtime in self.all().iter().skip(1) {
            if let Err(error) = runtime.ensure_network(egress).await {
                tracing::warn!(%error, "a node did not take the sandbox network");
            }
        }
        self.local.ensure_network(egress).await
    }
    async fn sandbox_gateway(&self) -> RuntimeResult<IpAddr> {
        self.local.sandbox_gateway().await
    }
    async fn create_sandbox(&self, spec: &SandboxSpec) -> RuntimeResult<()> {
        self.route(&spec.name).await?.create_sandbox(spec).await
    }
    async fn prepare_storage(&self, disk: &DiskSpec) -> RuntimeResult<()> {
        self.route(&sandbox_of(disk)).await?.prepare_storage(disk).await
    }
    async fn start(&self, name: &str) -> RuntimeResult<()> {
        self.route(name).await?.start(name).await
    }
    async fn stop(&self, name: &str, grace_secs: i32) -> RuntimeResult<()> {
        self.route(name).await?.stop(name, grace_secs).await
    }
    async fn restart(&self, name: &str, grace_secs: i32) -> RuntimeResult<()> {
        self.route(name).await?.restart(name, grace_secs).await
    }
    async fn pause(&self, name: &str) -> RuntimeResult<()> {
        self.route(name).await?.pause(name).await
    }
    async fn unpause(&self, name: &str) -> RuntimeResult<()> {
        self.route(name).await?.unpause(name).await
    }
    async fn remove_container(&self, name: &str) -> RuntimeResult<()> {
        self.route(name).await?.remove_container(name).await
    }
    async fn remove_sandbox(&self, name: &str, disk: &DiskSpec) -> RuntimeResult<()> {
        self.route(name).await?.remove_sandbox(name, disk).await
    }
    async fn inspect(&self, name: &str) -> RuntimeResult<ContainerInfo> {
        self.route(name).await?.inspect(name).await
    }
    async fn list_managed(&self, deployment: &str) -> RuntimeResult<Vec<ManagedContainer>> {
        // What is listed is only ever removed when no row knows it (orphans), so a node that
        // does not answer is left out rather than failing the list: its containers are
        // neither listed nor touched. This host's own engine must answer.
        // Which node listed a container is kept for containers no row places (orphans), so
        // they are removed where they are.
        let mut all = self.local.list_managed(deployment).await?;
        let nodes: Vec<(Uuid, Arc<dyn Runtime>)> =
            self.nodes.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().map(|(id, r)| (*id, r.clone())).collect();
        let mut listed = HashMap::new();
        for (node, runtime) in nodes {
            match runtime.list_managed(deployment).await {
                Ok(containers) => {
                    listed.extend(containers.iter().map(|c| (c.name.clone(), node)));
                    all.extend(containers);
                }
                Err(error) => tracing::debug!(%error, "a node did not list its sandboxes"),
            }
        }
        *self.listed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = listed;
        Ok(all)
    }
    async fn list_managed_on(&self, node: Option<Uuid>, deployment: &str) -> RuntimeResult<Vec<ManagedContainer>> {
        let Some(id) = node else { return self.local.list_managed(deployment).await };
        let runtime = self.node(id).ok_or_else(|| RuntimeError::Unavailable(format!("node {id} is not known to this server")))?;
        let containers = runtime.list_managed(deployment).await?;
        // Orphans listed here are removed where they are.
        let mut listed = self.listed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        listed.retain(|_, on| *on != id);
        listed.extend(containers.iter().map(|c| (c.name.clone(), id)));
        Ok(containers)
    }
    async fn exec(&self, name: &str, request: ExecRequest) -> RuntimeResult<ExecOutput> {
        self.route(name).await?.exec(name, request).await
    }
    async fn exec_tty(&self, name: &str, request: TtyRequest) -> RuntimeResult<TtySession> {
        let runtime = self.route(name).await?;
        let mut session = runtime.exec_tty(name, request).await?;
        // The exec id is resolved by the same node later: remember which.
        session.exec_id = format!("{name}/{}", session.exec_id);
        Ok(session)
    }
    async fn resize_tty(&self, exec_id: &str, cols: u16, rows: u16) -> RuntimeResult<()> {
        let (name, id) = split_exec(exec_id)?;
        self.route(name).await?.resize_tty(id, cols, rows).await
    }
    async fn exec_exit_code(&self, exec_id: &str) -> RuntimeResult<Option<i64>> {
        let (name, id) = split_exec(exec_id)?;
        self.route(name).await?.exec_exit_code(id).await
    }
    async fn upload_archive(&self, name: &str, dir: &str, tar: ByteStream) -> RuntimeResult<()> {
        self.route(name).await?.upload_archive(name, dir, tar).await
    }
    fn download_archive(&self, name: &str, path: &str) -> ByteStream {
        let (n, path) = (name.to_owned(), path.to_owned());
        self.routed(name, move |runtime| runtime.download_archive(&n, &path), |e| Err(std::io::Error::other(e.to_string())))
    }
    async fn resources(&self, name: &str) -> RuntimeResult<Resources> {
        self.route(name).await?.resources(name).await
    }
    fn logs(&self, name: &str, tail: u32, follow: bool) -> LogStream {
        let n = name.to_owned();
        self.routed(name, move |runtime| runtime.logs(&n, tail, follow), Err)
    }
    async fn connect(&self, name: &str, port: u16) -> RuntimeResult<dial::Tunnel> {
        self.route(name).await?.connect(name, port).await
    }
    async fn broker_relay(&self, name: &str) -> RuntimeResult<Option<std::net::SocketAddr>> {
        self.route(name).await?.broker_relay(name).await
    }
    async fn storage_here(&self, name: &str) -> bool {
        matches!(self.placed(name).await, Ok(None))
    }
    fn pack_storage(&self, disk: &DiskSpec, bounds: archive::Bounds) -> archive::PackStream {
        let failed = |e: RuntimeError| Err(archive::PackError::Io(std::io::Error::other(e.to_string())));
        let d = disk.clone();
        self.routed(&sandbox_of(disk), move |runtime| runtime.pack_storage(&d, bounds), failed)
    }
    async fn unpack_storage(&self, disk: &DiskSpec, archive: ByteStream) -> RuntimeResult<()> {
        self.route(&sandbox_of(disk)).await?.unpack_storage(disk, archive).await
    }
    async fn read_state_file(&self, disk: &DiskSpec, name: &str, max: u64) -> RuntimeResult<Vec<u8>> {
        self.route(&sandbox_of(disk)).await?.read_state_file(disk, name, max).await
    }
    async fn disk_usage(&self, disk: &DiskSpec) -> Option<DiskUsage> {
        self.route(&sandbox_of(disk)).await.ok()?.disk_usage(disk).await
    }
}

/// The sandbox a storage belongs to: its directory is named after it.
fn sandbox_of(disk: &DiskSpec) -> String {
    disk.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn split_exec(exec_id: &str) -> RuntimeResult<(&str, &str)> {
    exec_id.split_once('/').ok_or_else(|| RuntimeError::NotFound(exec_id.to_owned()))
}
