//! Where snapshot archives live. `SnapshotStore` is what the rest of ocaas uses — write an
//! object under a key and make it visible only once whole (`commit`), read it, delete it — so
//! an object store (S3 and the like) can be added beside `LocalStore` without touching the
//! callers. Its calls block: they run in `spawn_blocking`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// A new object being written; invisible to readers until `commit`.
pub trait ObjectWriter: Write + Send {
    fn commit(self: Box<Self>) -> io::Result<()>;
}

pub trait SnapshotStore: Send + Sync {
    fn create(&self, key: &str) -> io::Result<Box<dyn ObjectWriter>>;
    /// Reads the object (async: downloads stream it; restores bridge it to the blocking pool).
    fn open(&self, key: &str) -> io::Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>>;
    /// Removes the object; a missing one is fine.
    fn delete(&self, key: &str) -> io::Result<()>;
}

/// The key of a snapshot's archive.
pub fn key(user_id: Uuid, snapshot_id: Uuid) -> String {
    format!("{user_id}/{snapshot_id}.tar.gz")
}

/// Files under a directory of the host (`OCAAS_DATA_DIR/snapshots`), readable by root only.
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: &Path) -> Self {
        LocalStore { root: root.to_owned() }
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        // Keys are made by `key` above; anything else is a bug, not a path to follow.
        let safe = key.split('/').all(|part| !part.is_empty() && part != ".." && part != "." && !part.contains('\\'));
        if !safe {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("bad snapshot key {key}")));
        }
        Ok(self.root.join(key))
    }
}

struct LocalWriter {
    file: File,
    part: PathBuf,
    target: PathBuf,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn commit(self: Box<Self>) -> io::Result<()> {
        self.file.sync_all()?;
        std::fs::rename(&self.part, &self.target)
    }
}

impl Drop for LocalWriter {
    /// An abandoned write leaves nothing behind (after a commit the part file is gone already).
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.part);
    }
}

impl SnapshotStore for LocalStore {
    fn create(&self, key: &str) -> io::Result<Box<dyn ObjectWriter>> {
        let target = self.path(key)?;
        let dir = target.parent().expect("a key has a directory");
        std::fs::create_dir_all(dir)?;
        // Users' data: root only.
        std::fs::set_permissions(&self.root, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let part = target.with_extension("part");
        let file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&part)?;
        Ok(Box::new(LocalWriter { file, part, target }))
    }

    fn open(&self, key: &str) -> io::Result<Box<dyn tokio::io::AsyncRead + Send + Unpin>> {
        Ok(Box::new(tokio::fs::File::from_std(File::open(self.path(key)?)?)))
    }

    /// The object, and a part file a process that died mid-write left beside it.
    fn delete(&self, key: &str) -> io::Result<()> {
        let target = self.path(key)?;
        for path in [target.with_extension("part"), target] {
            match std::fs::remove_file(path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_object_is_visible_only_once_committed_and_an_abandoned_one_leaves_nothing() {
        let root = std::env::temp_dir().join(format!("ocaas-store-{}", Uuid::new_v4().simple()));
        let store = LocalStore::new(&root);
        let mut writer = store.create("u/a.tar.gz").unwrap();
        writer.write_all(b"hello").unwrap();
        assert!(store.open("u/a.tar.gz").is_err(), "not visible before commit");
        writer.commit().unwrap();
        let mut back = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut store.open("u/a.tar.gz").unwrap(), &mut back).await.unwrap();
        assert_eq!(back, "hello");
        drop(store.create("u/b.tar.gz").unwrap());
        assert_eq!(std::fs::read_dir(root.join("u")).unwrap().count(), 1, "the abandoned part file is removed");
        store.delete("u/a.tar.gz").unwrap();
        store.delete("u/a.tar.gz").unwrap();
        assert!(store.create("../escape").is_err());
        let _ = std::fs::remove_dir_all(root);
    }
}
