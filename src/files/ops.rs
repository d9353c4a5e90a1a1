//! File operations inside a sandbox, done as the sandbox user. Metadata work (list, mkdir,
//! rename, delete, checks) runs as exec with an argument vector — the scripts below are fixed
//! and paths only ever arrive as positional parameters (`"$1"`), never spliced into shell text.
//! Contents move through the engine's tar archive API, streamed.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::models::{DirEntry, EntryKind};
use super::paths::SandboxPath;
use super::{direct, tarstream};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::runtime::disk::DiskSpec;
use crate::runtime::sandbox::{STATE_DIR, USER as SANDBOX_USER, WORKSPACE_DIR};
use crate::runtime::{ByteStream, ExecOutput, ExecRequest, Runtime};

/// Where `files/write` and `files/upload` may put files.
const PERSISTENT_DIRS: [&str; 2] = [WORKSPACE_DIR, STATE_DIR];

/// Entries one listing returns at most (a directory may hold millions): the sandbox stops
/// listing past them, and the answer says it was cut.
pub const MAX_LIST_ENTRIES: usize = 10_000;
/// What the listing command may print: the entries above with names of up to 255 bytes.
const LISTING_MAX_BYTES: usize = (MAX_LIST_ENTRIES + 1) * 320;

const LIST: &str = r#"[ -e "$1" ] || exit 44; [ -d "$1" ] || exit 20; [ -r "$1" ] && [ -x "$1" ] || exit 13
find -H "$1" -mindepth 1 -maxdepth 1 -printf '%y\0%s\0%T@\0%m\0%f\0' | head -z -n "$2""#;
/// Prints the size and the resolved path of a readable regular file.
const STAT_FILE: &str = r#"[ -e "$1" ] || exit 44; [ -d "$1" ] && exit 21; [ -r "$1" ] || exit 13
p=$(readlink -f -- "$1") || exit 44; [ -f "$p" ] || exit 22; stat -c %s -- "$p" && printf '%s' "$p""#;
/// Creates the directory $1 if needed and checks the sandbox user may write $2 in it.
const PREPARE_WRITE: &str = r#"mkdir -p -- "$1" 2>/dev/null || { [ -e "$1" ] && exit 20; exit 13; }
[ -d "$1" ] || exit 20; [ -w "$1" ] && [ -x "$1" ] || exit 13; [ -d "$2" ] && exit 21; [ ! -e "$2" ] || [ -w "$2" ] || exit 13; exit 0"#;
const MKDIR: &str = r#"[ -e "$1" ] && { [ -d "$1" ] && exit 0; exit 17; }; mkdir -p -- "$1" 2>/dev/null && exit 0; [ -e "$1" ] && exit 17; exit 13"#;
const RENAME: &str = r#"[ -e "$1" ] || [ -L "$1" ] || exit 44; { [ -e "$2" ] || [ -L "$2" ]; } && exit 17
[ -d "$(dirname -- "$2")" ] || exit 45; exec mv -T -- "$1" "$2""#;
const DELETE: &str = r#"[ -e "$1" ] || [ -L "$1" ] || exit 44
if [ -d "$1" ] && [ ! -L "$1" ]; then [ "$2" = 1 ] && exec rm -rf -- "$1"; rmdir -- "$1" 2>/dev/null || exit 39; exit 0; fi
exec rm -f -- "$1""#;

/// Runs a fixed script as the sandbox user with `args` as `$1…`.
async fn script(runtime: &dyn Runtime, sandbox: &str, script: &str, args: &[&str], max_output: usize) -> AppResult<ExecOutput> {
    let mut cmd = vec!["/bin/sh".to_owned(), "-c".to_owned(), script.to_owned(), "sh".to_owned()];
    cmd.extend(args.iter().map(|a| (*a).to_owned()));
    let request = ExecRequest { cmd, user: Some(SANDBOX_USER.into()), max_output, ..Default::default() };
    runtime.exec(sandbox, request).await.map_err(AppError::from)
}

/// Turns a script's exit code into the API error it stands for.
fn check(output: &ExecOutput, path: &str) -> AppResult<()> {
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.exit_code.unwrap_or(-1) {
        0 => Ok(()),
        44 => Err(AppError::new(ErrorCode::NotFound, format!("Nothing exists at {path}."))),
        45 => Err(AppError::new(ErrorCode::NotFound, format!("The directory that would hold {path} does not exist."))),
        20 => Err(AppError::new(ErrorCode::NotADirectory, format!("{path} is not a directory."))),
        21 => Err(AppError::new(ErrorCode::IsADirectory, format!("{path} is a directory."))),
        22 => Err(AppError::new(ErrorCode::NotARegularFile, format!("{path} is not a regular file."))),
        13 => Err(AppError::new(ErrorCode::PermissionDenied, format!("The sandbox user may not do that at {path}."))),
        17 => Err(AppError::new(ErrorCode::AlreadyExists, format!("Something already exists at {path}."))),
        39 => Err(AppError::new(ErrorCode::DirectoryNotEmpty, format!("{path} is not empty; pass \"recursive\": true to delete it."))),
        _ if stderr.contains("Permission denied") => {
            Err(AppError::new(ErrorCode::PermissionDenied, format!("The sandbox user may not do that at {path}.")))
        }
        code => Err(AppError::new(ErrorCode::OperationFailed, format!("The operation failed (exit {code}): {}", stderr.trim()))),
    }
}

/// The directory's entries sorted by name, at most `MAX_LIST_ENTRIES` (and whether there were
/// more: then the ones returned are an arbitrary part of them).
pub async fn list(runtime: &dyn Runtime, sandbox: &str, dir: &SandboxPath) -> AppResult<(Vec<DirEntry>, bool)> {
    // One entry more than returned tells whether there are more.
    let fields_wanted = ((MAX_LIST_ENTRIES + 1) * 5).to_string();
    let output = script(runtime, sandbox, LIST, &[dir.as_str(), &fields_wanted], LISTING_MAX_BYTES).await?;
    check(&output, dir.as_str())?;
    let fields: Vec<&[u8]> = output.stdout.split(|b| *b == 0).collect();
    let mut entries: Vec<DirEntry> = fields
        .chunks_exact(5)
        .filter_map(|f| {
            let text = |i: usize| String::from_utf8_lossy(f[i]).into_owned();
            let name = text(4);
            let seconds: f64 = text(2).parse().ok()?;
            Some(DirEntry {
                path: dir.join(&name).ok()?.as_str().to_owned(),
                kind: match f[0] {
                    b"f" => EntryKind::File,
                    b"d" => EntryKind::Directory,
                    b"l" => EntryKind::Symlink,
                    _ => EntryKind::Other,
                },
                size: text(1).parse().ok()?,
                modified_at: DateTime::<Utc>::from_timestamp_millis((seconds * 1000.0) as i64)?,
                mode: format!("{:0>4}", text(3)),
                name,
            })
        })
        .collect();
    let truncated = output.truncated || entries.len() > MAX_LIST_ENTRIES;
    entries.truncate(MAX_LIST_ENTRIES);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((entries, truncated))
}

pub struct OpenFile {
    pub size: u64,
    pub body: ByteStream,
}

/// `files/read`'s answer to a file over its limit.
fn read_too_large(path: &SandboxPath, max: u64) -> AppError {
    AppError::new(
        ErrorCode::FileTooLarge,
        format!("{} is more than the {max} bytes files/read returns; use GET …/files/download?path= instead.", path.as_str()),
    )
}

/// Opens a regular file the sandbox user can read; `max_size` refuses bigger ones, by the size
/// the sandbox reports before any transfer and again by the size in the archive (the file may
/// have been swapped in between).
pub async fn open(runtime: &dyn Runtime, sandbox: &str, path: &SandboxPath, max_size: Option<u64>) -> AppResult<OpenFile> {
    let output = script(runtime, sandbox, STAT_FILE, &[path.as_str()], 64 << 10).await?;
    check(&output, path.as_str())?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (size, resolved) = stdout.split_once('\n').ok_or_else(|| AppError::Internal(anyhow::anyhow!("unexpected stat output {stdout:?}")))?;
    let size: u64 = size.trim().parse().map_err(|_| AppError::Internal(anyhow::anyhow!("unexpected size {size:?}")))?;
    if let Some(max) = max_size.filter(|max| size > *max) {
        return Err(read_too_large(path, max));
    }
    let entry = tarstream::first_entry(runtime.download_archive(sandbox, resolved))
        .await
        .map_err(|e| AppError::Internal(anyhow::anyhow!("reading the archive of {}: {e}", path.as_str())))?;
    if let Some(max) = max_size.filter(|max| entry.size > *max) {
        return Err(read_too_large(path, max));
    }
    Ok(OpenFile { size: entry.size, body: entry.body })
}

/// Reads a UTF-8 text file of at most `max` bytes. The size checked before the transfer may
/// be stale (the sandbox can swap the file in between), so the transfer is bounded too: more
/// than `max` bytes is `file_too_large`, whatever the archive says.
pub async fn read_text(runtime: &dyn Runtime, sandbox: &str, path: &SandboxPath, max: u64) -> AppResult<(String, u64)> {
    let mut file = open(runtime, sandbox, path, Some(max)).await?;
    let mut content = Vec::with_capacity(file.size as usize);
    while let Some(chunk) = file.body.next().await {
        let chunk = chunk?;
        // The archive's entry streams exactly `file.size` bytes; this is the last line of defence.
        if (content.len() + chunk.len()) as u64 > max {
            return Err(read_too_large(path, max));
        }
        content.extend_from_slice(&chunk);
    }
    let not_text =
        || AppError::new(ErrorCode::NotText, format!("{} is not UTF-8 text; use GET …/files/download?path= for binary files.", path.as_str()));
    if content.contains(&0) {
        return Err(not_text());
    }
    let text = String::from_utf8(content).map_err(|_| not_text())?;
    Ok((text, file.size))
}

/// Refuses a file path that is not on the instance's storage: the root filesystem is read-only
/// and /tmp and the home are memory the engine cannot write into.
pub fn on_storage_checked(path: &SandboxPath) -> AppResult<()> {
    if path.split().is_none() {
        return Err(AppError::new(ErrorCode::InvalidPath, "Cannot write to /."));
    }
    if !PERSISTENT_DIRS.iter().any(|persistent| path.is_within(persistent)) {
        return Err(AppError::new(
            ErrorCode::PermissionDenied,
            format!("Files can be written only under {} (the instance's storage); {} is elsewhere.", PERSISTENT_DIRS.join(" and "), path.as_str()),
        ));
    }
    Ok(())
}

/// Checks that `path` is on the instance's storage, creates its directory as the sandbox user
/// and checks the sandbox user may write the file there; the directory and the file's name.
pub async fn prepare_write<'a>(runtime: &dyn Runtime, sandbox: &str, path: &'a SandboxPath) -> AppResult<(SandboxPath, &'a str)> {
    on_storage_checked(path)?;
    let (dir, name) = path.split().ok_or_else(|| AppError::new(ErrorCode::InvalidPath, "Cannot write to /."))?;
    let output = script(runtime, sandbox, PREPARE_WRITE, &[dir.as_str(), path.as_str()], 64 << 10).await?;
    check(&output, path.as_str())?;
    Ok((dir, name))
}

/// Writes `size` bytes from `body` as `name` in the prepared `dir` through the engine's
/// archive API (which resolves links as the sandbox sees them).
pub async fn write_archive(runtime: &dyn Runtime, sandbox: &str, dir: &SandboxPath, name: &str, size: u64, body: ByteStream) -> AppResult<()> {
    let archive = tarstream::single_file_archive(name, size, 0o644, body)?;
    runtime.upload_archive(sandbox, dir.as_str(), archive).await.map_err(AppError::from)
}

/// Writes `content` to `path` (replacing it), owned by the sandbox user: straight into the
/// storage when the directory is reachable without links (`direct`), else through the engine.
pub async fn write(runtime: &dyn Runtime, disk: &DiskSpec, sandbox: &str, path: &SandboxPath, content: Bytes) -> AppResult<()> {
    let size = content.len() as u64;
    on_storage_checked(path)?;
    // Directly only where the storage is on this host (not on another node).
    let here = runtime.storage_here(sandbox).await;
    let (dir, name) = match if here { direct::prepare(disk, path).await } else { None } {
        Some(target) => return fill_and_commit(target, path, content).await,
        None => prepare_write(runtime, sandbox, path).await?,
    };
    match if here { direct::open(disk, &dir).await } else { None } {
        Some(target) => fill_and_commit(target, path, content).await,
        None => write_archive(runtime, sandbox, &dir, name, size, bytes_stream(content)).await,
    }
}

async fn fill_and_commit(mut target: direct::Target, path: &SandboxPath, content: Bytes) -> AppResult<()> {
    let size = content.len() as u64;
    target.fill(futures_util::stream::once(async move { Ok(content) }), size).await?;
    let (_, name) = path.split().ok_or_else(|| AppError::new(ErrorCode::InvalidPath, "Cannot write to /."))?;
    target.commit(name).await
}

pub fn bytes_stream(content: Bytes) -> ByteStream {
    Box::pin(futures_util::stream::once(async move { Ok(content) }))
}

pub async fn mkdir(runtime: &dyn Runtime, sandbox: &str, path: &SandboxPath) -> AppResult<()> {
    check(&script(runtime, sandbox, MKDIR, &[path.as_str()], 64 << 10).await?, path.as_str())
}

pub async fn rename(runtime: &dyn Runtime, sandbox: &str, from: &SandboxPath, to: &SandboxPath) -> AppResult<()> {
    let output = script(runtime, sandbox, RENAME, &[from.as_str(), to.as_str()], 64 << 10).await?;
    let blame = if output.exit_code == Some(17) || output.exit_code == Some(45) { to } else { from };
    check(&output, blame.as_str())
}

pub async fn delete(runtime: &dyn Runtime, sandbox: &str, path: &SandboxPath, recursive: bool) -> AppResult<()> {
    if path.is_root() {
        return Err(AppError::new(ErrorCode::InvalidPath, "Refusing to delete /."));
    }
    let flag = if recursive { "1" } else { "0" };
    check(&script(runtime, sandbox, DELETE, &[path.as_str(), flag], 64 << 10).await?, path.as_str())
}

/// Forwards `source` through a small queue, and lets go of it (ending the stream with an
/// error) when the reader has taken nothing for `stall`, or has gone away. The engine holds
/// the container's lock while it streams an archive, so a client that stops reading — or
/// hangs up in a way the server does not notice at once — would otherwise block every exec
/// and file operation on the instance.
pub fn release_when_stalled(mut source: ByteStream, stall: std::time::Duration) -> ByteStream {
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::spawn(async move {
        while let Some(chunk) = source.next().await {
            match tokio::time::timeout(stall, sender.send(chunk)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::info!("files: a download stalled; releasing the engine archive");
                    let _ = sender.try_send(Err(std::io::Error::other("the reader stalled")));
                    return;
                }
            }
        }
    });
    Box::pin(futures_util::stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|chunk| (chunk, receiver)) }))
}
