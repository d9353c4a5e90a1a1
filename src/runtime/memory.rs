//! An in-memory `Runtime` for unit tests of lifecycle and reconciler decisions: containers
//! are entries in a map, with a state word each. Integration tests use the real engine; this
//! only lets the decisions be checked without one.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;

/// A container: its state word and its labels.
type Entry = (String, HashMap<String, String>);

#[derive(Default)]
pub struct MemoryRuntime {
    /// name → container
    pub containers: Mutex<HashMap<String, Entry>>,
    /// Instance storage directories that exist.
    pub disks: Mutex<Vec<std::path::PathBuf>>,
    /// Every call, in order, as `verb name`.
    pub calls: Mutex<Vec<String>>,
    /// The sandbox ends of connections (kept open, never read: a sandbox that stops reading).
    pub far_ends: Mutex<Vec<tokio::io::DuplexStream>>,
}

impl MemoryRuntime {
    pub fn with_container(self, name: &str, state: &str, labels: &[(&str, &str)]) -> Self {
        let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        self.containers.lock().unwrap().insert(name.to_owned(), (state.to_owned(), labels));
        self
    }

    pub fn state_of(&self, name: &str) -> Option<String> {
        self.containers.lock().unwrap().get(name).map(|(state, _)| state.clone())
    }

    fn record(&self, verb: &str, name: &str) {
        self.calls.lock().unwrap().push(format!("{verb} {name}"));
    }

    fn set_state(&self, name: &str, state: &str) -> RuntimeResult<()> {
        match self.containers.lock().unwrap().get_mut(name) {
            Some(entry) => {
                entry.0 = state.to_owned();
                Ok(())
            }
            None => Err(RuntimeError::NotFound(name.to_owned())),
        }
    }
}

fn unsupported<T>() -> RuntimeResult<T> {
    Err(RuntimeError::Other("not supported by the in-memory runtime".into()))
}

#[async_trait]
impl Runtime for MemoryRuntime {
    async fn ping(&self) -> RuntimeResult<()> {
        Ok(())
    }
    async fn ensure_network(&self, _egress: &egress::EgressPolicy) -> RuntimeResult<()> {
        Ok(())
    }
    async fn sandbox_gateway(&self) -> RuntimeResult<IpAddr> {
        Ok(IpAddr::from([127, 0, 0, 1]))
    }
    async fn create_sandbox(&self, spec: &SandboxSpec) -> RuntimeResult<()> {
        self.record("create", &spec.name);
        self.prepare_storage(&spec.disk).await?;
        self.containers.lock().unwrap().entry(spec.name.clone()).or_insert_with(|| ("created".into(), spec.labels.clone()));
        Ok(())
    }
    async fn prepare_storage(&self, disk: &disk::DiskSpec) -> RuntimeResult<()> {
        let mut disks = self.disks.lock().unwrap();
        if !disks.contains(&disk.dir) {
            disks.push(disk.dir.clone());
        }
        Ok(())
    }
    async fn start(&self, name: &str) -> RuntimeResult<()> {
        self.record("start", name);
        self.set_state(name, "running")
    }
    async fn stop(&self, name: &str, _grace_secs: i32) -> RuntimeResult<()> {
        self.record("stop", name);
        self.set_state(name, "exited")
    }
    async fn restart(&self, name: &str, _grace_secs: i32) -> RuntimeResult<()> {
        self.record("restart", name);
        self.set_state(name, "running")
    }
    async fn pause(&self, name: &str) -> RuntimeResult<()> {
        self.record("pause", name);
        self.set_state(name, "paused")
    }
    async fn unpause(&self, name: &str) -> RuntimeResult<()> {
        self.record("unpause", name);
        self.set_state(name, "running")
    }
    async fn remove_container(&self, name: &str) -> RuntimeResult<()> {
        self.record("remove_container", name);
        self.containers.lock().unwrap().remove(name);
        Ok(())
    }
    async fn remove_sandbox(&self, name: &str, disk: &disk::DiskSpec) -> RuntimeResult<()> {
        self.record("remove", name);
        self.containers.lock().unwrap().remove(name);
        self.disks.lock().unwrap().retain(|d| *d != disk.dir);
        Ok(())
    }
    async fn inspect(&self, name: &str) -> RuntimeResult<ContainerInfo> {
        let state = self.state_of(name).ok_or_else(|| RuntimeError::NotFound(name.to_owned()))?;
        let running = state == "running" || state == "paused";
        let paused = state == "paused";
        let exit_code = (state == "exited").then_some(137);
        let managed = self.containers.lock().unwrap().get(name).is_some_and(|(_, labels)| labels.get(LABEL_MANAGED).is_some_and(|v| v == "true"));
        Ok(ContainerInfo { state, running, paused, exit_code, started_at: None, ip: None, error: None, managed })
    }
    async fn list_managed(&self, deployment: &str) -> RuntimeResult<Vec<ManagedContainer>> {
        let containers = self.containers.lock().unwrap();
        Ok(containers
            .iter()
            .filter(|(_, (_, labels))| labels.get(LABEL_DEPLOYMENT).is_some_and(|d| d == deployment))
            .map(|(name, (_, labels))| ManagedContainer { name: name.clone(), labels: labels.clone() })
            .collect())
    }
    async fn exec(&self, _name: &str, _request: ExecRequest) -> RuntimeResult<ExecOutput> {
        unsupported()
    }
    async fn exec_tty(&self, _name: &str, _request: TtyRequest) -> RuntimeResult<TtySession> {
        unsupported()
    }
    async fn resize_tty(&self, _exec_id: &str, _cols: u16, _rows: u16) -> RuntimeResult<()> {
        unsupported()
    }
    async fn exec_exit_code(&self, _exec_id: &str) -> RuntimeResult<Option<i64>> {
        unsupported()
    }
    async fn upload_archive(&self, _name: &str, _dir: &str, _tar: ByteStream) -> RuntimeResult<()> {
        unsupported()
    }
    fn download_archive(&self, _name: &str, _path: &str) -> ByteStream {
        Box::pin(futures_util::stream::empty())
    }
    async fn resources(&self, _name: &str) -> RuntimeResult<Resources> {
        unsupported()
    }
    fn logs(&self, _name: &str, _tail: u32, _follow: bool) -> LogStream {
        Box::pin(futures_util::stream::empty())
    }

    async fn connect(&self, name: &str, _port: u16) -> RuntimeResult<dial::Tunnel> {
        // A running entry answers with a stream whose far end never reads nor writes.
        self.record("connect", name);
        match self.state_of(name).as_deref() {
            Some("running") => {
                let (near, far) = tokio::io::duplex(64);
                self.far_ends.lock().unwrap().push(far);
                Ok(Box::new(near))
            }
            Some(_) => Err(RuntimeError::Unavailable(format!("{name} is not running"))),
            None => Err(RuntimeError::NotFound(name.to_owned())),
        }
    }
}
