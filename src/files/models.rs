//! Wire types of the file API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PathQuery {
    /// Absolute path inside the sandbox, e.g. `/workspace/README.md` (no `..`).
    #[param(pattern = "^/")]
    pub path: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Directory,
    Symlink,
    Other,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DirEntry {
    pub name: String,
    pub path: String,
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Bytes (for a symlink: the length of its target).
    pub size: u64,
    #[serde(with = "crate::timefmt")]
    pub modified_at: DateTime<Utc>,
    /// Permission bits in octal, e.g. `0644`.
    pub mode: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"path": "/workspace", "entries": [
    {"name": "README.md", "path": "/workspace/README.md", "type": "file", "size": 120, "modified_at": "2026-03-20T18:22:54.000Z", "mode": "0644"}
], "truncated": false}))]
pub struct Listing {
    pub path: String,
    /// Sorted by name; at most 10,000.
    pub entries: Vec<DirEntry>,
    /// The directory holds more entries than a listing returns (the ones above are then an
    /// arbitrary part of them).
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"path": "/workspace/notes.txt", "content": "Hello from the API", "size": 18}))]
pub struct FileContent {
    pub path: String,
    pub content: String,
    pub size: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"path": "/workspace/notes.txt", "content": "Hello from the API"}))]
pub struct WriteRequest {
    #[schema(pattern = "^/")]
    pub path: String,
    /// UTF-8 text; the file is replaced. Missing parent directories are created.
    pub content: String,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
pub enum Encoding {
    #[default]
    #[serde(rename = "utf-8", alias = "utf8")]
    Utf8,
    #[serde(rename = "base64")]
    Base64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"targetDir": "/workspace", "fileName": "hello.txt", "content": "Hello from upload"}))]
pub struct UploadRequest {
    #[serde(rename = "targetDir")]
    #[schema(pattern = "^/")]
    pub target_dir: String,
    #[serde(rename = "fileName")]
    #[schema(pattern = "^[^/]+$")]
    pub file_name: String,
    pub content: String,
    /// `utf-8` (default) or `base64` for binary content.
    #[serde(default)]
    pub encoding: Encoding,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"path": "/workspace/hello.txt", "size": 17}))]
pub struct Written {
    pub path: String,
    pub size: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"path": "/workspace/src/lib"}))]
pub struct MkdirRequest {
    /// Created with its parents; an existing directory is fine.
    #[schema(pattern = "^/")]
    pub path: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"from": "/workspace/a.txt", "to": "/workspace/b.txt"}))]
pub struct RenameRequest {
    #[schema(pattern = "^/")]
    pub from: String,
    /// Must not exist yet; its directory must.
    #[schema(pattern = "^/")]
    pub to: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"path": "/workspace/old", "recursive": true}))]
pub struct DeleteRequest {
    #[schema(pattern = "^/")]
    pub path: String,
    /// Needed to delete a directory that is not empty.
    #[serde(default)]
    pub recursive: bool,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"path": "/workspace/src/lib"}))]
pub struct PathResult {
    pub path: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"from": "/workspace/a.txt", "to": "/workspace/b.txt"}))]
pub struct Renamed {
    pub from: String,
    pub to: String,
}
