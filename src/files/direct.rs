//! Uploads written straight into the instance's storage from the host, without the engine.
//!
//! The storage directories are on the host (`runtime::disk`), so the fastest way in is a plain
//! file write: the engine's archive API copies through a tar extraction in the daemon, and a
//! streamed upload of unknown size would first need a spool file for the tar header. Profiling
//! a 100 MiB upload showed the spool write and the archive copy, one after the other, as the
//! whole difference to `docker cp`.
//!
//! The tenant controls everything under its storage, symlinks included, so the target
//! directory is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`
//! from the storage's own directory: no link is followed and no mount is crossed. When that is
//! refused (a link on the way, say) the caller takes the engine's way, which resolves links as
//! the sandbox sees them. Everything after the open is relative to that directory's descriptor,
//! so swapping path components afterwards changes nothing. The file is written under a
//! temporary name, owned by the sandbox user, and renamed into place at the end; it is removed
//! however the upload ends early.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;

use super::paths::SandboxPath;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::runtime::disk::{DiskSpec, SANDBOX_OWNER};
use crate::runtime::sandbox::{STATE_DIR, WORKSPACE_DIR};

/// A temporary file in the target directory, removed unless committed.
pub struct Target {
    dir: Arc<OwnedFd>,
    tmp: CString,
    file: Option<tokio::fs::File>,
    committed: bool,
}

fn openat2(dir: RawFd, path: &CString, flags: u64, resolve: u64) -> std::io::Result<OwnedFd> {
    // SAFETY: `open_how` is plain data (all zeroes is valid); the kernel reads `size_of` bytes.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = flags;
    how.resolve = resolve;
    let size = std::mem::size_of::<libc::open_how>();
    // SAFETY: valid descriptor, NUL-terminated path and a live `open_how`.
    let fd = unsafe { libc::syscall(libc::SYS_openat2, dir, path.as_ptr(), &how as *const libc::open_how, size) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn checked(result: libc::c_int) -> std::io::Result<libc::c_int> {
    if result < 0 { Err(std::io::Error::last_os_error()) } else { Ok(result) }
}

/// The storage directory and the path below it for a sandbox directory, if it is on storage.
fn on_storage(disk: &DiskSpec, dir: &SandboxPath) -> Option<(std::path::PathBuf, String)> {
    [(WORKSPACE_DIR, disk.workspace()), (STATE_DIR, disk.state())].into_iter().find_map(|(mount, host)| {
        let rest = dir.as_str().strip_prefix(mount)?;
        (rest.is_empty() || rest.starts_with('/')).then(|| (host, format!(".{rest}")))
    })
}

/// Opens the directory and creates the temporary file in it, owned by the sandbox user.
fn open_blocking(base: std::path::PathBuf, below: String) -> std::io::Result<Target> {
    use std::os::unix::fs::OpenOptionsExt;
    let base = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW).open(&base)?;
    let below = CString::new(below).map_err(std::io::Error::other)?;
    let flags = (libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS;
    let dir = Arc::new(openat2(base.as_raw_fd(), &below, flags, resolve)?);
    let tmp = CString::new(format!(".ocaas-upload-{}", uuid::Uuid::new_v4().simple())).map_err(std::io::Error::other)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid directory descriptor and NUL-terminated name.
    let fd = checked(unsafe { libc::openat(dir.as_raw_fd(), tmp.as_ptr(), flags, 0o644) })?;
    // SAFETY: a fresh descriptor, owned (and closed) by `OwnedFd` from here on.
    let file = unsafe { OwnedFd::from_raw_fd(fd) };
    // From here on, dropping the target removes the temporary file.
    let mut target = Target { dir, tmp, file: None, committed: false };
    // SAFETY: valid descriptor.
    checked(unsafe { libc::fchown(file.as_raw_fd(), SANDBOX_OWNER, SANDBOX_OWNER) })?;
    // SAFETY: valid descriptor (the process umask must not narrow the mode the sandbox sees).
    checked(unsafe { libc::fchmod(file.as_raw_fd(), 0o644) })?;
    target.file = Some(tokio::fs::File::from_std(std::fs::File::from(file)));
    Ok(target)
}

/// Opens `dir` (which the sandbox user has just prepared) for a direct write; `None` when it
/// is not on the storage or cannot be reached without following a link.
pub async fn open(disk: &DiskSpec, dir: &SandboxPath) -> Option<Target> {
    let (base, below) = on_storage(disk, dir)?;
    match tokio::task::spawn_blocking(move || open_blocking(base, below)).await {
        Ok(Ok(target)) => Some(target),
        Ok(Err(error)) => {
            tracing::debug!(dir = dir.as_str(), %error, "files: no direct write; the engine's archive API takes it");
            None
        }
        Err(_) => None,
    }
}

fn storage_error(error: std::io::Error) -> AppError {
    match error.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => {
            AppError::new(ErrorCode::OperationFailed, "The instance's storage is full (OCAAS_INSTANCE_DISK): delete files and retry.")
        }
        _ => AppError::Internal(anyhow::anyhow!("writing into the instance's storage: {error}")),
    }
}

impl Target {
    /// Copies `chunks` into the temporary file, refusing more than `max` bytes; the size written.
    pub async fn fill(&mut self, chunks: impl Stream<Item = AppResult<Bytes>>, max: u64) -> AppResult<u64> {
        let file = self.file.as_mut().ok_or_else(|| AppError::Internal(anyhow::anyhow!("upload target filled twice")))?;
        let mut size = 0u64;
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            size += chunk.len() as u64;
            if size > max {
                return Err(AppError::new(ErrorCode::FileTooLarge, format!("Files may be at most {max} bytes.")));
            }
            file.write_all(&chunk).await.map_err(storage_error)?;
        }
        file.flush().await.map_err(storage_error)?;
        Ok(size)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn storage() -> (DiskSpec, std::path::PathBuf) {
        let root = std::env::temp_dir().join(format!("ocaas-direct-{}", uuid::Uuid::new_v4().simple()));
        let disk = DiskSpec::new(&root, "sbx", 0);
        std::fs::create_dir_all(disk.workspace().join("sub")).unwrap();
        std::fs::create_dir_all(disk.state()).unwrap();
        (disk, root)
    }

    #[tokio::test]
    async fn writes_under_a_temporary_name_then_renames_and_cleans_up_when_dropped() {
        let (disk, root) = storage();
        let dir = SandboxPath::parse("/workspace/sub").unwrap();
        let mut target = open(&disk, &dir).await.expect("a plain directory opens");
        let chunks = futures_util::stream::iter([Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))]);
        assert_eq!(target.fill(chunks, 100).await.unwrap(), 11);
        target.commit("file.txt").await.unwrap();
        let written = disk.workspace().join("sub/file.txt");
        assert_eq!(std::fs::read(&written).unwrap(), b"hello world");
        let names = |dir: &std::path::Path| std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>();
        assert_eq!(names(&disk.workspace().join("sub")), vec![std::ffi::OsString::from("file.txt")]);

        // Too big: refused, and the temporary file goes with the target.
        let mut target = open(&disk, &SandboxPath::parse("/agent-state").unwrap()).await.unwrap();
        let chunks = futures_util::stream::iter([Ok(Bytes::from(vec![0u8; 64]))]);
        assert!(matches!(target.fill(chunks, 10).await, Err(AppError::Client { code: ErrorCode::FileTooLarge, .. })));
        drop(target);
        assert!(names(&disk.state()).is_empty());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn never_follows_a_link_and_never_leaves_the_storage() {
        let (disk, root) = storage();
        let outside = root.join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, disk.workspace().join("absolute")).unwrap();
        std::os::unix::fs::symlink("../../outside", disk.workspace().join("relative")).unwrap();
        std::os::unix::fs::symlink("sub", disk.workspace().join("inside")).unwrap();
        for dir in ["/workspace/absolute", "/workspace/relative", "/workspace/inside", "/workspace/absolute/deeper", "/tmp", "/"] {
            assert!(open(&disk, &SandboxPath::parse(dir).unwrap()).await.is_none(), "{dir} must take the engine's way");
        }
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        std::fs::remove_dir_all(root).unwrap();
    }
}
