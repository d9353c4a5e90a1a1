//! Copying an upload's bytes to a file with the upload size cap (`OCAAS_MAX_UPLOAD_BYTES`):
//! one loop for the direct write into the storage and for the spool file.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::error::{AppError, AppResult, ErrorCode};

/// The answer to a file over the cap.
pub fn too_large(max: u64) -> AppError {
    AppError::new(ErrorCode::FileTooLarge, format!("Files may be at most {max} bytes."))
}

/// Writes `chunks` to `out` and flushes it, refusing more than `max` bytes; the size written.
/// Write errors become API errors through `io_error`.
pub async fn copy(
    chunks: impl Stream<Item = AppResult<Bytes>>,
    out: &mut (impl AsyncWrite + Unpin),
    max: u64,
    io_error: impl Fn(std::io::Error) -> AppError,
) -> AppResult<u64> {
    let mut size = 0u64;
    let mut chunks = std::pin::pin!(chunks);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        size += chunk.len() as u64;
        if size > max {
            return Err(too_large(max));
        }
        out.write_all(&chunk).await.map_err(&io_error)?;
    }
    out.flush().await.map_err(&io_error)?;
    Ok(size)
}
