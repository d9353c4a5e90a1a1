//! `files/upload` as `multipart/form-data`: the file part is spooled to a temporary file (so
//! its size is known for the tar header without holding it in memory), then streamed in.

use axum::Json;
use axum::extract::Multipart;
use uuid::Uuid;

use super::handlers::spool;
use super::models::Written;
use super::ops;
use super::paths::SandboxPath;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::AppState;

/// Deletes the spool file however the upload ends.
struct SpoolFile(std::path::PathBuf);

impl Drop for SpoolFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub async fn upload(state: &AppState, sandbox: &str, mut multipart: Multipart) -> AppResult<Json<Written>> {
    let bad = |message: String| AppError::new(ErrorCode::InvalidRequest, message);
    let spool_dir = &state.settings.instances.spool_dir;
    tokio::fs::create_dir_all(spool_dir).await?;
    let spool_path = SpoolFile(spool_dir.join(format!("ocaas-upload-{}", Uuid::new_v4().simple())));
    let (mut target_dir, mut file_name, mut spooled) = (None, None, None);
    while let Some(mut field) = multipart.next_field().await.map_err(|e| bad(format!("Bad multipart body: {}", e.body_text())))? {
        match field.name().unwrap_or("") {
            "targetDir" => target_dir = Some(field.text().await.map_err(|e| bad(e.body_text()))?),
            "fileName" => file_name = Some(field.text().await.map_err(|e| bad(e.body_text()))?),
            "file" => {
                let part_name = field.file_name().map(str::to_owned);
                let mut file = tokio::fs::File::create(&spool_path.0).await?;
                let size = spool(&mut field, &mut file, state.settings.instances.max_upload_bytes).await?;
                spooled = Some((size, part_name));
            }
            other => return Err(bad(format!("Unknown form field `{other}`; send targetDir, fileName and file."))),
        }
    }
    let target_dir = target_dir.ok_or_else(|| bad("The form needs a `targetDir` field.".into()))?;
    let (size, part_name) = spooled.ok_or_else(|| bad("The form needs a `file` part.".into()))?;
    let name = file_name.or(part_name).ok_or_else(|| bad("Name the file with a `fileName` field.".into()))?;
    let path = SandboxPath::parse(&target_dir)?.join(&name)?;
    let file = tokio::fs::File::open(&spool_path.0).await?;
    let body = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 256 << 10));
    ops::write(state.runtime.as_ref(), sandbox, &path, size, body).await?;
    Ok(Json(Written { path: path.as_str().to_owned(), size }))
}
