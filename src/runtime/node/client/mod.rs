//! The API's side of the link: `RemoteRuntime`, a `Runtime` whose calls go to one node over a
//! single pinned-TLS HTTP/2 connection, redialled when it drops. A node that does not answer
//! makes every call fail within seconds as `Unavailable` (503 `engine_unavailable` above), and
//! a node that just failed to answer is not redialled by every waiting call in turn.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
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

mod runtime;

use super::tls::SERVER_NAME;
use super::wire::Failure;
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

impl Link {
    /// Both lanes, not yet dialled.
    fn fresh() -> Arc<[tokio::sync::Mutex<Link>; 2]> {
        let link = || tokio::sync::Mutex::new(Link { sender: None, failed_at: None });
        Arc::new([link(), link()])
    }
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

pub(crate) fn unavailable(what: impl std::fmt::Display) -> RuntimeError {
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
        Ok(RemoteRuntime { address: address.into(), tls, credential: credential.into(), links: Link::fresh() })
    }

    /// Where the node listens.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The same node presenting another credential (on connections of its own).
    pub fn with_credential(&self, credential: &str) -> Self {
        RemoteRuntime { credential: credential.into(), links: Link::fresh(), ..self.clone() }
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

/// A container name or exec id as one path segment (they never hold `/`; refuse if one does).
fn segment(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect()
}
