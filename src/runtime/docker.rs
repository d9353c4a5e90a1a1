//! `Runtime` on the Docker Engine API through bollard (`DOCKER_HOST` or the default socket).

use std::collections::HashMap;

use async_trait::async_trait;
use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, NetworkCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptions, DownloadFromContainerOptions, InspectContainerOptions, ListContainersOptions, ListNetworksOptions,
    RemoveContainerOptions, RemoveVolumeOptions, RestartContainerOptions, StatsOptions, StopContainerOptions, UploadToContainerOptions,
};
use futures_util::StreamExt;

use super::*;

pub struct DockerRuntime {
    pub(super) docker: Docker,
}

impl DockerRuntime {
    /// Connects lazily: nothing is sent until the first call.
    pub fn connect() -> anyhow::Result<Self> {
        Ok(DockerRuntime { docker: Docker::connect_with_defaults()? })
    }
}

pub(super) fn map_err(error: DockerError) -> RuntimeError {
    match error {
        DockerError::DockerResponseServerError { status_code: 404, message } => RuntimeError::NotFound(message),
        DockerError::DockerResponseServerError { status_code: 409, message } => RuntimeError::Conflict(message),
        DockerError::DockerResponseServerError { status_code, message } => RuntimeError::Other(format!("engine answered {status_code}: {message}")),
        DockerError::IOError { .. } | DockerError::HyperResponseError { .. } | DockerError::RequestTimeoutError => {
            RuntimeError::Unavailable(error.to_string())
        }
        other => RuntimeError::Other(other.to_string()),
    }
}

/// Treats "already there / already gone" answers as success.
fn ignore_not_found(result: Result<(), DockerError>) -> RuntimeResult<()> {
    match result.map_err(map_err) {
        Err(RuntimeError::NotFound(_)) => Ok(()),
        other => other,
    }
}

#[async_trait]
impl Runtime for DockerRuntime {
    async fn ping(&self) -> RuntimeResult<()> {
        self.docker.ping().await.map(|_| ()).map_err(map_err)
    }

    async fn ensure_network(&self, egress: &egress::EgressPolicy) -> RuntimeResult<()> {
        let existing = self.sandbox_networks().await?;
        if existing.is_empty() {
            let request = NetworkCreateRequest {
                name: SANDBOX_NETWORK.to_owned(),
                driver: Some("bridge".into()),
                options: Some(HashMap::from([("com.docker.network.bridge.enable_icc".to_owned(), "false".to_owned())])),
                labels: Some(HashMap::from([(LABEL_MANAGED.to_owned(), "true".to_owned())])),
                ..Default::default()
            };
            self.docker.create_network(request).await.map_err(map_err)?;
        }
        // Older engines let two processes racing here create two networks of the same name;
        // keep the oldest one so every process converges on it.
        let mut networks = self.sandbox_networks().await?;
        networks.sort();
        for (_, id) in networks.iter().skip(1) {
            let _ = self.docker.remove_network(id).await;
        }
        let bridge = self.sandbox_bridge().await?;
        if egress::ensure(&bridge, egress).await? {
            tracing::info!(%bridge, mode = ?egress.mode, "egress policy applied to the sandbox network");
        }
        Ok(())
    }

    async fn sandbox_gateway(&self) -> RuntimeResult<IpAddr> {
        self.sandbox_network()
            .await?
            .ipam
            .and_then(|ipam| ipam.config)
            .into_iter()
            .flatten()
            .find_map(|config| config.gateway.and_then(|g| g.parse::<IpAddr>().ok()).filter(IpAddr::is_ipv4))
            .ok_or_else(|| RuntimeError::Other("the sandbox network has no IPv4 gateway".into()))
    }

    async fn sandbox_at(&self, ip: IpAddr) -> RuntimeResult<Option<String>> {
        let containers = self.sandbox_network().await?.containers.unwrap_or_default();
        let at = |address: &str| address.split('/').next().and_then(|a| a.parse::<IpAddr>().ok()) == Some(ip);
        let Some(name) = containers.into_values().find(|c| c.ipv4_address.as_deref().is_some_and(at)).and_then(|c| c.name) else {
            return Ok(None);
        };
        // Only ocaas's own sandboxes are named to the server.
        Ok(self.inspect(&name).await.ok().filter(|info| info.managed && info.ip == Some(ip)).map(|_| name))
    }

    async fn create_sandbox(&self, spec: &SandboxSpec) -> RuntimeResult<()> {
        disk::prepare(&spec.disk).await?;
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            hostname: Some(spec.name.clone()),
            user: Some(sandbox::USER.into()),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            host_config: Some(super::docker_config::host_config(spec)),
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        match self.docker.create_container(Some(options), body).await.map_err(map_err) {
            Ok(_) | Err(RuntimeError::Conflict(_)) => Ok(()),
            Err(error) => Err(error),
        }
    }

    async fn prepare_storage(&self, disk: &disk::DiskSpec) -> RuntimeResult<()> {
        disk::prepare(disk).await
    }

    async fn start(&self, name: &str) -> RuntimeResult<()> {
        // 304 (already started) is not an error for bollard.
        self.docker.start_container(name, None).await.map_err(map_err)
    }

    async fn stop(&self, name: &str, grace_secs: i32) -> RuntimeResult<()> {
        // A frozen container would sit out the whole grace period: thawed first.
        self.unpause(name).await?;
        let options = StopContainerOptions { t: Some(grace_secs), ..Default::default() };
        self.docker.stop_container(name, Some(options)).await.map_err(map_err)
    }

    async fn restart(&self, name: &str, grace_secs: i32) -> RuntimeResult<()> {
        self.unpause(name).await?;
        let options = RestartContainerOptions { t: Some(grace_secs), ..Default::default() };
        self.docker.restart_container(name, Some(options)).await.map_err(map_err)
    }

    async fn pause(&self, name: &str) -> RuntimeResult<()> {
        match self.docker.pause_container(name).await.map_err(map_err) {
            // "already paused" is the state asked for (the engine answers it with 409 or 500).
            Err(RuntimeError::Conflict(message) | RuntimeError::Other(message)) if message.contains("already paused") => Ok(()),
            other => other,
        }
    }

    async fn unpause(&self, name: &str) -> RuntimeResult<()> {
        match self.docker.unpause_container(name).await.map_err(map_err) {
            Err(RuntimeError::Conflict(message) | RuntimeError::Other(message)) if message.contains("is not paused") => Ok(()),
            Err(RuntimeError::NotFound(_)) => Ok(()),
            other => other,
        }
    }

    async fn remove_container(&self, name: &str) -> RuntimeResult<()> {
        let _ = self.unpause(name).await;
        let options = RemoveContainerOptions { force: true, ..Default::default() };
        ignore_not_found(self.docker.remove_container(name, Some(options)).await)
    }

    async fn remove_sandbox(&self, name: &str, disk: &disk::DiskSpec) -> RuntimeResult<()> {
        let _ = self.unpause(name).await;
        let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        ignore_not_found(self.docker.remove_container(name, Some(options)).await)?;
        // The named workspace volume of instances created before storage moved to the host.
        ignore_not_found(self.docker.remove_volume(&format!("ocaas-ws-{name}"), Some(RemoveVolumeOptions { force: true })).await)?;
        disk::release(disk).await
    }

    async fn inspect(&self, name: &str) -> RuntimeResult<ContainerInfo> {
        let info = self.docker.inspect_container(name, None::<InspectContainerOptions>).await.map_err(map_err)?;
        let state = info.state.unwrap_or_default();
        let ip = info
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|mut networks| networks.remove(SANDBOX_NETWORK))
            .and_then(|endpoint| endpoint.ip_address)
            .and_then(|ip| ip.parse().ok());
        let running = state.running.unwrap_or(false);
        let managed = info.config.and_then(|c| c.labels).is_some_and(|labels| labels.get(LABEL_MANAGED).is_some_and(|v| v == "true"));
        Ok(ContainerInfo {
            managed,
            state: state.status.map(|s| s.to_string()).unwrap_or_else(|| "unknown".into()),
            running,
            paused: state.paused.unwrap_or(false),
            exit_code: if running { None } else { state.exit_code },
            started_at: state.started_at.and_then(|at| at.parse().ok()).filter(|_| running),
            ip,
            error: state.error.filter(|e| !e.is_empty()),
        })
    }

    async fn list_managed(&self, deployment: &str) -> RuntimeResult<Vec<ManagedContainer>> {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{LABEL_MANAGED}=true"), format!("{LABEL_DEPLOYMENT}={deployment}")])]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let containers = self.docker.list_containers(Some(options)).await.map_err(map_err)?;
        Ok(containers
            .into_iter()
            .filter_map(|c| {
                let name = c.names?.into_iter().next()?.trim_start_matches('/').to_owned();
                Some(ManagedContainer { name, labels: c.labels.unwrap_or_default() })
            })
            .collect())
    }

    async fn exec(&self, name: &str, request: ExecRequest) -> RuntimeResult<ExecOutput> {
        self.exec_captured(name, request).await
    }

    async fn exec_tty(&self, name: &str, request: TtyRequest) -> RuntimeResult<TtySession> {
        self.exec_interactive(name, request).await
    }

    async fn resize_tty(&self, exec_id: &str, cols: u16, rows: u16) -> RuntimeResult<()> {
        self.resize_interactive(exec_id, cols, rows).await
    }

    async fn exec_exit_code(&self, exec_id: &str) -> RuntimeResult<Option<i64>> {
        self.finished_exit_code(exec_id).await
    }

    async fn upload_archive(&self, name: &str, dir: &str, tar: ByteStream) -> RuntimeResult<()> {
        let options = UploadToContainerOptions { path: dir.to_owned(), ..Default::default() };
        self.docker.upload_to_container(name, Some(options), bollard::body_try_stream(tar)).await.map_err(map_err)
    }

    fn download_archive(&self, name: &str, path: &str) -> ByteStream {
        let options = DownloadFromContainerOptions { path: path.to_owned() };
        Box::pin(self.docker.download_from_container(name, Some(options)).map(|chunk| chunk.map_err(|e| std::io::Error::other(map_err(e)))))
    }

    fn logs(&self, name: &str, tail: u32, follow: bool) -> LogStream {
        self.logs_stream(name, tail, follow)
    }

    async fn connect(&self, name: &str, port: u16) -> RuntimeResult<dial::Tunnel> {
        let info = self.inspect(name).await?;
        let ip = info.ip.filter(|_| info.running && !info.paused).ok_or_else(|| RuntimeError::Unavailable(format!("{name} is not running")))?;
        let connecting = tokio::net::TcpStream::connect(std::net::SocketAddr::new(ip, port));
        let stream = tokio::time::timeout(dial::CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| RuntimeError::Unavailable(format!("connecting to port {port} of {name} timed out")))?
            .map_err(|e| RuntimeError::Unavailable(format!("port {port} of {name}: {e}")))?;
        let _ = stream.set_nodelay(true);
        Ok(Box::new(stream))
    }

    async fn resources(&self, name: &str) -> RuntimeResult<Resources> {
        let options = StatsOptions { stream: false, one_shot: false };
        let stats =
            self.docker.stats(name, Some(options)).next().await.ok_or_else(|| RuntimeError::Other("no stats sample".into()))?.map_err(map_err)?;
        let cpu = stats.cpu_stats.unwrap_or_default();
        let pre = stats.precpu_stats.unwrap_or_default();
        let total = |c: &bollard::models::ContainerCpuStats| c.cpu_usage.as_ref().and_then(|u| u.total_usage).unwrap_or(0);
        let cpu_delta = total(&cpu).saturating_sub(total(&pre)) as f64;
        let system_delta = cpu.system_cpu_usage.unwrap_or(0).saturating_sub(pre.system_cpu_usage.unwrap_or(0)) as f64;
        let cpus = f64::from(cpu.online_cpus.unwrap_or(1).max(1));
        let memory = stats.memory_stats.unwrap_or_default();
        Ok(Resources {
            cpu_percent: if system_delta > 0.0 { cpu_delta / system_delta * cpus * 100.0 } else { 0.0 },
            memory_bytes: memory.usage.unwrap_or(0),
            memory_limit_bytes: memory.limit.unwrap_or(0),
        })
    }
}

impl DockerRuntime {
    /// The host interface of the sandbox network: its configured bridge name, else Docker's
    /// `br-` + the first 12 characters of the network id.
    pub async fn sandbox_bridge(&self) -> RuntimeResult<String> {
        let network = self.sandbox_network().await?;
        let named = network.options.and_then(|mut options| options.remove("com.docker.network.bridge.name"));
        let id = network.id.unwrap_or_default();
        Ok(named.unwrap_or_else(|| format!("br-{}", id.get(..12).unwrap_or(&id))))
    }

    async fn sandbox_network(&self) -> RuntimeResult<bollard::models::NetworkInspect> {
        self.docker.inspect_network(SANDBOX_NETWORK, None::<bollard::query_parameters::InspectNetworkOptions>).await.map_err(map_err)
    }

    /// (created, id) of every network named `SANDBOX_NETWORK`.
    async fn sandbox_networks(&self) -> RuntimeResult<Vec<(String, String)>> {
        let filters = HashMap::from([("name".to_owned(), vec![SANDBOX_NETWORK.to_owned()])]);
        let networks = self.docker.list_networks(Some(ListNetworksOptions { filters: Some(filters) })).await.map_err(map_err)?;
        Ok(networks
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(SANDBOX_NETWORK))
            .filter_map(|n| Some((n.created.map(|c| c.to_string()).unwrap_or_default(), n.id?)))
            .collect())
    }
}
