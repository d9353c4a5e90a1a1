//! The node's storage calls: preparation and usage, reading the agent's state file, and
//! snapshot archives packed and unpacked here — always under this node's own directory.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use super::{Answer, Node, refused};
use crate::runtime::RuntimeError;
use crate::runtime::disk::DiskSpec;
use crate::runtime::node::wire;

pub(super) async fn verb(State(node): State<Arc<Node>>, Path(verb): Path<String>, Json(disk): Json<DiskSpec>) -> Answer<Response> {
    let disk = node.confine(disk)?;
    match verb.as_str() {
        "prepare" => Ok(node.runtime.prepare_storage(&disk).await.map(|()| ().into_response())?),
        "usage" => Ok(Json(node.runtime.disk_usage(&disk).await).into_response()),
        _ => Err(RuntimeError::NotFound(verb).into()),
    }
}

#[derive(Deserialize)]
pub(super) struct ReadFile {
    disk: DiskSpec,
    name: String,
    max: u64,
}

pub(super) async fn read_state_file(State(node): State<Arc<Node>>, Json(q): Json<ReadFile>) -> Answer<Response> {
    let disk = node.confine(q.disk)?;
    // A plain name in the state directory, at most what a JSON answer can carry comfortably.
    if q.name.is_empty() || q.name.contains('/') || q.name.starts_with('.') || q.max > 4 << 20 {
        return Err(refused("a plain file name and at most 4 MiB"));
    }
    let bytes = node.runtime.read_state_file(&disk, &q.name, q.max).await?;
    Ok(Body::from(bytes).into_response())
}

#[derive(Deserialize)]
pub(super) struct Pack {
    disk: DiskSpec,
    max_bytes: u64,
    /// Time left for it.
    millis: u64,
}

pub(super) async fn pack(State(node): State<Arc<Node>>, Json(q): Json<Pack>) -> Answer<Response> {
    use crate::runtime::archive::{Bounds, PackError};
    let disk = node.confine(q.disk)?;
    let bounds = Bounds { max_bytes: q.max_bytes, deadline: std::time::Instant::now() + Duration::from_millis(q.millis.min(3_600_000)) };
    let frames = node.runtime.pack_storage(&disk, bounds).map(|item| {
        Ok::<_, std::io::Error>(match item {
            Ok(bytes) => wire::frame(wire::PACK_DATA, &bytes),
            Err(PackError::TooLarge(limit)) => wire::frame(wire::PACK_TOO_LARGE, limit.to_string().as_bytes()),
            Err(PackError::TimedOut) => wire::frame(wire::PACK_TIMED_OUT, b""),
            Err(PackError::Io(error)) => wire::frame(wire::PACK_FAILED, error.to_string().as_bytes()),
        })
    });
    Ok(Body::from_stream(frames).into_response())
}

pub(super) async fn unpack(State(node): State<Arc<Node>>, headers: HeaderMap, body: Body) -> Answer<()> {
    let disk: DiskSpec =
        headers.get(wire::DISK_HEADER).and_then(|v| v.to_str().ok()).and_then(wire::decode_json).ok_or_else(|| refused("which storage"))?;
    let disk = node.confine(disk)?;
    let archive = Box::pin(body.into_data_stream().map(|r| r.map_err(std::io::Error::other)));
    Ok(node.runtime.unpack_storage(&disk, archive).await?)
}
