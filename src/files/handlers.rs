//! HTTP handlers of the file API (`/api/instances/{instanceId}/files…`).

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use utoipa::ToSchema;

use super::models::*;
use super::ops;
use super::paths::SandboxPath;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiQuery};
use crate::instances::extract::RunningInstance;
use crate::instances::repo::InstanceRow;
use crate::state::AppState;

/// List a directory
///
/// Entries of a directory (not recursive), sorted by name, with type, size, mode and mtime: at
/// most 10,000 (`truncated` says when the directory holds more). A listing takes one of the
/// user's command slots while it runs.
#[utoipa::path(get, path = "/api/instances/{instanceId}/files", tag = "files", operation_id = "list_files",
    params(RunningInstance, PathQuery),
    responses(
        (status = 200, description = "The directory", body = Listing),
        (status = 400, description = "`invalid_path` or `not_a_directory`", body = ErrorBody),
        (status = 403, description = "`permission_denied`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's commands are all running", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    RunningInstance { instance, user, .. }: RunningInstance,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> AppResult<Json<Listing>> {
    let path = SandboxPath::parse(&q.path)?;
    // A listing is a command in the sandbox and an answer held whole: one of the user's
    // command slots while it runs.
    let _slot = state.user_slots.acquire(user.user_id, crate::state::SlotKind::Exec)?;
    let (entries, truncated) = ops::list(state.runtime.as_ref(), &instance.sandbox_id, &path).await?;
    Ok(Json(Listing { path: path.as_str().to_owned(), entries, truncated }))
}

/// Read a text file
///
/// Returns the content of a UTF-8 text file up to `OCAAS_MAX_READ_BYTES`; binary files get
/// 415 `not_text` and bigger ones 413 `file_too_large` (use `files/download` for both).
#[utoipa::path(get, path = "/api/instances/{instanceId}/files/read", tag = "files",
    params(RunningInstance, PathQuery),
    responses(
        (status = 200, description = "The file", body = FileContent),
        (status = 400, description = "`invalid_path`, `is_a_directory` or `not_a_regular_file`", body = ErrorBody),
        (status = 403, description = "`permission_denied`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
        (status = 413, description = "`file_too_large`", body = ErrorBody),
        (status = 415, description = "`not_text`", body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<AppState>,
    RunningInstance { instance, .. }: RunningInstance,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> AppResult<Json<FileContent>> {
    let path = SandboxPath::parse(&q.path)?;
    let (content, size) = ops::read_text(state.runtime.as_ref(), &instance.sandbox_id, &path, state.settings.instances.max_read_bytes).await?;
    Ok(Json(FileContent { path: path.as_str().to_owned(), content, size }))
}

/// Write a text file
///
/// Creates or replaces a file with UTF-8 `content`, creating missing parent directories.
/// The file belongs to the sandbox user.
#[utoipa::path(post, path = "/api/instances/{instanceId}/files/write", tag = "files",
    params(RunningInstance),
    request_body = WriteRequest,
    responses(
        (status = 200, description = "Written", body = Written),
        (status = 400, description = "Bad JSON, `invalid_path`, `is_a_directory` or `not_a_directory`", body = ErrorBody),
        (status = 403, description = "`permission_denied` or `csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
        (status = 413, description = "`file_too_large` (over `OCAAS_MAX_UPLOAD_BYTES`) or `payload_too_large` (a JSON body over `OCAAS_MAX_JSON_UPLOAD_BYTES`: use multipart)", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's command slots are all taken (a JSON body takes one)", body = ErrorBody),
    ))]
pub async fn write(
    State(state): State<AppState>,
    RunningInstance { instance, user, .. }: RunningInstance,
    request: Request,
) -> AppResult<Json<Written>> {
    // A JSON body is held whole: one of the user's command slots before it is read.
    let _slot = state.user_slots.acquire(user.user_id, crate::state::SlotKind::Exec)?;
    let body = json_upload::<WriteRequest>(&state, request).await?;
    let path = SandboxPath::parse(&body.path)?;
    store(&state, &instance, &path, Bytes::from(body.content)).await
}

async fn store(state: &AppState, instance: &InstanceRow, path: &SandboxPath, content: Bytes) -> AppResult<Json<Written>> {
    let size = content.len() as u64;
    check_upload_size(state, size)?;
    let disk = crate::instances::lifecycle::disk_spec(state, instance);
    ops::write(state.runtime.as_ref(), &disk, &instance.sandbox_id, path, content).await?;
    Ok(Json(Written { path: path.as_str().to_owned(), size }))
}

fn check_upload_size(state: &AppState, size: u64) -> AppResult<()> {
    let max = state.settings.instances.max_upload_bytes;
    if size > max {
        return Err(super::capped::too_large(max));
    }
    Ok(())
}

/// Multipart form of `files/upload`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    #[schema(rename = "targetDir")]
    target_dir: String,
    /// Defaults to the file part's own file name.
    #[schema(rename = "fileName")]
    file_name: Option<String>,
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Upload a file
///
/// JSON `{targetDir, fileName, content, encoding}` (`encoding`: `utf-8` or `base64`), or
/// `multipart/form-data` with `targetDir`, optional `fileName` and a `file` part (streamed; for
/// large or binary files; send `targetDir` before `file` and the file goes straight into the
/// instance's storage as it arrives). Replaces an existing file; creates missing directories.
#[utoipa::path(post, path = "/api/instances/{instanceId}/files/upload", tag = "files",
    params(RunningInstance),
    request_body(content(
        (UploadRequest = "application/json"),
        (UploadForm = "multipart/form-data"),
    )),
    responses(
        (status = 200, description = "Uploaded", body = Written),
        (status = 400, description = "Bad body, bad base64, `invalid_path`, `is_a_directory`", body = ErrorBody),
        (status = 403, description = "`permission_denied` or `csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
        (status = 413, description = "`file_too_large` (over `OCAAS_MAX_UPLOAD_BYTES`) or `payload_too_large` (a JSON body over `OCAAS_MAX_JSON_UPLOAD_BYTES`: use multipart)", body = ErrorBody),
        (status = 415, description = "Neither JSON nor multipart", body = ErrorBody),
        (status = 429, description = "`too_many_concurrent`: the user's command slots are all taken (a JSON body takes one)", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    RunningInstance { instance, user, .. }: RunningInstance,
    request: Request,
) -> AppResult<Json<Written>> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("multipart/form-data"));
    if is_multipart {
        let multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| AppError::new(ErrorCode::InvalidRequest, format!("Bad multipart body: {}", e.body_text())))?;
        return super::multipart::upload(&state, &instance, multipart).await;
    }
    let _slot = state.user_slots.acquire(user.user_id, crate::state::SlotKind::Exec)?;
    let body = json_upload::<UploadRequest>(&state, request).await?;
    let path = SandboxPath::parse(&body.target_dir)?.join(&body.file_name)?;
    let content = match body.encoding {
        Encoding::Utf8 => Bytes::from(body.content),
        Encoding::Base64 => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(body.content.trim())
                .map_err(|e| AppError::new(ErrorCode::InvalidRequest, format!("`content` is not valid base64: {e}")))?,
        ),
    };
    store(&state, &instance, &path, content).await
}

/// A JSON upload body, held to `OCAAS_MAX_JSON_UPLOAD_BYTES` (it is read whole); bigger files
/// go as multipart, which streams.
async fn json_upload<T: serde::de::DeserializeOwned>(state: &AppState, request: Request) -> AppResult<T> {
    let limit = state.settings.instances.max_json_upload_bytes;
    let too_large = || {
        AppError::new(
            ErrorCode::PayloadTooLarge,
            format!("JSON uploads may be at most {limit} bytes; send bigger files as multipart/form-data (they stream)."),
        )
    };
    let declared = request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let request = request.map(|body| Body::new(http_body_util::Limited::new(body, limit)));
    match ApiJson::<T>::from_request(request, state).await {
        Ok(ApiJson(body)) => Ok(body),
        Err(AppError::Client { code: ErrorCode::PayloadTooLarge, .. }) => Err(too_large()),
        Err(error) => Err(error),
    }
}

/// Make a directory
///
/// Creates the directory and its missing parents; an existing directory is not an error.
#[utoipa::path(post, path = "/api/instances/{instanceId}/files/mkdir", tag = "files",
    params(RunningInstance),
    request_body = MkdirRequest,
    responses(
        (status = 200, description = "Created (or already there)", body = PathResult),
        (status = 400, description = "Bad JSON or `invalid_path`", body = ErrorBody),
        (status = 403, description = "`permission_denied` or `csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `already_exists` (a file is in the way)", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn mkdir(
    State(state): State<AppState>,
    RunningInstance { instance, .. }: RunningInstance,
    ApiJson(body): ApiJson<MkdirRequest>,
) -> AppResult<Json<PathResult>> {
    let path = SandboxPath::parse(&body.path)?;
    ops::mkdir(state.runtime.as_ref(), &instance.sandbox_id, &path).await?;
    Ok(Json(PathResult { path: path.as_str().to_owned() }))
}

/// Rename or move
///
/// Moves `from` to `to`; `to` must not exist and its directory must.
#[utoipa::path(post, path = "/api/instances/{instanceId}/files/rename", tag = "files",
    params(RunningInstance),
    request_body = RenameRequest,
    responses(
        (status = 200, description = "Renamed", body = Renamed),
        (status = 400, description = "Bad JSON or `invalid_path`", body = ErrorBody),
        (status = 403, description = "`permission_denied` or `csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `already_exists`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn rename(
    State(state): State<AppState>,
    RunningInstance { instance, .. }: RunningInstance,
    ApiJson(body): ApiJson<RenameRequest>,
) -> AppResult<Json<Renamed>> {
    let (from, to) = (SandboxPath::parse(&body.from)?, SandboxPath::parse(&body.to)?);
    ops::rename(state.runtime.as_ref(), &instance.sandbox_id, &from, &to).await?;
    Ok(Json(Renamed { from: from.as_str().to_owned(), to: to.as_str().to_owned() }))
}

/// Delete a file or directory
///
/// Deletes a file, a symlink, an empty directory, or with `recursive: true` a whole tree.
#[utoipa::path(post, path = "/api/instances/{instanceId}/files/delete", tag = "files", operation_id = "delete_file",
    params(RunningInstance),
    request_body = DeleteRequest,
    responses(
        (status = 200, description = "Deleted", body = PathResult),
        (status = 400, description = "Bad JSON or `invalid_path`", body = ErrorBody),
        (status = 403, description = "`permission_denied` or `csrf_failed`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running` or `directory_not_empty`", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    RunningInstance { instance, .. }: RunningInstance,
    ApiJson(body): ApiJson<DeleteRequest>,
) -> AppResult<Json<PathResult>> {
    let path = SandboxPath::parse(&body.path)?;
    ops::delete(state.runtime.as_ref(), &instance.sandbox_id, &path, body.recursive).await?;
    Ok(Json(PathResult { path: path.as_str().to_owned() }))
}

/// Download a file
///
/// The raw bytes of a file, streamed, with `Content-Type`, `Content-Length` and
/// `Content-Disposition: attachment`.
#[utoipa::path(get, path = "/api/instances/{instanceId}/files/download", tag = "files",
    params(RunningInstance, PathQuery),
    responses(
        (status = 200, description = "The file's bytes, typed by the file name's extension (see `content_type`)",
            content(
                (crate::binary::Binary = "application/octet-stream", example = json!("Hello from the API\n")),
                (crate::binary::Binary = "text/plain; charset=utf-8"), (crate::binary::Binary = "text/markdown; charset=utf-8"),
                (crate::binary::Binary = "text/html; charset=utf-8"), (crate::binary::Binary = "application/json"),
                (crate::binary::Binary = "image/png"), (crate::binary::Binary = "image/jpeg"), (crate::binary::Binary = "image/gif"),
                (crate::binary::Binary = "image/svg+xml"), (crate::binary::Binary = "application/pdf"),
                (crate::binary::Binary = "application/zip"), (crate::binary::Binary = "application/gzip"),
            )),
        (status = 400, description = "`invalid_path`, `is_a_directory` or `not_a_regular_file`", body = ErrorBody),
        (status = 403, description = "`permission_denied`", body = ErrorBody),
        (status = 404, description = "`instance_not_found` or `not_found`", body = ErrorBody),
        (status = 409, description = "`instance_not_running`", body = ErrorBody),
    ))]
pub async fn download(
    State(state): State<AppState>,
    RunningInstance { instance, .. }: RunningInstance,
    ApiQuery(q): ApiQuery<PathQuery>,
) -> AppResult<Response> {
    let path = SandboxPath::parse(&q.path)?;
    let file = ops::open(state.runtime.as_ref(), &instance.sandbox_id, &path, None).await?;
    let name = path.split().map(|(_, name)| name.to_owned()).unwrap_or_else(|| "download".into());
    let headers = [
        (header::CONTENT_TYPE, content_type(&name).to_owned()),
        (header::CONTENT_LENGTH, file.size.to_string()),
        (header::CONTENT_DISPOSITION, content_disposition(&name)),
    ];
    // The engine locks the container while it streams an archive: a client that stops
    // reading must not hold the instance (see `ops::release_when_stalled`).
    let body = ops::release_when_stalled(file.body, state.settings.instances.stall_timeout);
    Ok((headers, Body::from_stream(body)).into_response())
}

/// The download's type by extension; each one it answers is listed in the operation's
/// documented content (a test compares them).
pub fn content_type(name: &str) -> &'static str {
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "txt" | "log" | "csv" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "html" | "htm" => "text/html; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// `attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987).
fn content_disposition(name: &str) -> String {
    let ascii: String = name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let encoded: String =
        name.bytes().map(|b| if b.is_ascii_alphanumeric() || b"-._~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}
