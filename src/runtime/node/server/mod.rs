//! The node's side of the link: the `Runtime` of this host (Docker, storage, egress) behind an
//! HTTP/2 router over TLS. Every call carries the API's credential (only its hash is kept
//! here); every call naming a container is refused unless the container is labelled as
//! ocaas's; storage is confined to this node's own directory whatever path the API names; and
//! only the sandbox's gateway and desktop ports can be reached.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::StreamExt;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio_util::io::{ReaderStream, StreamReader};

mod execs;
mod listen;
pub mod relay;
mod storage;

pub use listen::{CONNECTION_WINDOW, MAX_STREAMS, STREAM_WINDOW, serve};

use super::wire::{self, Failure, Output};
use crate::runtime::disk::DiskSpec;
use crate::runtime::egress::EgressPolicy;
use crate::runtime::sandbox::{GATEWAY_PORT, LABEL_MANAGED, VNC_PORT};
use crate::runtime::{ExecRequest, Runtime, RuntimeError, SandboxSpec};

pub struct Node {
    pub runtime: Arc<dyn Runtime>,
    /// SHA-256 of the credential the API presents.
    pub credential: [u8; 32],
    /// Where this node keeps instance storage, whatever directory the API names.
    pub disk_root: PathBuf,
    pub execs: execs::Execs,
    /// The model broker's relay for this host's sandboxes (`None`: they use the server's
    /// own listener, as on a node in the same process).
    pub relay: Option<Arc<relay::Relay>>,
}

struct NodeError(StatusCode, RuntimeError);

impl From<RuntimeError> for NodeError {
    fn from(error: RuntimeError) -> Self {
        let status = match &error {
            RuntimeError::NotFound(_) => StatusCode::NOT_FOUND,
            RuntimeError::Conflict(_) => StatusCode::CONFLICT,
            RuntimeError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RuntimeError::Other(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        NodeError(status, error)
    }
}

fn refused(message: impl Into<String>) -> NodeError {
    NodeError(StatusCode::FORBIDDEN, RuntimeError::Other(message.into()))
}

impl IntoResponse for NodeError {
    fn into_response(self) -> Response {
        let (kind, message) = match self.1 {
            RuntimeError::NotFound(m) => ("not_found", m),
            RuntimeError::Conflict(m) => ("conflict", m),
            RuntimeError::Unavailable(m) => ("unavailable", m),
            RuntimeError::Other(m) => ("other", m),
        };
        (self.0, Json(Failure { kind: kind.into(), message })).into_response()
    }
}

type Answer<T> = Result<T, NodeError>;

/// What sandbox names, storage directories and exec ids look like.
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 128 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Node {
    /// `disk` moved under this node's own storage directory (its last component kept).
    fn confine(&self, disk: DiskSpec) -> Answer<DiskSpec> {
        let name = disk.dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !plain_name(name) {
            return Err(refused("a storage directory must be named like a sandbox"));
        }
        Ok(DiskSpec { dir: self.disk_root.join(name), quota_bytes: disk.quota_bytes })
    }

    /// Refuses a container that exists and is not ocaas's, or a name no sandbox has (which the
    /// engine might read as something else, e.g. `x?force=true`); `Ok(false)` when it does not
    /// exist.
    async fn ours(&self, name: &str) -> Answer<bool> {
        if !plain_name(name) {
            return Err(refused("not a sandbox's name"));
        }
        match self.runtime.inspect(name).await {
            Ok(info) if info.managed => Ok(true),
            Ok(_) => Err(refused(format!("{name} is not an ocaas sandbox"))),
            Err(RuntimeError::NotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn existing(&self, name: &str) -> Answer<()> {
        match self.ours(name).await? {
            true => Ok(()),
            false => Err(RuntimeError::NotFound(name.to_owned()).into()),
        }
    }
}

/// The node's routes, behind the credential check.
pub fn router(node: Arc<Node>) -> axum::Router {
    axum::Router::new()
        .route("/v1/ping", get(async |State(n): State<Arc<Node>>| n.runtime.ping().await.map_err(NodeError::from)))
        .route("/v1/network", post(network))
        .route("/v1/gateway", get(async |State(n): State<Arc<Node>>| Ok::<_, NodeError>(Json(n.runtime.sandbox_gateway().await?))))
        .route("/v1/broker", get(broker))
        .route("/v1/sandboxes", post(create).get(list))
        .route("/v1/storage/{verb}", post(storage::verb))
        .route("/v1/storage/read", post(storage::read_state_file))
        .route("/v1/storage/pack", post(storage::pack))
        .route("/v1/storage/unpack", axum::routing::put(storage::unpack))
        .route("/v1/sandboxes/{name}", get(inspect))
        .route("/v1/sandboxes/{name}/{verb}", post(verb))
        .route("/v1/sandboxes/{name}/exec", post(exec))
        .route("/v1/sandboxes/{name}/tty", post(tty))
        .route("/v1/execs/{id}", get(exit_code).post(resize))
        .route("/v1/sandboxes/{name}/archive", get(download).put(upload))
        .route("/v1/sandboxes/{name}/logs", get(logs))
        .route("/v1/sandboxes/{name}/connect/{port}", post(connect))
        .layer(middleware::from_fn_with_state(node.clone(), authenticate))
        .with_state(node)
}

async fn authenticate(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    let presented = request.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(credential) if bool::from(super::credential_hash(credential).ct_eq(&node.credential)) => next.run(request).await,
        _ => NodeError(StatusCode::UNAUTHORIZED, RuntimeError::Other("no valid node credential".into())).into_response(),
    }
}

async fn network(State(node): State<Arc<Node>>, Json(policy): Json<EgressPolicy>) -> Answer<()> {
    if let Some(relay) = &node.relay {
        relay.policy(&policy);
    }
    Ok(node.runtime.ensure_network(&policy).await?)
}

/// Where this host's sandboxes reach the model broker (`None`: the server's own listener).
async fn broker(State(node): State<Arc<Node>>) -> Answer<Json<Option<std::net::SocketAddr>>> {
    match &node.relay {
        Some(relay) => Ok(Json(Some(relay.address().await?))),
        None => Ok(Json(None)),
    }
}

async fn create(State(node): State<Arc<Node>>, Json(mut spec): Json<SandboxSpec>) -> Answer<()> {
    // `ours` checks the name.
    if spec.labels.get(LABEL_MANAGED).map(String::as_str) != Some("true") {
        return Err(refused("a sandbox must be labelled as ocaas's"));
    }
    node.ours(&spec.name).await?;
    spec.disk = node.confine(spec.disk)?;
    Ok(node.runtime.create_sandbox(&spec).await?)
}

#[derive(Deserialize)]
struct Deployment {
    deployment: String,
}

async fn list(State(node): State<Arc<Node>>, Query(q): Query<Deployment>) -> Answer<Json<Vec<crate::runtime::ManagedContainer>>> {
    Ok(Json(node.runtime.list_managed(&q.deployment).await?))
}

async fn inspect(State(node): State<Arc<Node>>, Path(name): Path<String>) -> Answer<Response> {
    node.existing(&name).await?;
    Ok(Json(node.runtime.inspect(&name).await?).into_response())
}

#[derive(Deserialize, Default)]
struct Verb {
    #[serde(default)]
    grace: i32,
    disk: Option<DiskSpec>,
}

/// Power and removal: `start`, `stop`, `restart`, `pause`, `unpause`, `remove-container`,
/// `remove` (with its storage).
async fn verb(State(node): State<Arc<Node>>, Path((name, verb)): Path<(String, String)>, body: Option<Json<Verb>>) -> Answer<Response> {
    let Verb { grace, disk } = body.map(|Json(v)| v).unwrap_or_default();
    let exists = node.ours(&name).await?;
    let runtime = node.runtime.as_ref();
    match verb.as_str() {
        "remove-container" => runtime.remove_container(&name).await?,
        "remove" => {
            let disk = node.confine(disk.ok_or_else(|| refused("which storage to remove"))?)?;
            runtime.remove_sandbox(&name, &disk).await?
        }
        _ if !exists => return Err(RuntimeError::NotFound(name).into()),
        "start" => runtime.start(&name).await?,
        "stop" => runtime.stop(&name, grace).await?,
        "restart" => runtime.restart(&name, grace).await?,
        "pause" => runtime.pause(&name).await?,
        "unpause" => runtime.unpause(&name).await?,
        "resources" => return Ok(Json(runtime.resources(&name).await?).into_response()),
        _ => return Err(RuntimeError::NotFound(verb).into()),
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn exec(State(node): State<Arc<Node>>, Path(name): Path<String>, Json(request): Json<ExecRequest>) -> Answer<Json<Output>> {
    node.existing(&name).await?;
    Ok(Json(node.runtime.exec(&name, request).await?.into()))
}

fn body_reader(body: Body) -> impl tokio::io::AsyncRead + Send + Unpin + 'static {
    StreamReader::new(body.into_data_stream().map(|r| r.map_err(std::io::Error::other)))
}

/// Copies the request body into `into` until either ends.
fn pump_in(body: Body, mut into: impl tokio::io::AsyncWrite + Send + Unpin + 'static) {
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut body_reader(body), &mut into).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut into).await;
    });
}

async fn tty(State(node): State<Arc<Node>>, Path(name): Path<String>, headers: HeaderMap, body: Body) -> Answer<Response> {
    let request: crate::runtime::TtyRequest =
        headers.get(wire::TTY_HEADER).and_then(|v| v.to_str().ok()).and_then(wire::decode_json).ok_or_else(|| refused("no terminal request"))?;
    node.existing(&name).await?;
    let session = node.runtime.exec_tty(&name, request).await?;
    node.execs.insert(session.exec_id.clone());
    pump_in(body, session.input);
    Ok(([(wire::EXEC_ID_HEADER, session.exec_id)], Body::from_stream(session.output)).into_response())
}

#[derive(Deserialize)]
struct Size {
    cols: u16,
    rows: u16,
}

fn known_exec(node: &Node, id: &str) -> Answer<()> {
    if !plain_name(id) {
        return Err(refused("not an exec id"));
    }
    match node.execs.contains(id) {
        true => Ok(()),
        false => Err(RuntimeError::NotFound(id.to_owned()).into()),
    }
}

async fn exit_code(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Answer<Json<Option<i64>>> {
    known_exec(&node, &id)?;
    Ok(Json(node.runtime.exec_exit_code(&id).await?))
}

async fn resize(State(node): State<Arc<Node>>, Path(id): Path<String>, Json(size): Json<Size>) -> Answer<()> {
    known_exec(&node, &id)?;
    Ok(node.runtime.resize_tty(&id, size.cols, size.rows).await?)
}

#[derive(Deserialize)]
struct ArchivePath {
    path: String,
}

async fn upload(State(node): State<Arc<Node>>, Path(name): Path<String>, Query(q): Query<ArchivePath>, body: Body) -> Answer<()> {
    node.existing(&name).await?;
    let tar = Box::pin(body.into_data_stream().map(|r| r.map_err(std::io::Error::other)));
    Ok(node.runtime.upload_archive(&name, &q.path, tar).await?)
}

async fn download(State(node): State<Arc<Node>>, Path(name): Path<String>, Query(q): Query<ArchivePath>) -> Answer<Response> {
    node.existing(&name).await?;
    Ok(Body::from_stream(node.runtime.download_archive(&name, &q.path)).into_response())
}

#[derive(Deserialize)]
struct LogQuery {
    tail: u32,
    follow: bool,
}

async fn logs(State(node): State<Arc<Node>>, Path(name): Path<String>, Query(q): Query<LogQuery>) -> Answer<Response> {
    node.existing(&name).await?;
    let frames = node
        .runtime
        .logs(&name, q.tail, q.follow)
        .map(|chunk| chunk.map(|c| wire::frame(u8::from(c.stderr), &c.bytes)).map_err(|e| std::io::Error::other(e.to_string())));
    Ok(Body::from_stream(frames).into_response())
}

async fn connect(State(node): State<Arc<Node>>, Path((name, port)): Path<(String, u16)>, body: Body) -> Answer<Response> {
    if port != GATEWAY_PORT && port != VNC_PORT {
        return Err(refused("only a sandbox's gateway and desktop ports can be reached"));
    }
    node.existing(&name).await?;
    let (from, to) = tokio::io::split(node.runtime.connect(&name, port).await?);
    pump_in(body, to);
    Ok(Body::from_stream(ReaderStream::new(from)).into_response())
}

#[cfg(test)]
mod tests;
