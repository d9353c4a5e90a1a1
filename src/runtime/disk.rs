//! Each instance's persistent storage on the host: one directory per instance holding
//! `workspace/` (mounted at `/workspace`) and `state/` (the agent's `~/.openclaw`). With a quota,
//! the directory is an ext4 filesystem image of that size, loop-mounted by ocaas: writes past it
//! fail with `ENOSPC` inside the sandbox and the host keeps its free space. (This engine's
//! fuse-overlayfs refuses `--storage-opt size` and the local volume driver's `o=loop`, so ocaas
//! mounts the image itself; it needs root, as the engine does.) Without a quota (0) the
//! directories are plain directories on the host's disk.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::{RuntimeError, RuntimeResult};

/// The sandbox user's uid/gid, owner of both directories (`sandbox::USER`).
pub const SANDBOX_OWNER: u32 = 1000;
pub const WORKSPACE: &str = "workspace";
pub const STATE: &str = "state";

/// Where one instance's storage lives and how big it may get.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskSpec {
    /// The mount point (with a quota) or plain directory (without).
    pub dir: PathBuf,
    /// 0: no quota.
    pub quota_bytes: u64,
}

impl DiskSpec {
    pub fn new(root: &Path, sandbox_id: &str, quota_bytes: u64) -> Self {
        DiskSpec { dir: root.join(sandbox_id), quota_bytes }
    }

    /// The filesystem image behind `dir` when there is a quota.
    pub fn image(&self) -> PathBuf {
        self.dir.with_extension("img")
    }

    pub fn workspace(&self) -> PathBuf {
        self.dir.join(WORKSPACE)
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE)
    }
}

/// Used and total bytes of an instance's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DiskUsage {
    pub used_bytes: u64,
    /// The quota; `None` without one.
    pub limit_bytes: Option<u64>,
}

fn failed(what: &str, error: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Other(format!("instance storage: {what}: {error}"))
}

/// Whether `dir` is a mount point (its device differs from its parent's).
fn is_mounted(dir: &Path) -> bool {
    let (Ok(own), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) else { return false };
    own.dev() != parent.dev()
}

async fn run(program: &str, args: &[&std::ffi::OsStr]) -> RuntimeResult<()> {
    super::host::run("instance storage", program, args, None).await.map(drop)
}

/// Makes the storage ready for a container: creates it the first time, mounts the image again
/// after a host restart. Idempotent; safe to call before every start.
pub async fn prepare(disk: &DiskSpec) -> RuntimeResult<()> {
    tokio::fs::create_dir_all(&disk.dir).await.map_err(|e| failed("create directory", e))?;
    if disk.quota_bytes > 0 && !is_mounted(&disk.dir) {
        let image = disk.image();
        if !tokio::fs::try_exists(&image).await.unwrap_or(false) {
            // Sparse: the image takes host space only as the tenant writes.
            let file = tokio::fs::File::create(&image).await.map_err(|e| failed("create image", e))?;
            file.set_len(disk.quota_bytes).await.map_err(|e| failed("size image", e))?;
            let owner = format!("root_owner={SANDBOX_OWNER}:{SANDBOX_OWNER}");
            run("mkfs.ext4", &["-q".as_ref(), "-F".as_ref(), "-m".as_ref(), "0".as_ref(), "-E".as_ref(), owner.as_ref(), image.as_os_str()]).await?;
        }
        run("mount", &["-o".as_ref(), "loop,nosuid,nodev".as_ref(), image.as_os_str(), disk.dir.as_os_str()]).await?;
    }
    for dir in [disk.workspace(), disk.state()] {
        tokio::fs::create_dir_all(&dir).await.map_err(|e| failed("create directory", e))?;
        std::os::unix::fs::chown(&dir, Some(SANDBOX_OWNER), Some(SANDBOX_OWNER)).map_err(|e| failed("chown", e))?;
    }
    Ok(())
}

/// Unmounts and deletes the storage and its image. Missing pieces are fine.
pub async fn release(disk: &DiskSpec) -> RuntimeResult<()> {
    if is_mounted(&disk.dir) {
        // A lazy unmount: a process still holding a file open must not keep the disk alive.
        run("umount", &["-l".as_ref(), disk.dir.as_os_str()]).await?;
    }
    match tokio::fs::remove_dir_all(&disk.dir).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(failed("remove directory", e)),
    }
    match tokio::fs::remove_file(disk.image()).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(failed("remove image", e)),
    }
}

/// Used bytes of the instance's filesystem (with a quota), `None` when it is not mounted or
/// has no quota (walking a tenant's tree to sum sizes would cost what the tenant decides).
pub fn usage(disk: &DiskSpec) -> Option<DiskUsage> {
    if disk.quota_bytes == 0 || !is_mounted(&disk.dir) {
        return None;
    }
    let path = std::ffi::CString::new(disk.dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a valid out-pointer for the call.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let block = stat.f_frsize as u64;
    let used = (stat.f_blocks as u64).saturating_sub(stat.f_bfree as u64) * block;
    Some(DiskUsage { used_bytes: used, limit_bytes: Some(disk.quota_bytes) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_a_quota_the_storage_is_two_plain_directories_removed_on_release() {
        let root = std::env::temp_dir().join(format!("ocaas-disk-{}", uuid::Uuid::new_v4().simple()));
        let disk = DiskSpec::new(&root, "sbx", 0);
        prepare(&disk).await.unwrap();
        prepare(&disk).await.unwrap();
        assert!(disk.workspace().is_dir() && disk.state().is_dir());
        assert_eq!(usage(&disk), None);
        release(&disk).await.unwrap();
        release(&disk).await.unwrap();
        assert!(!disk.dir.exists());
        let _ = std::fs::remove_dir_all(root);
    }
}
