//! The few Linux calls that walk tenant-controlled trees from the host without following
//! anything, each wrapped once: `openat2` with its resolve flags (which the standard library
//! does not offer), `fstat`/`fstatat`, `readlinkat`, directory streams and errno checking.
//! Used by direct uploads (`files::direct`) and snapshot packing (`runtime::tree`).

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

pub fn fstat(fd: impl std::os::fd::AsFd) -> std::io::Result<libc::stat> {
    // SAFETY: `stat` is plain data; the kernel fills it for a valid descriptor.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    checked(unsafe { libc::fstat(fd.as_fd().as_raw_fd(), &mut stat) })?;
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

/// Opens the directory at `path` itself, refusing a link in its last component. For paths
/// ocaas made (the storage's own directory), never for paths below it.
pub fn open_dir_nofollow(path: &std::path::Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)?;
    Ok(OwnedFd::from(file))
}

/// Opens `name` in `dir` for reading without following anything (`BENEATH`) and without
/// blocking on a fifo or taking a terminal; the caller checks with `fstat` what it got.
pub fn open_file_beneath(dir: &OwnedFd, name: &CString) -> std::io::Result<std::fs::File> {
    // SAFETY: as in `open_dir_beneath`.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC) as u64;
    how.resolve = BENEATH;
    let size = std::mem::size_of::<libc::open_how>();
    // SAFETY: valid descriptor, NUL-terminated name and a live `open_how`.
    let fd = unsafe { libc::syscall(libc::SYS_openat2, dir.as_raw_fd(), name.as_ptr(), &how as *const libc::open_how, size) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor that nothing else owns.
    Ok(std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
}

/// The target of the link `name` in `dir` (at most `PATH_MAX` bytes, as the kernel keeps).
pub fn readlink_at(dir: &OwnedFd, name: &CString) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: valid descriptor, NUL-terminated name, and a buffer of the length passed.
    let len = unsafe { libc::readlinkat(dir.as_raw_fd(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

/// The entries of an open directory, read lazily (a huge directory is never held in memory),
/// without `.` and `..`.
pub struct Entries {
    dir: std::ptr::NonNull<libc::DIR>,
}

// SAFETY: the `DIR` stream is used by one thread at a time (it moves, it is not shared).
unsafe impl Send for Entries {}

impl Entries {
    /// Lists `dir` through a descriptor of its own (the caller keeps `dir` for lookups).
    pub fn of(dir: &OwnedFd) -> std::io::Result<Entries> {
        // SAFETY: valid descriptor; `.` of it is the directory itself.
        let own = checked(unsafe { libc::openat(dir.as_raw_fd(), c".".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: `own` is a fresh directory descriptor; on success the stream owns it.
        match std::ptr::NonNull::new(unsafe { libc::fdopendir(own) }) {
            Some(dir) => Ok(Entries { dir }),
            None => {
                let error = std::io::Error::last_os_error();
                // SAFETY: `fdopendir` failed, so `own` is still ours to close.
                unsafe { libc::close(own) };
                Err(error)
            }
        }
    }
}

impl Iterator for Entries {
    type Item = std::io::Result<CString>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // SAFETY: errno is thread-local; cleared to tell the end from an error.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: a live stream; the entry stays valid until the next call, and is copied.
            let entry = unsafe { libc::readdir(self.dir.as_ptr()) };
            if entry.is_null() {
                let error = std::io::Error::last_os_error();
                return (error.raw_os_error() != Some(0)).then_some(Err(error));
            }
            // SAFETY: `d_name` is NUL-terminated within the entry.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
            if name.to_bytes() != b"." && name.to_bytes() != b".." {
                return Some(Ok(name.to_owned()));
            }
        }
    }
}

impl Drop for Entries {
    fn drop(&mut self) {
        // SAFETY: the stream is live and closed once.
        unsafe { libc::closedir(self.dir.as_ptr()) };
    }
}

/// Reads the regular file `name` directly in the directory `base` (ocaas's own path) without
/// following a link, refusing anything but a regular file of at most `max` bytes.
pub fn read_small_beneath(base: &std::path::Path, name: &str, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let dir = open_dir_nofollow(base)?;
    let file = open_file_beneath(&dir, &CString::new(name).map_err(std::io::Error::other)?)?;
    let stat = fstat(&file)?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG || stat.st_size as u64 > max {
        return Err(std::io::Error::other(format!("{name} is not a regular file of at most {max} bytes")));
    }
    let mut out = Vec::new();
    // A file growing meanwhile is still read no further than `max` (+1 to notice).
    file.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::other(format!("{name} grew past {max} bytes")));
    }
    Ok(out)
}
