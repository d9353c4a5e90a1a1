//! Writes straight into the instance's storage from the host, without the engine.
//!
//! The storage directories are on the host (`runtime::disk`), so the fastest way in is a plain
//! file write. Profiling a 100 MiB multipart upload showed the spool write and then the
//! engine's archive copy (a tar extraction in the daemon), one after the other, as the whole
//! difference to `docker cp`; and every write paid a `docker exec` to create the directory and
//! check the sandbox user's rights first.
//!
//! The tenant controls everything under its storage, links included, so every lookup is
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)` from the storage's own
//! directory, one component at a time: no link is followed, no mount is crossed, and all later
//! calls are relative to the directory descriptor, so swapping path components afterwards
//! changes nothing. The sandbox user's rights are decided only where that is plain: every
//! directory on the way owned by the sandbox user and open to it, the file absent or a regular
//! file it owns and may write. Anything else — a link on the way, another owner — is left to
//! the sandbox itself (`ops::prepare_write` runs as the sandbox user), and then to the engine,
//! which resolves links as the sandbox sees them. The file is written under a temporary name,
//! owned by the sandbox user, and renamed into place; it is removed however the write ends.

#[cfg(test)]
mod tests;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

use super::paths::SandboxPath;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::runtime::disk::{DiskSpec, SANDBOX_OWNER};
use crate::runtime::fsys::{self as sys, checked};
use crate::runtime::sandbox::{STATE_DIR, WORKSPACE_DIR};

/// Bytes gathered before a write to the file.
const WRITE_BUFFER: usize = 112 << 10;

/// A temporary file in the target directory, removed unless committed.
pub struct Target {
    dir: Arc<OwnedFd>,
    tmp: CString,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    committed: bool,
}

/// The storage directory and the components below it for a sandbox directory, if it is on storage.
fn on_storage(disk: &DiskSpec, dir: &SandboxPath) -> Option<(PathBuf, Vec<String>)> {
    [(WORKSPACE_DIR, disk.workspace()), (STATE_DIR, disk.state())].into_iter().find_map(|(mount, host)| {
        let rest = dir.as_str().strip_prefix(mount)?;
        (rest.is_empty() || rest.starts_with('/')).then(|| (host, rest.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect()))
    })
}

fn c_string(text: &str) -> std::io::Result<CString> {
    CString::new(text).map_err(std::io::Error::other)
}

/// The sandbox user may enter the directory (it owns it and has `x`).
fn enterable(stat: &libc::stat) -> bool {
    stat.st_uid == SANDBOX_OWNER && stat.st_mode & 0o100 != 0
}

/// The sandbox user may create and replace entries in the directory.
fn writable(stat: &libc::stat) -> bool {
    stat.st_uid == SANDBOX_OWNER && stat.st_mode & 0o300 == 0o300
}

/// Walks to the directory, creating missing ones as the sandbox user would (`mkdir -p`,
/// mode 0755), when its rights are plain; `None` when the sandbox must decide.
fn walk_checked(base: &std::path::Path, parts: &[String], name: &str) -> std::io::Result<Option<OwnedFd>> {
    let mut dir = sys::open_dir_nofollow(base)?;
    if !enterable(&sys::fstat(&dir)?) {
        return Ok(None);
    }
    for part in parts {
        let part = c_string(part)?;
        dir = match sys::open_dir_beneath(dir.as_raw_fd(), &part) {
            Ok(next) if enterable(&sys::fstat(&next)?) => next,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && writable(&sys::fstat(&dir)?) => {
                // SAFETY: valid directory descriptor and NUL-terminated name.
                if unsafe { libc::mkdirat(dir.as_raw_fd(), part.as_ptr(), 0o755) } < 0 {
                    return Ok(None); // made meanwhile, or refused: the sandbox decides
                }
                let next = sys::open_dir_beneath(dir.as_raw_fd(), &part)?;
                sys::hand_over(&next, SANDBOX_OWNER, 0o755)?;
                next
            }
            _ => return Ok(None),
        };
    }
    if !writable(&sys::fstat(&dir)?) {
        return Ok(None);
    }
    match sys::lstat_at(&dir, &c_string(name)?) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(Some(dir)),
        Ok(stat) if stat.st_mode & libc::S_IFMT == libc::S_IFREG && stat.st_uid == SANDBOX_OWNER && stat.st_mode & 0o200 != 0 => Ok(Some(dir)),
        _ => Ok(None),
    }
}

/// Walks to a directory the sandbox user has already prepared, without checking its rights.
fn walk_prepared(base: &std::path::Path, parts: &[String]) -> std::io::Result<Option<OwnedFd>> {
    let base = sys::open_dir_nofollow(base)?;
    let below = if parts.is_empty() { ".".to_owned() } else { parts.join("/") };
    Ok(Some(sys::open_dir_beneath(base.as_raw_fd(), &c_string(&below)?)?))
}

/// Creates the temporary file in `dir`, owned by the sandbox user.
fn create_tmp(dir: OwnedFd) -> std::io::Result<Target> {
    let tmp = c_string(&format!(".ocaas-upload-{}", uuid::Uuid::new_v4().simple()))?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid directory descriptor and NUL-terminated name.
    let fd = checked(unsafe { libc::openat(dir.as_raw_fd(), tmp.as_ptr(), flags, 0o644) })?;
    // SAFETY: a fresh descriptor, owned (and closed) by `OwnedFd` from here on.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    // From here on, dropping the target removes the temporary file.
    let mut target = Target { dir: Arc::new(dir), tmp, file: None, committed: false };
    sys::hand_over(&file, SANDBOX_OWNER, 0o644)?;
    // Every write of a tokio file is a trip to the blocking pool; multipart chunks are small,
    // so they are gathered first (below the allocator's mmap threshold, see `serve.rs`).
    let file = tokio::fs::File::from_std(std::fs::File::from(file));
    target.file = Some(tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file));
    Ok(target)
}

async fn start(what: &str, walk: impl FnOnce() -> std::io::Result<Option<OwnedFd>> + Send + 'static) -> Option<Target> {
    let opened = tokio::task::spawn_blocking(move || walk().and_then(|dir| dir.map(create_tmp).transpose())).await;
    match opened {
        Ok(Ok(target)) => target,
        Ok(Err(error)) => {
            tracing::debug!(path = what, %error, "files: no direct write; the sandbox and the engine take it");
            None
        }
        Err(_) => None,
    }
}

/// A direct write of `path` when the sandbox user's right to it is plain (see the module
/// header), creating missing directories; `None` when the sandbox must decide.
pub async fn prepare(disk: &DiskSpec, path: &SandboxPath) -> Option<Target> {
    let (dir, name) = path.split()?;
    let (base, parts) = on_storage(disk, &dir)?;
    let name = name.to_owned();
    start(path.as_str(), move || walk_checked(&base, &parts, &name)).await
}

/// A direct write into `dir`, which the sandbox user has just prepared (`ops::prepare_write`);
/// `None` when it is not on the storage or cannot be reached without following a link.
pub async fn open(disk: &DiskSpec, dir: &SandboxPath) -> Option<Target> {
    let (base, parts) = on_storage(disk, dir)?;
    start(dir.as_str(), move || walk_prepared(&base, &parts)).await
}

fn storage_error(error: std::io::Error) -> AppError {
    match error.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => {
            // The same answer as when an upload is found not to fit before it is written.
            AppError::new(ErrorCode::FileTooLarge, "The instance's storage is full (OCAAS_INSTANCE_DISK): delete files and retry.")
        }
        _ => AppError::Internal(anyhow::anyhow!("writing into the instance's storage: {error}")),
    }
}

impl Target {
    /// Copies `chunks` into the temporary file, refusing more than `max` bytes; the size written.
    pub async fn fill(&mut self, chunks: impl Stream<Item = AppResult<Bytes>>, max: u64) -> AppResult<u64> {
        let file = self.file.as_mut().ok_or_else(|| AppError::Internal(anyhow::anyhow!("upload target filled twice")))?;
        super::capped::copy(chunks, file, max, storage_error).await
    }

    /// Renames the file to `name` in the directory, replacing what was there.
    pub async fn commit(mut self, name: &str) -> AppResult<()> {
        drop(self.file.take());
        let name = CString::new(name).map_err(|_| AppError::new(ErrorCode::InvalidPath, "A file name has a NUL byte."))?;
        let (dir, tmp) = (self.dir.clone(), self.tmp.clone());
        let renamed = tokio::task::spawn_blocking(move || {
            // SAFETY: valid directory descriptor and NUL-terminated names.
            checked(unsafe { libc::renameat(dir.as_raw_fd(), tmp.as_ptr(), dir.as_raw_fd(), name.as_ptr()) })
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
        match renamed {
            Ok(_) => {
                self.committed = true;
                Ok(())
            }
            Err(error) if error.raw_os_error() == Some(libc::EISDIR) => {
                Err(AppError::new(ErrorCode::IsADirectory, "A directory is in the way of the file."))
            }
            Err(error) => Err(storage_error(error)),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if !self.committed {
            // SAFETY: valid directory descriptor and NUL-terminated name; a quick unlink.
            unsafe { libc::unlinkat(self.dir.as_raw_fd(), self.tmp.as_ptr(), 0) };
        }
    }
}
