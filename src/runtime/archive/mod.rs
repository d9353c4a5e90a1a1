//! Snapshot archives: a gzip-compressed tar of an instance's `workspace/` and `state/`
//! directories, read from the host side of its storage. Packing walks the tree by directory
//! descriptors and never follows a link, even one swapped in while it runs (`runtime::tree`):
//! a link is stored as a link, a file with several names once (then as tar hard links), no
//! special file's contents are read, and the archive stops past its size or time bound;
//! unpacking
//! only writes inside the destination (the tar crate refuses `..`, absolute paths and writes
//! through links) and only the two top-level directories, whose old contents it replaces.
//! Modes, owners and times are kept. Both block: run them in `spawn_blocking`.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

use crate::runtime::tree::{self, Entry, Kind};

mod stream;
pub use stream::{PackStream, pack_stream, unpack_stream};

/// The directories a snapshot holds, as named in the archive.
pub const PARTS: [&str; 2] = ["workspace", "state"];

/// What was written: compressed size and SHA-256 (hex) of the archive.
#[derive(Debug)]
pub struct Packed {
    pub size: u64,
    pub sha256: String,
}

/// Bounds of one pack: compressed bytes written, and a wall-clock deadline.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_bytes: u64,
    pub deadline: Instant,
}

/// Why a pack stopped.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("the archive grew past the {0} bytes it may take")]
    TooLarge(u64),
    #[error("packing took longer than it may")]
    TimedOut,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Which bound a write hit; shared with the caller because the tar and gzip layers may wrap
/// the error on its way up.
type Hit = Rc<Cell<Option<PackError>>>;

/// Counts and hashes what passes through, and stops past the bounds.
struct Digesting<W> {
    inner: W,
    size: u64,
    hash: Sha256,
    bounds: Bounds,
    hit: Hit,
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.size + buf.len() as u64 > self.bounds.max_bytes {
            self.hit.set(Some(PackError::TooLarge(self.bounds.max_bytes)));
            return Err(io::Error::new(io::ErrorKind::StorageFull, "archive too large"));
        }
        if Instant::now() > self.bounds.deadline {
            self.hit.set(Some(PackError::TimedOut));
            return Err(io::Error::new(io::ErrorKind::TimedOut, "packing timed out"));
        }
        let written = self.inner.write(buf)?;
        self.hash.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A tar header for `entry`, from what was opened: modes, owners, time, size.
fn header(stat: &libc::stat, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(stat.st_mode & 0o7777);
    header.set_uid(u64::from(stat.st_uid));
    header.set_gid(u64::from(stat.st_gid));
    header.set_mtime(stat.st_mtime.max(0) as u64);
    header.set_size(size);
    header
}

/// Appends one walked entry. A file's contents are exactly the size it had when opened
/// (padded with zeroes if it shrank meanwhile, cut if it grew), so the archive stays valid.
fn append<W: Write>(builder: &mut tar::Builder<W>, entry: Entry<'_>) -> io::Result<()> {
    let path = entry.path;
    match entry.kind {
        Kind::Dir => builder.append_data(&mut header(entry.stat, tar::EntryType::Directory, 0), path, io::empty()),
        Kind::Symlink(target) => builder.append_link(&mut header(entry.stat, tar::EntryType::Symlink, 0), path, target),
        Kind::HardLink(first) => builder.append_link(&mut header(entry.stat, tar::EntryType::Link, 0), path, first),
        Kind::File(file) => {
            let size = entry.stat.st_size.max(0) as u64;
            let data = Read::by_ref(file).take(size).chain(io::repeat(0)).take(size);
            builder.append_data(&mut header(entry.stat, tar::EntryType::Regular, size), path, data)
        }
    }
}

/// Writes the archive of `root/workspace` and `root/state` to `out`, walking the tree without
/// following anything (`runtime::tree`), within `bounds`.
pub fn pack(root: &Path, out: &mut dyn Write, bounds: Bounds) -> Result<Packed, PackError> {
    let hit: Hit = Rc::default();
    let digesting = Digesting { inner: out, size: 0, hash: Sha256::new(), bounds, hit: hit.clone() };
    // Fast compression: a snapshot pauses the instance, so speed matters more than size.
    let mut builder = tar::Builder::new(GzEncoder::new(io::BufWriter::with_capacity(256 << 10, digesting), Compression::fast()));
    let walked = tree::walk(root, &PARTS, bounds.deadline, &mut |entry| append(&mut builder, entry));
    let finished = walked.and_then(|()| builder.into_inner()?.finish()?.into_inner().map_err(io::IntoInnerError::into_error));
    match (finished, hit.take()) {
        (_, Some(stop)) => Err(stop),
        (Err(error), None) if error.kind() == io::ErrorKind::TimedOut => Err(PackError::TimedOut),
        (Err(error), None) => Err(error.into()),
        (Ok(digesting), None) => Ok(Packed { size: digesting.size, sha256: format!("{:x}", digesting.hash.finalize()) }),
    }
}

/// Replaces the contents of `root/workspace` and `root/state` with the archive's.
pub fn unpack(archive: &mut dyn Read, root: &Path) -> io::Result<()> {
    for part in PARTS {
        let dir = root.join(part);
        std::fs::create_dir_all(&dir)?;
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            // `symlink_metadata`: a link is removed, never followed.
            if std::fs::symlink_metadata(&path)?.is_dir() { std::fs::remove_dir_all(&path)? } else { std::fs::remove_file(&path)? }
        }
    }
    let mut tar = tar::Archive::new(GzDecoder::new(io::BufReader::with_capacity(256 << 10, archive)));
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_preserve_mtime(true);
    tar.set_overwrite(true);
    for entry in tar.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let top = path.components().next().and_then(|c| c.as_os_str().to_str()).unwrap_or_default().to_owned();
        if !PARTS.contains(&top.as_str()) {
            continue;
        }
        entry.unpack_in(root)?;
    }
    Ok(())
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
