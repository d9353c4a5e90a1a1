//! This process's gateway connections, one per instance, each kept by a supervisor task:
//! connect, pair when the gateway asks (`openclaw devices approve <requestId>` inside the
//! sandbox, the headless way the gateway documents), keep the link up, reconnect with backoff
//! (0.25 s doubling to 30 s) after a drop. A gateway that does not speak the protocol is
//! remembered as such (callers use HTTP) and looked at again every 30 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::conn::{self, Connection};
use super::{ConnectError, Device, Foreign, Notice, Sinks};
use crate::runtime::sandbox::GATEWAY_PORT;
use crate::runtime::{ExecRequest, Runtime};

/// Approvals tried in a row before the supervisor backs off.
const APPROVALS_IN_A_ROW: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Foreign events queued for the importer before they are dropped (it then reloads).
const FOREIGN_QUEUE: usize = 1024;

/// What a connection to one instance needs.
pub struct Target {
    pub instance_id: Uuid,
    pub sandbox: String,
    pub token: String,
    pub device: Arc<Device>,
    /// Told the device token after each connect (the caller stores it sealed).
    pub on_connected: Box<dyn Fn(Option<String>) + Send + Sync>,
    /// Held while a command runs in the sandbox for the pairing: a pause waits for it rather
    /// than freezing the sandbox under it (which can hang the engine).
    pub exec_guard: Box<dyn Fn() -> ExecGuard + Send + Sync>,
}

/// What `Target::exec_guard` returns: a guard to hold while the command runs, or `None` when
/// the instance is busy with an operation (the pairing is tried again later).
pub type ExecGuard = std::pin::Pin<Box<dyn Future<Output = Option<Box<dyn Send>>> + Send>>;

#[derive(Debug, Clone)]
enum Link {
    Connecting,
    Up(Arc<Connection>),
    NoProtocol(String),
    Down(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    /// Use the HTTP door.
    #[error("{0}")]
    NoProtocol(String),
    #[error("{0}")]
    Down(String),
}

struct Entry {
    link: watch::Receiver<Link>,
    cancel: CancellationToken,
    /// Someone waits for the link: try again now, not after the backoff.
    poke: Arc<Notify>,
}

pub struct Hub {
    runtime: Arc<dyn Runtime>,
    entries: Mutex<HashMap<Uuid, Entry>>,
    sinks: Sinks,
    foreign_rx: Mutex<Option<mpsc::Receiver<Foreign>>>,
    notices_rx: Mutex<Option<mpsc::Receiver<Notice>>>,
    shutdown: CancellationToken,
}

impl Hub {
    pub fn new(runtime: Arc<dyn Runtime>, shutdown: CancellationToken) -> Self {
        let (foreign, foreign_rx) = mpsc::channel(FOREIGN_QUEUE);
        let (notices, notices_rx) = mpsc::channel(FOREIGN_QUEUE);
        Hub {
            runtime,
            entries: Mutex::default(),
            sinks: Sinks { foreign, notices },
            foreign_rx: Mutex::new(Some(foreign_rx)),
            notices_rx: Mutex::new(Some(notices_rx)),
            shutdown,
        }
    }

    /// The operator events' feed (once).
    pub fn take_notices(&self) -> Option<mpsc::Receiver<Notice>> {
        self.notices_rx.lock().expect("notices feed").take()
    }

    /// The importer's feed (once).
    pub fn take_foreign(&self) -> Option<mpsc::Receiver<Foreign>> {
        self.foreign_rx.lock().expect("foreign feed").take()
    }

    /// The instance's live connection, waiting up to `wait` for one; `target` is called only
    /// when this process has none open yet.
    pub async fn connection<F, Fut>(&self, instance_id: Uuid, wait: Duration, target: F) -> Result<Arc<Connection>, Unavailable>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Target, String>>,
    {
        let existing = self.entries.lock().expect("gateway links").get(&instance_id).map(|e| (e.link.clone(), e.poke.clone()));
        let (mut link, poke) = match existing {
            Some(found) => found,
            None => self.open(target().await.map_err(Unavailable::Down)?),
        };
        if !wait.is_zero() && matches!(&*link.borrow(), Link::Down(_)) {
            poke.notify_one();
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let current = link.borrow_and_update().clone();
            let last = match current {
                Link::Up(connection) if !connection.is_closed() => return Ok(connection),
                Link::NoProtocol(reason) => return Err(Unavailable::NoProtocol(reason)),
                Link::Down(reason) => reason,
                Link::Up(_) | Link::Connecting => "the gateway connection is being opened".to_owned(),
            };
            match tokio::time::timeout_at(deadline, link.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return Err(Unavailable::Down(last)),
            }
        }
    }

    /// Starts keeping a connection to `target` (if none is kept yet).
    fn open(&self, target: Target) -> (watch::Receiver<Link>, Arc<Notify>) {
        let mut entries = self.entries.lock().expect("gateway links");
        if let Some(entry) = entries.get(&target.instance_id) {
            return (entry.link.clone(), entry.poke.clone());
        }
        let (sender, link) = watch::channel(Link::Connecting);
        let cancel = self.shutdown.child_token();
        let poke = Arc::new(Notify::new());
        entries.insert(target.instance_id, Entry { link: link.clone(), cancel: cancel.clone(), poke: poke.clone() });
        let supervisor = Supervisor { runtime: self.runtime.clone(), target, link: sender, sinks: self.sinks.clone(), cancel, poke: poke.clone() };
        tokio::spawn(supervisor.run());
        (link, poke)
    }

    /// Stops keeping the instance's connection (it stopped, paused or went away).
    pub fn close(&self, instance_id: Uuid) {
        if let Some(entry) = self.entries.lock().expect("gateway links").remove(&instance_id) {
            entry.cancel.cancel();
        }
    }

    /// Instances with a kept connection.
    pub fn open_ids(&self) -> Vec<Uuid> {
        self.entries.lock().expect("gateway links").keys().copied().collect()
    }

    /// Whether the instance's connection is up right now.
    pub fn is_up(&self, instance_id: Uuid) -> bool {
        let entries = self.entries.lock().expect("gateway links");
        entries.get(&instance_id).is_some_and(|e| matches!(&*e.link.borrow(), Link::Up(c) if !c.is_closed()))
    }
}

struct Supervisor {
    runtime: Arc<dyn Runtime>,
    target: Target,
    link: watch::Sender<Link>,
    sinks: Sinks,
    cancel: CancellationToken,
    poke: Arc<Notify>,
}

impl Supervisor {
    async fn run(self) {
        let mut backoff = Duration::from_millis(250);
        let mut approvals = 0;
        while !self.cancel.is_cancelled() {
            let wait = match self.attempt().await {
                Ok(connection) => {
                    (self.target.on_connected)(connection.device_token.clone());
                    self.link.send_replace(Link::Up(connection.clone()));
                    // What happened while there was no connection is in the transcripts.
                    let _ = self.sinks.foreign.try_send(Foreign::Resync { instance_id: self.target.instance_id });
                    approvals = 0;
                    backoff = Duration::from_millis(250);
                    tokio::select! {
                        () = connection.closed() => {}
                        () = self.cancel.cancelled() => connection.close(),
                    }
                    self.link.send_replace(Link::Connecting);
                    Duration::ZERO
                }
                Err(ConnectError::NotPaired { request_id }) if approvals < APPROVALS_IN_A_ROW => {
                    approvals += 1;
                    match self.approve(&request_id).await {
                        Ok(()) => Duration::ZERO,
                        Err(reason) => {
                            self.link.send_replace(Link::Down(reason));
                            backoff
                        }
                    }
                }
                Err(ConnectError::NoProtocol(reason)) => {
                    tracing::info!(instance = %self.target.instance_id, %reason, "gateway: no WebSocket protocol, using HTTP");
                    self.link.send_replace(Link::NoProtocol(reason));
                    MAX_BACKOFF
                }
                Err(error) => {
                    self.link.send_replace(Link::Down(error.to_string()));
                    approvals = 0;
                    backoff
                }
            };
            if !wait.is_zero() {
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.poke.notified() => {}
                () = self.cancel.cancelled() => break,
            }
        }
    }

    async fn attempt(&self) -> Result<Arc<Connection>, ConnectError> {
        let info = self.runtime.inspect(&self.target.sandbox).await.map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        if !info.running || info.paused {
            return Err(ConnectError::Unreachable(format!("the sandbox is {}", info.state)));
        }
        let tunnel = self.runtime.connect(&self.target.sandbox, GATEWAY_PORT).await.map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        conn::connect(tunnel, &self.target.token, &self.target.device, self.target.instance_id, self.sinks.clone()).await
    }

    /// Approves ocaas's pending pairing request with the gateway's own CLI, inside the sandbox.
    async fn approve(&self, request_id: &str) -> Result<(), String> {
        // The id comes from the gateway: only an id's characters go into the command line.
        if request_id.is_empty() || request_id.len() > 128 || !request_id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err("the gateway asked for pairing with an unusable request id".into());
        }
        let request = ExecRequest {
            cmd: ["openclaw", "devices", "approve", request_id].map(str::to_owned).to_vec(),
            env: Vec::new(),
            working_dir: None,
            user: Some("1000:1000".into()),
            max_output: 4 << 10,
            timeout: Some(Duration::from_secs(30)),
        };
        let Some(guard) = (self.target.exec_guard)().await else {
            return Err("the instance is busy with an operation; pairing comes after it".into());
        };
        let output = self.runtime.exec(&self.target.sandbox, request).await;
        drop(guard);
        let output = output.map_err(|e| format!("pairing ocaas with the gateway failed: {e}"))?;
        match output.exit_code {
            Some(0) => {
                tracing::info!(instance = %self.target.instance_id, "gateway: ocaas's device paired");
                Ok(())
            }
            code => Err(format!(
                "pairing ocaas with the gateway failed (openclaw devices approve exited {code:?}): {}",
                String::from_utf8_lossy(&output.stderr).chars().take(300).collect::<String>()
            )),
        }
    }
}
