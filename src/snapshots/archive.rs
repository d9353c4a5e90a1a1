//! Snapshot archives: a gzip-compressed tar of an instance's `workspace/` and `state/`
//! directories, read from the host side of its storage. Packing never follows a symlink (a
//! link the tenant made is stored as a link) and reads no special file's contents; unpacking
//! only writes inside the destination (the tar crate refuses `..`, absolute paths and writes
//! through links) and only the two top-level directories, whose old contents it replaces.
//! Modes, owners and times are kept. Both block: run them in `spawn_blocking`.

use std::io::{self, Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

/// The directories a snapshot holds, as named in the archive.
pub const PARTS: [&str; 2] = ["workspace", "state"];

/// What was written: compressed size and SHA-256 (hex) of the archive.
#[derive(Debug)]
pub struct Packed {
    pub size: u64,
    pub sha256: String,
}

/// Counts and hashes what passes through.
struct Digesting<W> {
    inner: W,
    size: u64,
    hash: Sha256,
}

impl<W: Write> Write for Digesting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hash.update(&buf[..written]);
        self.size += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the archive of `root/workspace` and `root/state` to `out`.
pub fn pack(root: &Path, out: &mut dyn Write) -> io::Result<Packed> {
    let digesting = Digesting { inner: out, size: 0, hash: Sha256::new() };
    // Fast compression: a snapshot pauses the instance, so speed matters more than size.
    let mut builder = tar::Builder::new(GzEncoder::new(io::BufWriter::with_capacity(256 << 10, digesting), Compression::fast()));
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    for part in PARTS {
        let dir = root.join(part);
        if dir.is_dir() {
            builder.append_dir_all(part, &dir)?;
        }
    }
    let digesting = builder.into_inner()?.finish()?.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(Packed { size: digesting.size, sha256: format!("{:x}", digesting.hash.finalize()) })
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
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_tree_with_modes_links_and_binary_files_comes_back_identical_and_old_files_go() {
        let base = std::env::temp_dir().join(format!("ocaas-archive-{}", uuid::Uuid::new_v4().simple()));
        let (from, to) = (base.join("from"), base.join("to"));
        std::fs::create_dir_all(from.join("workspace/sub")).unwrap();
        std::fs::create_dir_all(from.join("state")).unwrap();
        std::fs::write(from.join("workspace/sub/bin"), [0u8, 255, 1, 2]).unwrap();
        std::fs::write(from.join("workspace/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(from.join("workspace/run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", from.join("workspace/link")).unwrap();
        std::fs::write(from.join("state/memory.json"), "{}").unwrap();
        std::fs::create_dir_all(to.join("workspace")).unwrap();
        std::fs::write(to.join("workspace/stale"), "old").unwrap();

        let mut bytes = Vec::new();
        let packed = pack(&from, &mut bytes).unwrap();
        assert_eq!(packed.size, bytes.len() as u64);
        assert_eq!(packed.sha256, format!("{:x}", Sha256::digest(&bytes)));
        unpack(&mut bytes.as_slice(), &to).unwrap();
        assert_eq!(std::fs::read(to.join("workspace/sub/bin")).unwrap(), [0u8, 255, 1, 2]);
        assert_eq!(std::fs::metadata(to.join("workspace/run.sh")).unwrap().permissions().mode() & 0o777, 0o750);
        assert_eq!(std::fs::read_link(to.join("workspace/link")).unwrap(), Path::new("/etc/passwd"), "a link stays a link");
        assert_eq!(std::fs::read_to_string(to.join("state/memory.json")).unwrap(), "{}");
        assert!(!to.join("workspace/stale").exists(), "the restore replaces what was there");
        let _ = std::fs::remove_dir_all(base);
    }

    #[test]
    fn entries_outside_the_two_directories_are_ignored() {
        let base = std::env::temp_dir().join(format!("ocaas-archive-{}", uuid::Uuid::new_v4().simple()));
        let mut raw = Vec::new();
        {
            let mut builder = tar::Builder::new(GzEncoder::new(&mut raw, Compression::fast()));
            let mut header = tar::Header::new_gnu();
            header.set_size(3);
            header.set_mode(0o644);
            header.set_uid(1000);
            header.set_gid(1000);
            header.set_mtime(0);
            header.set_cksum();
            builder.append_data(&mut header.clone(), "etc/evil", &b"bad"[..]).unwrap();
            builder.append_data(&mut header, "workspace/good", &b"yes"[..]).unwrap();
            builder.into_inner().unwrap().finish().unwrap();
        }
        unpack(&mut raw.as_slice(), &base).unwrap();
        assert!(!base.join("etc/evil").exists());
        assert_eq!(std::fs::read_to_string(base.join("workspace/good")).unwrap(), "yes");
        let _ = std::fs::remove_dir_all(base);
    }
}
