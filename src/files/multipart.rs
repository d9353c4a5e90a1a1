//! `files/upload` as `multipart/form-data`. When `targetDir` comes before the file part (as
//! the docs, the helper client and browsers send it), the part streams straight into the
//! instance's storage (`direct`) as it arrives: no copy in memory or on the server's disk.
//! Otherwise — the file part first, or a directory reached through a link — the part is
//! spooled under `OCAAS_DATA_DIR/spool` (so its size is known for the tar header) and goes in
//! through the engine's archive API; the spool file is removed however the upload ends.

use axum::Json;
use axum::extract::Multipart;
use axum::extract::multipart::{Field, MultipartError};
use uuid::Uuid;

use super::models::Written;
use super::ops;
use super::paths::SandboxPath;
use super::{capped, direct};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::repo::InstanceRow;
use crate::state::AppState;

/// Deletes the spool file however the upload ends.
struct SpoolFile(std::path::PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Where the file part went.
enum Received {
    /// Written into the storage under a temporary name, as `name` in `dir`'s checks.
    Direct {
        target: Box<direct::Target>,
        dir: SandboxPath,
        checked_name: String,
    },
    Spooled(SpoolFile),
}

/// A multipart stream that broke off or ran past the route's body limit.
pub fn multipart_error(error: MultipartError) -> AppError {
    if crate::inflight::deadline::is_too_slow(&error) {
        return crate::extract::body_too_slow();
    }
    let code = if error.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE { ErrorCode::PayloadTooLarge } else { ErrorCode::InvalidRequest };
    AppError::new(code, format!("Bad multipart body: {}", error.body_text()))
}

/// The part's bytes as a stream, its errors as API errors.
fn chunks(field: Field<'_>) -> impl futures_util::Stream<Item = AppResult<bytes::Bytes>> + '_ {
    futures_util::stream::unfold(
        field,
        |mut field| async move { field.chunk().await.map_err(multipart_error).transpose().map(|chunk| (chunk, field)) },
    )
}

/// Takes the file part: straight into the storage when the target directory is known and
/// reachable, else into a spool file.
async fn receive(
    state: &AppState,
    instance: &InstanceRow,
    target_dir: Option<&str>,
    name: Option<&str>,
    field: Field<'_>,
) -> AppResult<(u64, Received)> {
    let max = state.settings.instances.max_upload_bytes;
    let here = state.runtime.storage_here(&instance.sandbox_id).await;
    if let (Some(target_dir), Some(name), true) = (target_dir, name, here) {
        let dir = SandboxPath::parse(target_dir)?;
        let path = dir.join(name)?;
        let disk = crate::instances::lifecycle::disk_spec(state, instance);
        let sandbox = instance.sandbox_id.as_str();
        ops::on_storage_checked(&path)?;
        let direct = match direct::prepare(&disk, &path).await {
            Some(target) => Some(target),
            None => {
                ops::prepare_write(state.runtime.as_ref(), sandbox, &path).await?;
                direct::open(&disk, &dir).await
            }
        };
        if let Some(mut target) = direct {
            let size = target.fill(chunks(field), max).await?;
            return Ok((size, Received::Direct { target: Box::new(target), dir, checked_name: name.to_owned() }));
        }
    }
    // The spool is on the host's disk: it may hold no more than the instance's storage has room
    // for (what it will take anyway), so an upload spooled counts against the quota.
    let disk = crate::instances::lifecycle::disk_spec(state, instance);
    let room = state.runtime.disk_usage(&disk).await;
    let free = room.and_then(|usage| usage.limit_bytes.map(|limit| limit.saturating_sub(usage.used_bytes))).filter(|free| *free < max);
    let spool_dir = &state.settings.instances.spool_dir;
    tokio::fs::create_dir_all(spool_dir).await?;
    let spooled = SpoolFile(spool_dir.join(format!("ocaas-upload-{}", Uuid::new_v4().simple())));
    let mut file = tokio::fs::File::create(&spooled.0).await?;
    let size = match free {
        Some(free) => capped::copy(chunks(field), &mut file, free, AppError::from).await.map_err(|error| match error {
            AppError::Client { code: ErrorCode::FileTooLarge, .. } => {
                AppError::new(ErrorCode::FileTooLarge, format!("The instance's storage is full for this file: it has room for {free} more bytes."))
            }
            other => other,
        })?,
        None => capped::copy(chunks(field), &mut file, max, AppError::from).await?,
    };
    Ok((size, Received::Spooled(spooled)))
}

pub async fn upload(state: &AppState, instance: &InstanceRow, mut multipart: Multipart) -> AppResult<Json<Written>> {
    let sandbox = instance.sandbox_id.as_str();
    let bad = |message: String| AppError::new(ErrorCode::InvalidRequest, message);
    let (mut target_dir, mut file_name, mut received) = (None::<String>, None::<String>, None);
    // The `targetDir` the file arrived under, if one came before it.
    let mut dir_at_file = None::<String>;
    while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name().unwrap_or("") {
            "targetDir" => target_dir = Some(field.text().await.map_err(|e| bad(e.body_text()))?),
            "fileName" => file_name = Some(field.text().await.map_err(|e| bad(e.body_text()))?),
            "file" if received.is_none() => {
                let part_name = field.file_name().map(str::to_owned);
                let name = file_name.clone().or(part_name.clone());
                dir_at_file = target_dir.clone();
                let (size, where_to) = receive(state, instance, target_dir.as_deref(), name.as_deref(), field).await?;
                received = Some((size, part_name, where_to));
            }
            "file" => return Err(bad("The form has more than one `file` part; upload one file per request.".into())),
            other => return Err(bad(format!("Unknown form field `{other}`; send targetDir, fileName and file."))),
        }
    }
    // A `targetDir` sent again after the file part, changed, is refused whether the file went
    // straight into the storage or was spooled first.
    if dir_at_file.as_ref().is_some_and(|before| target_dir.as_ref() != Some(before)) {
        return Err(bad("`targetDir` changed after the file part; send it once, before the file.".into()));
    }
    let target_dir = target_dir.ok_or_else(|| bad("The form needs a `targetDir` field.".into()))?;
    let (size, part_name, where_to) = received.ok_or_else(|| bad("The form needs a `file` part.".into()))?;
    let name = file_name.or(part_name).ok_or_else(|| bad("Name the file with a `fileName` field.".into()))?;
    let path = SandboxPath::parse(&target_dir)?.join(&name)?;
    match where_to {
        Received::Direct { target, dir, checked_name } => {
            // The file went into `dir` as it arrived: a `targetDir` sent again after it is refused;
            // a `fileName` after it is checked as the sandbox user before the rename.
            if path.split().is_none_or(|(parent, _)| parent.as_str() != dir.as_str()) {
                return Err(bad("`targetDir` changed after the file part; send it once, before the file.".into()));
            }
            if checked_name != name {
                ops::prepare_write(state.runtime.as_ref(), sandbox, &path).await?;
            }
            target.commit(&name).await?;
        }
        Received::Spooled(spooled) => {
            let (dir, name) = ops::prepare_write(state.runtime.as_ref(), sandbox, &path).await?;
            let file = tokio::fs::File::open(&spooled.0).await?;
            let body = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10));
            ops::write_archive(state.runtime.as_ref(), sandbox, &dir, name, size, body).await?;
        }
    }
    Ok(Json(Written { path: path.as_str().to_owned(), size }))
}
