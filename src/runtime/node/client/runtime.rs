//! `Runtime` for `RemoteRuntime`: each call is one call on the link (`super`), the streamed
//! ones (terminals, ports, archives, logs, packs) on the connection kept for streams.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::{Lane, MAX_FRAME, QUICK, RemoteRuntime, SLOW, data, full, json_body, segment, streamed, unavailable};
use crate::runtime::disk::{DiskSpec, DiskUsage};
use crate::runtime::node::wire::{self, Output};
use crate::runtime::*;

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
    async fn broker_relay(&self, _name: &str) -> RuntimeResult<Option<std::net::SocketAddr>> {
        self.json(hyper::Method::GET, "/v1/broker", full(""), QUICK).await
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
        let open = async move { Ok(data(this.call(Lane::Streams, hyper::Method::GET, &path, &[], full(""), QUICK).await?.into_body()).boxed()) };
        deferred(open, |e: RuntimeError| Err(std::io::Error::other(e.to_string())))
    }
    async fn resources(&self, name: &str) -> RuntimeResult<Resources> {
        self.json(hyper::Method::POST, &format!("/v1/sandboxes/{}/resources", segment(name)), json_body(&serde_json::json!({})), QUICK).await
    }
    fn logs(&self, name: &str, tail: u32, follow: bool) -> LogStream {
        let path = format!("/v1/sandboxes/{}/logs?tail={tail}&follow={follow}", segment(name));
        let this = self.clone();
        let open = async move {
            let response = this.call(Lane::Streams, hyper::Method::GET, &path, &[], full(""), QUICK).await?;
            Ok(frames(response.into_body()).map(|frame| frame.map(|(kind, bytes)| LogChunk { stderr: kind != 0, bytes })).boxed())
        };
        deferred(open, Err)
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
        let open = async move {
            let response = this.call(Lane::Streams, hyper::Method::POST, "/v1/storage/pack", &[], body, QUICK).await?;
            Ok(frames(response.into_body())
                .map(move |frame| match frame {
                    Ok((wire::PACK_DATA, bytes)) => Ok(bytes),
                    Ok((wire::PACK_TOO_LARGE, _)) => Err(PackError::TooLarge(bounds.max_bytes)),
                    Ok((wire::PACK_TIMED_OUT, _)) => Err(PackError::TimedOut),
                    Ok((_, message)) => Err(PackError::Io(std::io::Error::other(String::from_utf8_lossy(&message).into_owned()))),
                    Err(e) => Err(failed(e)),
                })
                .boxed())
        };
        deferred(open, move |e| Err(failed(e)))
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
