//! The API's side of the link: `RemoteRuntime`, a `Runtime` whose calls go to one node over a
//! single pinned-TLS HTTP/2 connection, redialled when it drops. A node that does not answer
//! makes every call fail within seconds as `Unavailable` (503 `engine_unavailable` above), and
//! a node that just failed to answer is not redialled by every waiting call in turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_util::io::{CopyToBytes, SinkWriter, StreamReader};
use tokio_util::sync::PollSender;

use super::tls::SERVER_NAME;
use super::wire::{self, Failure, Output};
use crate::runtime::disk::{DiskSpec, DiskUsage};
use crate::runtime::*;

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Opening the connection to a node.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// A failed dial is the answer for this long: callers do not queue up behind redials.
const DIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Calls that only ask (inspect, list, ping): a node silent for longer is unavailable.
const QUICK: Duration = Duration::from_secs(4);
/// Calls that change a sandbox (create, start, stop with its grace, remove).
const SLOW: Duration = Duration::from_secs(180);
/// JSON answers larger than this are refused (command output is capped well below it).
const MAX_ANSWER: usize = 64 << 20;
/// A streamed frame (a log chunk, a piece of an archive) larger than this is refused.
const MAX_FRAME: usize = 4 << 20;

struct Link {
    sender: Option<SendRequest<Body>>,
    failed_at: Option<(Instant, String)>,
}

/// Which connection a call goes on: calls that answer at once apart from long streams, so a
/// stream that stalls (a sandbox that stops reading) never holds back a create or a ping.
#[derive(Clone, Copy)]
enum Lane {
    Calls = 0,
    Streams = 1,
}

/// Cheap to clone: clones share the connections.
#[derive(Clone)]
pub struct RemoteRuntime {
    address: Arc<str>,
    tls: Arc<rustls::ClientConfig>,
    credential: Arc<str>,
    links: Arc<[tokio::sync::Mutex<Link>; 2]>,
}

fn unavailable(what: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Unavailable(format!("the node cannot be reached: {what}"))
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

fn json_body(value: &impl Serialize) -> Body {
    full(serde_json::to_vec(value).expect("a node request serializes"))
}

fn streamed(stream: ByteStream) -> Body {
    StreamBody::new(stream.map(|chunk| chunk.map(Frame::data))).boxed_unsync()
}

fn data(body: Incoming) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    http_body_util::BodyStream::new(body)
        .filter_map(|frame| std::future::ready(frame.map(|f| f.into_data().ok()).map_err(std::io::Error::other).transpose()))
}

impl RemoteRuntime {
    /// A runtime for the node at `address` (`host:port`) whose certificate has fingerprint `pin`.
    pub fn new(address: String, pin: &str, credential: String) -> anyhow::Result<Self> {
        let tls = super::tls::client_config(pin)?;
        let link = || tokio::sync::Mutex::new(Link { sender: None, failed_at: None });
        Ok(RemoteRuntime { address: address.into(), tls, credential: credential.into(), links: Arc::new([link(), link()]) })
    }

    async fn sender(&self, lane: Lane) -> RuntimeResult<SendRequest<Body>> {
        let mut link = self.links[lane as usize].lock().await;
        if let Some(sender) = link.sender.as_ref().filter(|s| !s.is_closed()) {
            return Ok(sender.clone());
        }
        if let Some((at, why)) = &link.failed_at
            && at.elapsed() < DIAL_BACKOFF
        {
            return Err(unavailable(why));
        }
        match tokio::time::timeout(DIAL_TIMEOUT, self.dial()).await.unwrap_or_else(|_| Err("connecting timed out".into())) {
            Ok(sender) => {
                *link = Link { sender: Some(sender.clone()), failed_at: None };
                Ok(sender)
            }
            Err(why) => {
                let error = unavailable(&why);
                *link = Link { sender: None, failed_at: Some((Instant::now(), why)) };
                Err(error)
            }
        }
    }

    async fn dial(&self) -> Result<SendRequest<Body>, String> {
        let tcp = tokio::net::TcpStream::connect(&*self.address).await.map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(SERVER_NAME).expect("a valid name");
        let stream = tokio_rustls::TlsConnector::from(self.tls.clone()).connect(name, tcp).await.map_err(|e| e.to_string())?;
        let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_secs(2))
            .keep_alive_timeout(Duration::from_secs(2))
            .keep_alive_while_idle(true)
            .initial_stream_window_size(super::server::STREAM_WINDOW)
            .initial_connection_window_size(super::server::CONNECTION_WINDOW)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    /// Sends one call; its answer's head within `wait`, errors mapped back to `RuntimeError`.
    async fn call(
        &self,
        lane: Lane,
        method: hyper::Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
        wait: Duration,
    ) -> RuntimeResult<hyper::Response<Incoming>> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("https://{SERVER_NAME}{path}"))
            .header("authorization", format!("Bearer {}", self.credential))
            // Calls with a body other than JSON (streams) do not read it as JSON either.
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request.body(body).map_err(|e| RuntimeError::Other(e.to_string()))?;
        let mut sender = self.sender(lane).await?;
        let sent = tokio::time::timeout(wait, async {
            sender.ready().await?;
            sender.send_request(request).await
        });
        let response = match sent.await {
            Err(_) => return Err(unavailable("it did not answer in time")),
            Ok(Err(e)) => {
                self.links[lane as usize].lock().await.sender = None;
                return Err(unavailable(e));
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let read = tokio::time::timeout(QUICK, http_body_util::Limited::new(response.into_body(), 16 << 10).collect());
        let raw = read.await.ok().and_then(Result::ok).map(|c| c.to_bytes()).unwrap_or_default();
        let failure =
            serde_json::from_slice::<Failure>(&raw).unwrap_or(Failure { kind: "other".into(), message: String::from_utf8_lossy(&raw).into_owned() });
        Err(failure.into_error(status.as_u16()))
    }

    async fn json<T: DeserializeOwned>(&self, method: hyper::Method, path: &str, body: Body, wait: Duration) -> RuntimeResult<T> {
        let response = self.call(Lane::Calls, method, path, &[], body, wait).await?;
        let read = tokio::time::timeout(wait, http_body_util::Limited::new(response.into_body(), MAX_ANSWER).collect());
        let raw = read.await.map_err(|_| unavailable("its answer stalled"))?.map_err(unavailable)?.to_bytes();
        serde_json::from_slice(&raw).map_err(|e| RuntimeError::Other(format!("the node's answer is unreadable: {e}")))
    }

    async fn unit(&self, method: hyper::Method, path: &str, body: Body, wait: Duration) -> RuntimeResult<()> {
        self.call(Lane::Calls, method, path, &[], body, wait).await.map(drop)
    }

    async fn verb(&self, name: &str, verb: &str, body: serde_json::Value, wait: Duration) -> RuntimeResult<()> {
        self.unit(hyper::Method::POST, &format!("/v1/sandboxes/{}/{verb}", segment(name)), json_body(&body), wait).await
    }

    /// A full-duplex stream: what is written goes up as the request body, the answer comes down.
    async fn duplex(&self, path: &str, headers: &[(&str, String)]) -> RuntimeResult<(hyper::Response<()>, dial::Tunnel)> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        let up = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) });
        let response = self.call(Lane::Streams, hyper::Method::POST, path, headers, StreamBody::new(up).boxed_unsync(), QUICK).await?;
        let (head, body) = response.into_parts();
        let writer = SinkWriter::new(CopyToBytes::new(PollSender::new(tx).sink_map_err(std::io::Error::other)));
        let reader = StreamReader::new(Box::pin(data(body)));
        Ok((hyper::Response::from_parts(head, ()), Box::new(tokio::io::join(reader, writer))))
    }
}

/// The frames of a streamed answer (`wire::frame`), as they complete.
fn frames(body: Incoming) -> impl futures_util::Stream<Item = RuntimeResult<(u8, Bytes)>> + Send + 'static {
    let state = (Box::pin(data(body)), BytesMut::new());
    futures_util::stream::unfold(state, |(mut body, mut buffer)| async move {
        let chunk = body.next().await?;
        let frames = chunk.map_err(|e| RuntimeError::Unavailable(e.to_string())).and_then(|c| {
            buffer.extend_from_slice(&c);
            wire::take_frames(&mut buffer, MAX_FRAME)
        });
        let items: Vec<RuntimeResult<(u8, Bytes)>> = match frames {
            Ok(frames) => frames.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        Some((futures_util::stream::iter(items), (body, buffer)))
    })
    .flatten()
}

/// A container name or exec id as one path segment (they never hold `/`; refuse if one does).
fn segment(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect()
}

#[async_trait]
impl Runtime for RemoteRuntime {
    async fn ping(&self) -> RuntimeResult<()> {
        self.unit(hyper::Method::GET, "/v1/ping", full(""), QUICK).await
    }
    async fn ensure_network(&self, egress: &egress::EgressPolicy) -> RuntimeResult<()> {
        self.unit(hyper::Method::POST, "/v1/network", json_body(egress), SLOW).await
    }
    async fn sandbox_gateway(&self) -> RuntimeResult<IpAddr> {
        self.json(hyper::Method::GET, "/v1/gateway", full(""), QUICK).await
    }
    async fn create_sandbox(&self, spec: &SandboxSpec) -> RuntimeResult<()> {
        self.unit(hyper::Method::POST, "/v1/sandboxes", json_body(spec), SLOW).await
    }
    async fn prepare_storage(&self, disk: &DiskSpec) -> RuntimeResult<()> {
        self.unit(hyper::Method::POST, "/v1/storage/prepare", json_body(disk), SLOW).await
    }
    async fn start(&self, name: &str) -> RuntimeResult<()> {
        self.verb(name, "start", serde_json::json!({}), SLOW).await
    }
    async fn stop(&self, name: &str, grace_secs: i32) -> RuntimeResult<()> {
        self.verb(name, "stop", serde_json::json!({"grace": grace_secs}), SLOW).await
    }
    async fn restart(&self, name: &str, grace_secs: i32) -> RuntimeResult<()> {
        self.verb(name, "restart", serde_json::json!({"grace": grace_secs}), SLOW).await
    }
    async fn pause(&self, name: &str) -> RuntimeResult<()> {
        self.verb(name, "pause", serde_json::json!({}), SLOW).await
    }
    async fn unpause(&self, name: &str) -> RuntimeResult<()> {
        self.verb(name, "unpause", serde_json::json!({}), SLOW).await
    }
    async fn remove_container(&self, name: &str) -> RuntimeResult<()> {
        self.verb(name, "remove-container", serde_json::json!({}), SLOW).await
    }
    async fn remove_sandbox(&self, name: &str, disk: &DiskSpec) -> RuntimeResult<()> {
        self.verb(name, "remove", serde_json::json!({"disk": disk}), SLOW).await
    }
    async fn inspect(&self, name: &str) -> RuntimeResult<ContainerInfo> {
        self.json(hyper::Method::GET, &format!("/v1/sandboxes/{}", segment(name)), full(""), QUICK).await
    }
    async fn list_managed(&self, deployment: &str) -> RuntimeResult<Vec<ManagedContainer>> {
        self.json(hyper::Method::GET, &format!("/v1/sandboxes?deployment={}", segment(deployment)), full(""), QUICK).await
    }
    async fn exec(&self, name: &str, request: ExecRequest) -> RuntimeResult<ExecOutput> {
        let wait = request.timeout.map_or(Duration::from_secs(600), |t| t + Duration::from_secs(15));
        let output: Output = self.json(hyper::Method::POST, &format!("/v1/sandboxes/{}/exec", segment(name)), json_body(&request), wait).await?;
        output.try_into()
    }
    async fn exec_tty(&self, name: &str, request: TtyRequest) -> RuntimeResult<TtySession> {
        let headers = [(wire::TTY_HEADER, wire::encode_json(&request))];
        let (head, tunnel) = self.duplex(&format!("/v1/sandboxes/{}/tty", segment(name)), &headers).await?;
        let exec_id = head.headers().get(wire::EXEC_ID_HEADER).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let (reader, writer) = tokio::io::split(tunnel);
        Ok(TtySession { exec_id, output: Box::pin(tokio_util::io::ReaderStream::new(reader)), input: Box::pin(writer) })
    }
    async fn resize_tty(&self, exec_id: &str, cols: u16, rows: u16) -> RuntimeResult<()> {
        self.unit(hyper::Method::POST, &format!("/v1/execs/{}", segment(exec_id)), json_body(&serde_json::json!({"cols": cols, "rows": rows})), QUICK)
            .await
    }
    async fn exec_exit_code(&self, exec_id: &str) -> RuntimeResult<Option<i64>> {
        self.json(hyper::Method::GET, &format!("/v1/execs/{}", segment(exec_id)), full(""), QUICK).await
    }
    async fn upload_archive(&self, name: &str, dir: &str, tar: ByteStream) -> RuntimeResult<()> {
        let path = format!("/v1/sandboxes/{}/archive?path={}", segment(name), segment(dir));
        self.call(Lane::Streams, hyper::Method::PUT, &path, &[], streamed(tar), Duration::from_secs(3600)).await.map(drop)
    }
    fn download_archive(&self, name: &str, path: &str) -> ByteStream {
        let path = format!("/v1/sandboxes/{}/archive?path={}", segment(name), segment(path));
        let this = self.clone();
        Box::pin(
            futures_util::stream::once(async move {
                match this.call(Lane::Streams, hyper::Method::GET, &path, &[], full(""), QUICK).await {
                    Ok(response) => data(response.into_body()).boxed(),
                    Err(e) => futures_util::stream::once(std::future::ready(Err(std::io::Error::other(e.to_string())))).boxed(),
                }
            })
            .flatten(),
        )
    }
    async fn resources(&self, name: &str) -> RuntimeResult<Resources> {
        self.json(hyper::Method::POST, &format!("/v1/sandboxes/{}/resources", segment(name)), json_body(&serde_json::json!({})), QUICK).await
    }
    fn logs(&self, name: &str, tail: u32, follow: bool) -> LogStream {
        let path = format!("/v1/sandboxes/{}/logs?tail={tail}&follow={follow}", segment(name));
        let this = self.clone();
        Box::pin(
            futures_util::stream::once(async move {
                let response = match this.call(Lane::Streams, hyper::Method::GET, &path, &[], full(""), QUICK).await {
                    Ok(response) => response,
                    Err(e) => return futures_util::stream::once(std::future::ready(Err(e))).boxed(),
                };
                frames(response.into_body()).map(|frame| frame.map(|(kind, bytes)| LogChunk { stderr: kind != 0, bytes })).boxed()
            })
            .flatten(),
        )
    }
    async fn connect(&self, name: &str, port: u16) -> RuntimeResult<dial::Tunnel> {
        Ok(self.duplex(&format!("/v1/sandboxes/{}/connect/{port}", segment(name)), &[]).await?.1)
    }
    fn pack_storage(&self, disk: &DiskSpec, bounds: archive::Bounds) -> archive::PackStream {
        use archive::PackError;
        let millis = bounds.deadline.saturating_duration_since(Instant::now()).as_millis() as u64;
        let body = json_body(&serde_json::json!({"disk": disk, "max_bytes": bounds.max_bytes, "millis": millis}));
        let this = self.clone();
        let failed = |e: RuntimeError| PackError::Io(std::io::Error::other(e.to_string()));
        Box::pin(
            futures_util::stream::once(async move {
                let response = match this.call(Lane::Streams, hyper::Method::POST, "/v1/storage/pack", &[], body, QUICK).await {
                    Ok(response) => response,
                    Err(e) => return futures_util::stream::once(std::future::ready(Err(failed(e)))).boxed(),
                };
                frames(response.into_body())
                    .map(move |frame| match frame {
                        Ok((wire::PACK_DATA, bytes)) => Ok(bytes),
                        Ok((wire::PACK_TOO_LARGE, _)) => Err(PackError::TooLarge(bounds.max_bytes)),
                        Ok((wire::PACK_TIMED_OUT, _)) => Err(PackError::TimedOut),
                        Ok((_, message)) => Err(PackError::Io(std::io::Error::other(String::from_utf8_lossy(&message).into_owned()))),
                        Err(e) => Err(failed(e)),
                    })
                    .boxed()
            })
            .flatten(),
        )
    }
    async fn unpack_storage(&self, disk: &DiskSpec, archive: ByteStream) -> RuntimeResult<()> {
        let headers = [(wire::DISK_HEADER, wire::encode_json(disk))];
        self.call(Lane::Streams, hyper::Method::PUT, "/v1/storage/unpack", &headers, streamed(archive), Duration::from_secs(3600)).await.map(drop)
    }
    async fn storage_here(&self, _name: &str) -> bool {
        false
    }
    async fn read_state_file(&self, disk: &DiskSpec, name: &str, max: u64) -> RuntimeResult<Vec<u8>> {
        let body = json_body(&serde_json::json!({"disk": disk, "name": name, "max": max}));
        let response = self.call(Lane::Calls, hyper::Method::POST, "/v1/storage/read", &[], body, QUICK).await?;
        let limit = usize::try_from(max).unwrap_or(usize::MAX).saturating_add(1);
        let read = http_body_util::Limited::new(response.into_body(), limit).collect();
        Ok(tokio::time::timeout(QUICK, read).await.map_err(|_| unavailable("its answer stalled"))?.map_err(unavailable)?.to_bytes().to_vec())
    }
    async fn disk_usage(&self, disk: &DiskSpec) -> Option<DiskUsage> {
        self.json(hyper::Method::POST, "/v1/storage/usage", json_body(disk), QUICK).await.ok().flatten()
    }
}
