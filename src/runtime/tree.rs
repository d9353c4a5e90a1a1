//! Walking a tenant's tree from the host without following anything.
//!
//! ocaas runs as root and the tenant controls every entry below its storage directory, and
//! can change any of them while the walk runs (a sandbox that stays busy is snapshotted live).
//! So nothing is ever opened by its full path: each directory is opened relative to its
//! parent's descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV)`,
//! each file the same way with `O_NOFOLLOW | O_NONBLOCK`, and what was opened is checked with
//! `fstat` against what was listed (same inode, same type); an entry swapped in between is
//! skipped. A link is reported as a link (its target text, never what it points to), a file
//! with several names is reported in full once and as a hard link afterwards; fifos,
//! sockets and devices are not reported (they hold no data, and opening one could block). The walk is bounded by depth and by a deadline.

use std::collections::HashMap;
use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::fsys::{self, Entries};

/// Deepest directory nesting walked; deeper is an error rather than a descriptor per level.
pub const MAX_DEPTH: usize = 256;

/// What one entry is, as opened.
pub enum Kind<'a> {
    Dir,
    /// A regular file, opened; read at most `stat.st_size` bytes of it.
    File(&'a mut std::fs::File),
    /// A symbolic link and its target text.
    Symlink(&'a Path),
    /// Another name of a file already reported under this path.
    HardLink(&'a Path),
}

/// One entry: its path relative to the walk's root, its metadata as opened, and its kind.
pub struct Entry<'a> {
    pub path: &'a Path,
    pub stat: &'a libc::stat,
    pub kind: Kind<'a>,
}

pub type Visit<'v> = dyn FnMut(Entry<'_>) -> io::Result<()> + 'v;

struct Walk<'v, 'f> {
    visit: &'f mut Visit<'v>,
    deadline: Instant,
    /// (device, inode) → first path, for files with more than one name.
    seen: HashMap<(u64, u64), PathBuf>,
}

fn is(stat: &libc::stat, kind: libc::mode_t) -> bool {
    stat.st_mode & libc::S_IFMT == kind
}

/// Errors that mean the entry changed or went away under us: it is skipped, not fatal.
fn raced(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP | libc::EXDEV | libc::EINVAL | libc::EAGAIN))
}

/// Walks `root/<part>` for each part (a missing part, or one that is not a plain directory, is
/// skipped), calling `visit` for every entry, parents before children.
pub fn walk(root: &Path, parts: &[&str], deadline: Instant, visit: &mut Visit<'_>) -> io::Result<()> {
    let base = fsys::open_dir_nofollow(root)?;
    let mut walk = Walk { visit, deadline, seen: HashMap::new() };
    for part in parts {
        let name = CString::new(*part).map_err(io::Error::other)?;
        let dir = match fsys::open_dir_beneath(std::os::fd::AsRawFd::as_raw_fd(&base), &name) {
            Ok(dir) => dir,
            Err(error) if raced(&error) => continue,
            Err(error) => return Err(error),
        };
        let stat = fsys::fstat(&dir)?;
        let path = PathBuf::from(part);
        (walk.visit)(Entry { path: &path, stat: &stat, kind: Kind::Dir })?;
        walk.dir(&dir, &path, 1)?;
    }
    Ok(())
}

impl Walk<'_, '_> {
    fn check_deadline(&self) -> io::Result<()> {
        if Instant::now() > self.deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the tree walk ran out of time"));
        }
        Ok(())
    }

    fn dir(&mut self, dir: &std::os::fd::OwnedFd, path: &Path, depth: usize) -> io::Result<()> {
        for name in Entries::of(dir)? {
            let name = name?;
            self.check_deadline()?;
            let listed = match fsys::lstat_at(dir, &name) {
                Ok(stat) => stat,
                Err(error) if raced(&error) => continue,
                Err(error) => return Err(error),
            };
            let child = path.join(OsStr::from_bytes(name.to_bytes()));
            match self.entry(dir, &name, &child, &listed, depth) {
                Err(error) if raced(&error) => continue,
                other => other?,
            }
        }
        Ok(())
    }

    fn entry(&mut self, dir: &std::os::fd::OwnedFd, name: &CString, path: &Path, listed: &libc::stat, depth: usize) -> io::Result<()> {
        let same = |opened: &libc::stat| opened.st_ino == listed.st_ino && opened.st_dev == listed.st_dev;
        let swapped = || io::Error::from_raw_os_error(libc::ENOENT);
        match listed.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                if depth >= MAX_DEPTH {
                    return Err(io::Error::other(format!("directories nest deeper than {MAX_DEPTH} levels")));
                }
                let sub = fsys::open_dir_beneath(std::os::fd::AsRawFd::as_raw_fd(dir), name)?;
                let stat = fsys::fstat(&sub)?;
                if !same(&stat) {
                    return Err(swapped());
                }
                (self.visit)(Entry { path, stat: &stat, kind: Kind::Dir })?;
                self.dir(&sub, path, depth + 1)
            }
            libc::S_IFREG => {
                let mut file = fsys::open_file_beneath(dir, name)?;
                let stat = fsys::fstat(&file)?;
                if !same(&stat) || !is(&stat, libc::S_IFREG) {
                    return Err(swapped());
                }
                if stat.st_nlink > 1 {
                    let key = (stat.st_dev, stat.st_ino);
                    if let Some(first) = self.seen.get(&key) {
                        let first = first.clone();
                        return (self.visit)(Entry { path, stat: &stat, kind: Kind::HardLink(&first) });
                    }
                    self.seen.insert(key, path.to_owned());
                }
                (self.visit)(Entry { path, stat: &stat, kind: Kind::File(&mut file) })
            }
            libc::S_IFLNK => {
                let target = PathBuf::from(OsStr::from_bytes(&fsys::readlink_at(dir, name)?));
                (self.visit)(Entry { path, stat: listed, kind: Kind::Symlink(&target) })
            }
            // Fifos, sockets and devices: no data to keep, nothing to open.
            _ => Ok(()),
        }
    }
}
