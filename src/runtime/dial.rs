//! Reaching a port inside a sandbox through `Runtime::connect`: the byte stream itself, and
//! HTTP/1.1 over it (the gateway's `/readyz` and `/v1/chat/completions`). Whether the sandbox
//! is on this host or behind an `ocaas node` is the runtime's business, not the caller's.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Runtime, RuntimeError, RuntimeResult};

/// How long opening a stream to a sandbox's port may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A two-way byte stream.
pub trait Duplex: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Duplex for T {}

/// A stream to one port of one sandbox.
pub type Tunnel = Box<dyn Duplex>;

/// Sends one HTTP/1.1 request to `port` of `sandbox` over a fresh stream; the response's body
/// streams from it (the connection lives as long as the body is read).
pub async fn http(runtime: &dyn Runtime, sandbox: &str, port: u16, request: hyper::Request<Full<Bytes>>) -> RuntimeResult<hyper::Response<Incoming>> {
    let tunnel = runtime.connect(sandbox, port).await?;
    let unreachable = |e: hyper::Error| RuntimeError::Unavailable(format!("port {port} of {sandbox}: {e}"));
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tunnel)).await.map_err(unreachable)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(request).await.map_err(unreachable)
}

/// Whether the gateway of `sandbox` answers `GET /readyz` with 2xx within two seconds.
pub async fn gateway_ready(runtime: &dyn Runtime, sandbox: &str) -> bool {
    let request = hyper::Request::get("/readyz").header("host", "gateway").body(Full::default()).expect("a valid request");
    let asked = http(runtime, sandbox, super::sandbox::GATEWAY_PORT, request);
    match tokio::time::timeout(Duration::from_secs(2), asked).await {
        Ok(Ok(response)) => {
            let ok = response.status().is_success();
            // Read (a little of) the body so the connection closes cleanly.
            let _ = tokio::time::timeout(Duration::from_millis(200), response.into_body().frame()).await;
            ok
        }
        _ => false,
    }
}
