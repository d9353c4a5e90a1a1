//! One WebSocket connection to an instance's gateway: the handshake (challenge, signed
//! `connect`, `hello-ok`), then one task that writes requests, matches responses to them by
//! id, and routes `chat`/`agent` events to the run that asked for them, or else to the
//! importer (turns made elsewhere). Everything it keeps is bounded: the frame size, requests in
//! flight, events queued per run; a run whose reader falls behind, a `seq` gap or a silent
//! gateway (no frame for two tick intervals) ends the run's feed, and the reader reloads from
//! `chat.history`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::device::Device;
use super::frames::*;
use super::notice::{self, Notice};
use super::{ConnectError, Foreign, RpcError, RunEvent, Sinks};

/// The largest frame ocaas reads: `hello-ok` is ~17 KB, a `chat.history` page well under this.
pub const MAX_FRAME: usize = 4 << 20;
const REQUESTS_IN_FLIGHT: usize = 64;
/// Events queued for one run's reader; one that falls further behind is cut off (and reloads).
const RUN_QUEUE: usize = 256;
/// Malformed frames tolerated on one connection before it is dropped (and reopened, later).
const MALFORMED_LIMIT: u32 = 100;
const HANDSHAKE: Duration = Duration::from_secs(10);

type Pending = HashMap<String, oneshot::Sender<Result<Value, RpcError>>>;

pub struct Connection {
    out: mpsc::Sender<String>,
    pending: Mutex<Pending>,
    runs: Mutex<HashMap<String, mpsc::Sender<RunEvent>>>,
    closed: CancellationToken,
    /// Issued by the gateway once this device is paired (`hello-ok.auth.deviceToken`).
    pub device_token: Option<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("gateway::Connection")
    }
}

impl Connection {
    /// Calls `method`; the answer's payload, or the gateway's error.
    pub async fn request(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, RpcError> {
        let id = Uuid::new_v4().to_string();
        let (sender, answer) = oneshot::channel();
        {
            let mut pending = self.pending.lock().expect("pending requests");
            if pending.len() >= REQUESTS_IN_FLIGHT {
                return Err(RpcError::Busy);
            }
            pending.insert(id.clone(), sender);
        }
        let frame = serde_json::to_string(&Request { kind: "req", id: &id, method, params: &params }).expect("a request serializes");
        if self.out.send(frame).await.is_err() {
            self.pending.lock().expect("pending requests").remove(&id);
            return Err(RpcError::Closed);
        }
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(RpcError::Closed),
            Err(_) => {
                self.pending.lock().expect("pending requests").remove(&id);
                Err(RpcError::Timeout)
            }
        }
    }

    /// The events of run `run_id` from now on (subscribe before starting it). The feed ends
    /// (`None`) when the run's events can no longer be trusted to be complete.
    pub fn subscribe(&self, run_id: &str) -> mpsc::Receiver<RunEvent> {
        let (sender, receiver) = mpsc::channel(RUN_QUEUE);
        self.runs.lock().expect("run feeds").insert(run_id.to_owned(), sender);
        receiver
    }

    pub fn unsubscribe(&self, run_id: &str) {
        self.runs.lock().expect("run feeds").remove(run_id);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    pub fn close(&self) {
        self.closed.cancel();
    }
}

type Socket = tokio_tungstenite::WebSocketStream<crate::runtime::dial::Tunnel>;

/// Opens a connection and completes the handshake as `device`.
pub async fn connect(
    tunnel: crate::runtime::dial::Tunnel,
    token: &str,
    device: &Device,
    instance_id: Uuid,
    sinks: Sinks,
) -> Result<Arc<Connection>, ConnectError> {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(8 << 10)
        .write_buffer_size(0)
        .max_write_buffer_size(1 << 20)
        .max_message_size(Some(MAX_FRAME))
        .max_frame_size(Some(MAX_FRAME));
    let upgrade = tokio_tungstenite::client_async_with_config("ws://gateway/", tunnel, Some(config));
    let (mut socket, _) = match tokio::time::timeout(HANDSHAKE, upgrade).await {
        Err(_) => return Err(ConnectError::Unreachable("the WebSocket upgrade timed out".into())),
        Ok(Err(tungstenite::Error::Http(response))) => {
            return Err(ConnectError::NoProtocol(format!("the upgrade was answered {}", response.status())));
        }
        Ok(Err(e)) => return Err(ConnectError::Unreachable(e.to_string())),
        Ok(Ok(done)) => done,
    };
    let hello = tokio::time::timeout(HANDSHAKE, handshake(&mut socket, token, device))
        .await
        .map_err(|_| ConnectError::Protocol("the gateway did not finish the handshake in time".into()))??;
    let (out, outgoing) = mpsc::channel(REQUESTS_IN_FLIGHT);
    let connection = Arc::new(Connection {
        out,
        pending: Mutex::default(),
        runs: Mutex::default(),
        closed: CancellationToken::new(),
        device_token: hello.auth.device_token,
    });
    // Two tick intervals without a frame: the gateway is gone (the reference client's rule).
    let silence = Duration::from_millis(hello.policy.tick_interval_ms.clamp(1_000, 120_000) * 2);
    let pump = Pump { connection: connection.clone(), instance_id, sinks, last_seq: None, malformed: 0, foreign_lost: false };
    tokio::spawn(pump.run(socket, outgoing, silence));
    Ok(connection)
}

async fn next_text(socket: &mut Socket) -> Result<String, ConnectError> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return Ok(text.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(ConnectError::Protocol(format!(
                    "closed during the handshake: {}",
                    frame.map(|f| f.reason.to_string()).unwrap_or_default()
                )));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(ConnectError::Unreachable(e.to_string())),
            None => return Err(ConnectError::Unreachable("closed during the handshake".into())),
        }
    }
}

async fn handshake(socket: &mut Socket, token: &str, device: &Device) -> Result<HelloOk, ConnectError> {
    let challenge = match serde_json::from_str::<Inbound>(&next_text(socket).await?) {
        Ok(Inbound::Event(event)) if event.event == "connect.challenge" => {
            serde_json::from_value::<Challenge>(event.payload).map_err(|e| ConnectError::Protocol(format!("a bad challenge: {e}")))?
        }
        _ => return Err(ConnectError::NoProtocol("the first frame was not connect.challenge".into())),
    };
    let signed_at = chrono::Utc::now().timestamp_millis();
    let caps = ["tool-events"];
    let params = ConnectParams {
        min_protocol: PROTOCOL,
        max_protocol: PROTOCOL,
        client: &CLIENT,
        role: ROLE,
        scopes: &SCOPES,
        caps: &caps,
        auth: ConnectAuth { token },
        device: Some(device.proof(&CLIENT, ROLE, &SCOPES, token, &challenge.nonce, signed_at)),
        user_agent: concat!("ocaas/", env!("CARGO_PKG_VERSION")),
    };
    let id = Uuid::new_v4().to_string();
    let params = serde_json::to_value(&params).expect("connect params serialize");
    let frame = serde_json::to_string(&Request { kind: "req", id: &id, method: "connect", params: &params }).expect("a request serializes");
    socket.send(Message::text(frame)).await.map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    loop {
        let text = next_text(socket).await?;
        let Ok(Inbound::Res(response)) = serde_json::from_str::<Inbound>(&text) else { continue };
        if response.id != id {
            continue;
        }
        if !response.ok {
            let error = response.error.unwrap_or(ErrorShape { code: "UNKNOWN".into(), message: "connect failed".into(), details: Value::Null });
            if error.code == "NOT_PAIRED" || error.detail_code() == "PAIRING_REQUIRED" {
                let request_id = error.details.get("requestId").and_then(Value::as_str).unwrap_or("").to_owned();
                return Err(ConnectError::NotPaired { request_id });
            }
            if error.detail_code() == "PROTOCOL_MISMATCH" {
                return Err(ConnectError::NoProtocol(error.message));
            }
            return Err(ConnectError::Rejected(error));
        }
        let hello: HelloOk = serde_json::from_value(response.payload).map_err(|e| ConnectError::Protocol(format!("a bad hello-ok: {e}")))?;
        if hello.protocol != PROTOCOL {
            return Err(ConnectError::NoProtocol(format!("the gateway speaks protocol {}", hello.protocol)));
        }
        if !REQUIRED_SCOPES.iter().all(|s| hello.auth.scopes.iter().any(|g| g == s)) {
            // Connected, but without the scopes: the device is not (or no longer) paired as asked.
            return Err(ConnectError::ScopesCleared(hello.auth.scopes));
        }
        return Ok(hello);
    }
}

struct Pump {
    connection: Arc<Connection>,
    instance_id: Uuid,
    sinks: Sinks,
    last_seq: Option<u64>,
    malformed: u32,
    foreign_lost: bool,
}

impl Pump {
    async fn run(mut self, mut socket: Socket, mut outgoing: mpsc::Receiver<String>, silence: Duration) {
        let closed = self.connection.closed.clone();
        loop {
            tokio::select! {
                () = closed.cancelled() => break,
                frame = outgoing.recv() => match frame {
                    Some(frame) => if socket.send(Message::text(frame)).await.is_err() { break },
                    None => break,
                },
                received = tokio::time::timeout(silence, socket.next()) => match received {
                    Err(_) => {
                        let _ = socket.close(Some(tungstenite::protocol::CloseFrame { code: 4000.into(), reason: "tick timeout".into() })).await;
                        break;
                    }
                    Ok(Some(Ok(Message::Text(text)))) => if !self.handle(text.as_str()) { break },
                    Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => break,
                    Ok(Some(Ok(_))) => {}
                },
            }
        }
        closed.cancel();
        // Whoever waits learns the connection is gone: answers never come, run feeds end.
        self.connection.pending.lock().expect("pending requests").clear();
        self.connection.runs.lock().expect("run feeds").clear();
        let _ = self.sinks.foreign.try_send(Foreign::Resync { instance_id: self.instance_id });
    }

    /// Handles one frame; `false` ends the connection.
    fn handle(&mut self, text: &str) -> bool {
        let frame = match serde_json::from_str::<Inbound>(text) {
            Ok(frame) => frame,
            Err(_) => {
                self.malformed += 1;
                return self.malformed < MALFORMED_LIMIT;
            }
        };
        match frame {
            Inbound::Res(response) => {
                let waiter = self.connection.pending.lock().expect("pending requests").remove(&response.id);
                if let Some(waiter) = waiter {
                    let result = match (response.ok, response.error) {
                        (true, _) => Ok(response.payload),
                        (false, Some(error)) => Err(RpcError::Gateway(error)),
                        (false, None) => {
                            Err(RpcError::Gateway(ErrorShape { code: "UNKNOWN".into(), message: "failed".into(), details: Value::Null }))
                        }
                    };
                    let _ = waiter.send(result);
                }
            }
            Inbound::Event(event) => {
                if let Some(seq) = event.seq {
                    if self.last_seq.is_some_and(|last| seq != last + 1) {
                        // Frames were lost (or the gateway lies): nothing seen so far can be
                        // trusted complete. Run readers reload from chat.history.
                        self.connection.runs.lock().expect("run feeds").clear();
                        self.send_foreign(Foreign::Resync { instance_id: self.instance_id });
                    }
                    self.last_seq = Some(seq);
                }
                self.route(event);
            }
        }
        true
    }

    fn send_foreign(&mut self, event: Foreign) {
        if self.foreign_lost && self.sinks.foreign.try_send(Foreign::Resync { instance_id: self.instance_id }).is_ok() {
            self.foreign_lost = false;
        }
        if self.sinks.foreign.try_send(event).is_err() {
            self.foreign_lost = true;
        }
    }

    fn route(&mut self, event: EventFrame) {
        let (run_id, session_key, mapped) = match event.event.as_str() {
            "chat" => {
                let Ok(chat) = serde_json::from_value::<ChatPayload>(event.payload) else { return self.malformed += 1 };
                let text = chat.message.as_ref().map(|m| text_of(&m["content"]));
                let mapped = match chat.state.as_str() {
                    "delta" => chat.delta_text.clone().filter(|d| !d.is_empty()).map(RunEvent::Delta),
                    "final" => Some(RunEvent::Final(text.clone())),
                    "aborted" => Some(RunEvent::Aborted(text.clone())),
                    "error" => Some(RunEvent::Failed(chat.error_message.clone().unwrap_or_else(|| "the agent run failed".into()))),
                    _ => None,
                };
                let ended = matches!(chat.state.as_str(), "final" | "aborted" | "error");
                if !self.connection.runs.lock().expect("run feeds").contains_key(&chat.run_id) && (ended || chat.state == "delta") {
                    let event = Foreign::Chat {
                        instance_id: self.instance_id,
                        session_key: chat.session_key.clone(),
                        run_id: chat.run_id.clone(),
                        text: text.unwrap_or_default(),
                        ended,
                    };
                    self.send_foreign(event);
                    return;
                }
                (chat.run_id, chat.session_key, mapped)
            }
            "agent" => {
                let Ok(agent) = serde_json::from_value::<AgentPayload>(event.payload) else { return self.malformed += 1 };
                let mapped = if agent.stream == "tool" { serde_json::from_value::<ToolData>(agent.data).ok().map(RunEvent::Tool) } else { None };
                (agent.run_id, agent.session_key, mapped)
            }
            name if notice::EVENTS.contains(&name) => {
                // Read small here; a full queue drops it (schedules are re-read every 30 s; an
                // approval request missed is denied by the gateway when it expires).
                if let Some(kind) = notice::read(name, event.payload) {
                    let _ = self.sinks.notices.try_send(Notice { instance_id: self.instance_id, kind });
                }
                return;
            }
            _ => return,
        };
        let _ = session_key;
        let Some(mapped) = mapped else { return };
        let mut runs = self.connection.runs.lock().expect("run feeds");
        if let Some(feed) = runs.get(&run_id) {
            let ended = mapped.ends_run();
            if feed.try_send(mapped).is_err() {
                // Its reader fell behind: end its feed; it reloads what it missed.
                runs.remove(&run_id);
            } else if ended {
                runs.remove(&run_id);
            }
        }
    }
}

/// `chat.history` of `session_key`, typed.
pub async fn history(connection: &Connection, session_key: &str, limit: u32) -> Result<History, RpcError> {
    let payload = connection.request("chat.history", json!({"sessionKey": session_key, "limit": limit}), Duration::from_secs(15)).await?;
    serde_json::from_value(payload).map_err(|e| RpcError::Malformed(e.to_string()))
}
