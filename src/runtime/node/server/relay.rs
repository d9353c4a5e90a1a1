//! The model broker's sandbox-side listener on a node. Sandboxes on this host cannot reach a
//! replica's broker, so the node listens where the one-box server does (its sandbox network's
//! gateway, on a port the egress policy opens for sandboxes) and relays each call to the
//! server's `/internal/broker/v1/…` with three facts: this node's id, its relay key, and the
//! sandbox that called, found by the caller's address on this host's own sandbox network. The
//! server still checks the broker token, now against that sandbox and this node. Only the
//! broker's two paths are relayed; bodies are bounded in size and time, answers stream back
//! unbuffered, and calls in flight are capped per sandbox and per node.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use tokio::sync::{OnceCell, Semaphore};

use crate::runtime::node::wire::{NODE_HEADER, RELAY_KEY_HEADER, SANDBOX_HEADER};
use crate::runtime::{Runtime, RuntimeError, RuntimeResult};

/// Largest request body relayed (the real gateway sends about 60 KB; the broker's own cap).
const MAX_REQUEST: usize = 8 << 20;
/// Calls relayed at once from all of this node's sandboxes, and from any one of them.
const MAX_IN_FLIGHT: usize = 256;
const MAX_PER_SANDBOX: usize = 16;
/// How long a request body may take to arrive.
const BODY_DEADLINE: Duration = Duration::from_secs(30);
/// The only paths relayed: the broker's own.
const PATHS: [&str; 2] = ["/v1/chat/completions", "/v1/models"];
/// Request headers passed on; everything else (hop-by-hop, the sandbox's idea of the host,
/// anything claiming to be a relay header) stays here.
const PASSED: [header::HeaderName; 3] = [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT];

/// What the node learnt when it joined: its id, its relay key and where the server is.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct RelayConfig {
    pub node_id: uuid::Uuid,
    pub key: String,
    /// Base URLs of the server (one or more replicas), tried in order.
    pub api: Vec<String>,
}

/// Serves a bound listener (the server's connection limits: per-sandbox caps, header timeout).
pub type ServeFn = Arc<dyn Fn(tokio::net::TcpListener, axum::Router) -> BoxFuture<'static, ()> + Send + Sync>;

pub struct Relay {
    config: RelayConfig,
    runtime: Arc<dyn Runtime>,
    http: reqwest::Client,
    serve: ServeFn,
    /// The ports the last egress policy opened to sandboxes on this host.
    host_ports: Mutex<Vec<(u16, u16)>>,
    bound: OnceCell<SocketAddr>,
    in_flight: Arc<Semaphore>,
    /// Calls in flight per calling address.
    per_sandbox: crate::ratelimit::Counts<std::net::IpAddr>,
}

impl Relay {
    pub fn new(config: RelayConfig, runtime: Arc<dyn Runtime>, serve: ServeFn) -> anyhow::Result<Self> {
        // No overall timeout (answers stream for minutes); the broker gives up on a silent
        // provider after 2 minutes, so a silent server is gone after a little more.
        let http = crate::runtime::outbound::client(Duration::from_secs(5), Some(Duration::from_secs(150)), None)?;
        let (host_ports, bound, in_flight) = (Mutex::default(), OnceCell::new(), Arc::new(Semaphore::new(MAX_IN_FLIGHT)));
        Ok(Relay { config, runtime, http, serve, host_ports, bound, in_flight, per_sandbox: Default::default() })
    }

    /// Remembers which host ports the egress policy opens to sandboxes.
    pub fn policy(&self, policy: &crate::runtime::egress::EgressPolicy) {
        *self.host_ports.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = policy.host_ports.clone();
    }

    /// Where sandboxes reach the relay; bound on first use (the sandbox network exists by then).
    pub async fn address(self: &Arc<Self>) -> RuntimeResult<SocketAddr> {
        self.bound.get_or_try_init(|| self.bind()).await.copied()
    }

    async fn bind(self: &Arc<Self>) -> RuntimeResult<SocketAddr> {
        let gateway = self.runtime.sandbox_gateway().await?;
        let ranges = self.host_ports.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for port in ranges.into_iter().flat_map(|(first, last)| first..=last) {
            if let Ok(listener) = tokio::net::TcpListener::bind(SocketAddr::new(gateway, port)).await {
                let address = listener.local_addr().map_err(|e| RuntimeError::Other(e.to_string()))?;
                let router = axum::Router::new().fallback(forward).with_state(self.clone());
                tokio::spawn((self.serve)(listener, router));
                tracing::info!(%address, "model broker relay listening for sandboxes");
                return Ok(address);
            }
        }
        Err(RuntimeError::Unavailable(format!("no free port for the model broker relay on {gateway} in the ports open to sandboxes")))
    }
}

fn openai_error(status: StatusCode, message: &str) -> Response {
    let body =
        serde_json::json!({"error": {"message": message, "type": if status.is_server_error() { "server_error" } else { "invalid_request_error" }}});
    (status, axum::Json(body)).into_response()
}

async fn forward(State(relay): State<Arc<Relay>>, ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request) -> Response {
    // Only the broker's own paths: nothing a sandbox sends reaches another route of the server.
    let path = request.uri().path();
    if !PATHS.contains(&path) {
        return openai_error(StatusCode::NOT_FOUND, "Not found: the broker serves /v1/chat/completions and /v1/models.");
    }
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    let path = format!("{path}{query}");
    let Some(counted) = relay.per_sandbox.try_take(peer.ip(), MAX_PER_SANDBOX) else {
        return openai_error(StatusCode::TOO_MANY_REQUESTS, "This sandbox has too many model calls in flight; retry when one ends.");
    };
    let Ok(permit) = relay.in_flight.clone().try_acquire_owned() else {
        return openai_error(StatusCode::TOO_MANY_REQUESTS, "Too many model calls on this host at once; retry shortly.");
    };
    let sandbox = match relay.runtime.sandbox_at(peer.ip()).await {
        Ok(Some(name)) => name,
        Ok(None) => return openai_error(StatusCode::FORBIDDEN, "Only this host's sandboxes may call the model broker."),
        Err(_) => return openai_error(StatusCode::SERVICE_UNAVAILABLE, "The node cannot tell which sandbox called right now."),
    };
    let (parts, body) = request.into_parts();
    let body = match tokio::time::timeout(BODY_DEADLINE, axum::body::to_bytes(body, MAX_REQUEST)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return openai_error(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large for the model broker."),
        Err(_) => return openai_error(StatusCode::REQUEST_TIMEOUT, "The request body arrived too slowly."),
    };
    let Ok(sandbox_header) = HeaderValue::from_str(&sandbox) else {
        return openai_error(StatusCode::FORBIDDEN, "Only this host's sandboxes may call the model broker.");
    };
    for api in &relay.config.api {
        let mut call = relay
            .http
            .request(parts.method.clone(), format!("{}/internal/broker{path}", api.trim_end_matches('/')))
            .header(NODE_HEADER, relay.config.node_id.to_string())
            .header(RELAY_KEY_HEADER, &relay.config.key)
            .header(SANDBOX_HEADER, sandbox_header.clone())
            .body(body.clone());
        for name in &PASSED {
            if let Some(value) = parts.headers.get(name) {
                call = call.header(name, value);
            }
        }
        match call.send().await {
            Ok(answer) => {
                let mut response = Response::builder().status(answer.status().as_u16());
                for name in [header::CONTENT_TYPE, header::CACHE_CONTROL] {
                    if let Some(value) = answer.headers().get(&name) {
                        response = response.header(name, value);
                    }
                }
                // The permits are held until the answer has streamed out.
                let stream = answer.bytes_stream().map(move |chunk| {
                    let _held = (&permit, &counted);
                    chunk
                });
                return response.body(Body::from_stream(stream)).unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response());
            }
            // Not reached at all: the next replica may be.
            Err(error) if error.is_connect() => tracing::debug!(%api, %error, "broker relay: a server address does not answer"),
            Err(error) => {
                tracing::warn!(%api, %error, "broker relay: the call failed");
                return openai_error(StatusCode::BAD_GATEWAY, "The model broker did not answer.");
            }
        }
    }
    openai_error(StatusCode::BAD_GATEWAY, "The server's model broker cannot be reached from this host.")
}
