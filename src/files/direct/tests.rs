//! Direct writes on a storage directory made here (the tests run as root, as the server does).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

/// A storage whose directories belong to the sandbox user, as `runtime::disk` makes them.
fn storage() -> (DiskSpec, std::path::PathBuf) {
    let root = std::env::temp_dir().join(format!("ocaas-direct-{}", uuid::Uuid::new_v4().simple()));
    let disk = DiskSpec::new(&root, "sbx", 0);
    for dir in [disk.workspace(), disk.workspace().join("sub"), disk.state()] {
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(SANDBOX_OWNER), Some(SANDBOX_OWNER)).unwrap();
    }
    (disk, root)
}

fn path(text: &str) -> SandboxPath {
    SandboxPath::parse(text).unwrap()
}

#[tokio::test]
async fn plain_rights_are_decided_here_and_missing_directories_made_as_the_sandbox_user() {
    let (disk, root) = storage();
    let mut target = prepare(&disk, &path("/workspace/new/deeper/file.txt")).await.expect("the sandbox user owns the way");
    target.fill(futures_util::stream::iter([Ok(Bytes::from_static(b"x"))]), 10).await.unwrap();
    target.commit("file.txt").await.unwrap();
    for made in ["new", "new/deeper", "new/deeper/file.txt"] {
        let meta = std::fs::metadata(disk.workspace().join(made)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (SANDBOX_OWNER, SANDBOX_OWNER), "{made}");
    }
    assert_eq!(std::fs::metadata(disk.workspace().join("new/deeper")).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(std::fs::metadata(disk.workspace().join("new/deeper/file.txt")).unwrap().permissions().mode() & 0o777, 0o644);

    // Whatever is not plain is left to the sandbox: a directory or file of another owner, a
    // directory the owner closed to itself, a directory where the file should go, a link.
    std::fs::create_dir(disk.workspace().join("roots")).unwrap();
    std::fs::write(disk.workspace().join("sub/roots.txt"), "").unwrap();
    std::fs::create_dir(disk.workspace().join("sub/a-dir")).unwrap();
    std::fs::create_dir(disk.workspace().join("closed")).unwrap();
    std::os::unix::fs::chown(disk.workspace().join("closed"), Some(SANDBOX_OWNER), None).unwrap();
    std::fs::set_permissions(disk.workspace().join("closed"), std::fs::Permissions::from_mode(0o500)).unwrap();
    std::os::unix::fs::symlink("sub", disk.workspace().join("link")).unwrap();
    for undecided in [
        "/workspace/roots/f",
        "/workspace/roots/missing/f",
        "/workspace/sub/roots.txt",
        "/workspace/sub/a-dir",
        "/workspace/closed/f",
        "/workspace/link/f",
        "/tmp/f",
    ] {
        assert!(prepare(&disk, &path(undecided)).await.is_none(), "{undecided}");
    }
    assert!(!disk.workspace().join("roots/missing").exists());
    std::fs::remove_dir_all(root).unwrap();
}

#[tokio::test]
async fn writes_under_a_temporary_name_then_renames_and_cleans_up_when_dropped() {
    let (disk, root) = storage();
    let dir = path("/workspace/sub");
    let mut target = open(&disk, &dir).await.expect("a plain directory opens");
    let chunks = futures_util::stream::iter([Ok(Bytes::from_static(b"hello ")), Ok(Bytes::from_static(b"world"))]);
    assert_eq!(target.fill(chunks, 100).await.unwrap(), 11);
    target.commit("file.txt").await.unwrap();
    let written = disk.workspace().join("sub/file.txt");
    assert_eq!(std::fs::read(&written).unwrap(), b"hello world");
    let names = |dir: &std::path::Path| std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>();
    assert_eq!(names(&disk.workspace().join("sub")), vec![std::ffi::OsString::from("file.txt")]);

    // Too big: refused, and the temporary file goes with the target.
    let mut target = open(&disk, &path("/agent-state")).await.unwrap();
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
        assert!(open(&disk, &path(dir)).await.is_none(), "{dir} must take the engine's way");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    std::fs::remove_dir_all(root).unwrap();
}
