//! The few Linux calls direct writes need, each wrapped once: `openat2` with its resolve flags
//! (which the standard library does not offer), `fstat`/`fstatat` and errno checking.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Flags that keep a lookup inside the directory it starts from: no `..` above it, no link of
/// any kind, no other mount.
pub const BENEATH: u64 = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_XDEV | libc::RESOLVE_NO_MAGICLINKS;

pub fn checked(result: libc::c_int) -> std::io::Result<libc::c_int> {
    if result < 0 { Err(std::io::Error::last_os_error()) } else { Ok(result) }
}

/// Opens the directory `path` below `dir` without following anything (`BENEATH`).
pub fn open_dir_beneath(dir: RawFd, path: &CString) -> std::io::Result<OwnedFd> {
    // SAFETY: `open_how` is plain data (all zeroes is valid); the kernel reads `size_of` bytes.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_DIRECTORY | libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = BENEATH;
    let size = std::mem::size_of::<libc::open_how>();
    // SAFETY: valid descriptor, NUL-terminated path and a live `open_how`.
    let fd = unsafe { libc::syscall(libc::SYS_openat2, dir, path.as_ptr(), &how as *const libc::open_how, size) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    // SAFETY: `stat` is plain data; the kernel fills it for a valid descriptor.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    checked(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) })?;
    Ok(stat)
}

/// `lstat` of `name` in `dir`.
pub fn lstat_at(dir: &OwnedFd, name: &CString) -> std::io::Result<libc::stat> {
    // SAFETY: as `fstat`, with a NUL-terminated name.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    checked(unsafe { libc::fstatat(dir.as_raw_fd(), name.as_ptr(), &mut stat, libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(stat)
}

/// Gives `fd` to the sandbox user with `mode` (the process umask must not narrow it).
pub fn hand_over(fd: &OwnedFd, owner: u32, mode: libc::mode_t) -> std::io::Result<()> {
    // SAFETY: valid descriptor.
    checked(unsafe { libc::fchown(fd.as_raw_fd(), owner, owner) })?;
    // SAFETY: valid descriptor.
    checked(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
    Ok(())
}
