//! Packing and unpacking: round trips, and a hostile tenant's tree (links swapped mid-pack,
//! hard links, trees past the bounds, random trees).

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
    let packed = pack(&from, &mut bytes, roomy()).unwrap();
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

fn roomy() -> Bounds {
    Bounds { max_bytes: u64::MAX, deadline: Instant::now() + std::time::Duration::from_secs(120) }
}

fn scratch() -> std::path::PathBuf {
    let base = std::env::temp_dir().join(format!("ocaas-archive-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(base.join("from/workspace")).unwrap();
    base
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut bytes = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// The archive's tar stream, decompressed, and its entry paths.
fn contents(archive: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut raw = Vec::new();
    GzDecoder::new(archive).read_to_end(&mut raw).unwrap();
    let mut tar = tar::Archive::new(raw.as_slice());
    let paths = tar.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
    (raw, paths)
}

#[test]
fn a_link_swapped_in_mid_pack_never_puts_a_host_byte_in_the_archive() {
    let base = scratch();
    let from = base.join("from");
    let marker = format!("HOST-SECRET-{}", uuid::Uuid::new_v4().simple());
    std::fs::create_dir_all(base.join("host/private")).unwrap();
    std::fs::write(base.join("host/private/secret.txt"), &marker).unwrap();
    std::fs::set_permissions(base.join("host/private/secret.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    // A large file keeps the packer busy while the entries after it change.
    std::fs::write(from.join("workspace/big"), random_bytes(4 << 20, 1)).unwrap();
    std::fs::create_dir_all(from.join("workspace/d")).unwrap();
    std::fs::write(from.join("workspace/d/inner.txt"), "tenant").unwrap();
    std::fs::write(from.join("workspace/f"), "tenant").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (ws, host, stop) = (from.join("workspace"), base.join("host/private"), stop.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && swaps < 2_000_000 {
                std::fs::rename(ws.join("d"), ws.join("d.real")).unwrap();
                std::os::unix::fs::symlink(&host, ws.join("d")).unwrap();
                std::fs::rename(ws.join("f"), ws.join("f.real")).unwrap();
                std::os::unix::fs::symlink(host.join("secret.txt"), ws.join("f")).unwrap();
                std::thread::yield_now();
                std::fs::remove_file(ws.join("d")).unwrap();
                std::fs::rename(ws.join("d.real"), ws.join("d")).unwrap();
                std::fs::remove_file(ws.join("f")).unwrap();
                std::fs::rename(ws.join("f.real"), ws.join("f")).unwrap();
                swaps += 1;
            }
            swaps
        })
    };
    let until = Instant::now() + std::time::Duration::from_secs(20);
    let mut packs = 0;
    while packs < 25 && Instant::now() < until {
        let mut archive = Vec::new();
        pack(&from, &mut archive, roomy()).unwrap();
        let (raw, paths) = contents(&archive);
        assert!(!raw.windows(marker.len()).any(|w| w == marker.as_bytes()), "a host file's bytes are in the archive: {paths:?}");
        assert!(!paths.iter().any(|p| p.contains("secret")), "a host directory was walked: {paths:?}");
        assert!(paths.contains(&"workspace/big".to_owned()));
        packs += 1;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(swapper.join().unwrap() > 0, "the tree changed while it was packed");
    assert!(packs >= 3, "only {packs} packs ran");
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn three_hundred_hard_links_to_one_file_are_stored_once_and_come_back_as_links() {
    use std::os::unix::fs::MetadataExt;
    let base = scratch();
    let (from, to) = (base.join("from"), base.join("to"));
    let bytes = random_bytes(10 << 20, 2);
    std::fs::write(from.join("workspace/original"), &bytes).unwrap();
    for i in 0..300 {
        std::fs::hard_link(from.join("workspace/original"), from.join(format!("workspace/link-{i}"))).unwrap();
    }
    let mut archive = Vec::new();
    let packed = pack(&from, &mut archive, roomy()).unwrap();
    assert!(packed.size < 11 << 20, "300 links to 10 MiB made a {} byte archive", packed.size);
    unpack(&mut archive.as_slice(), &to).unwrap();
    let first = std::fs::metadata(to.join("workspace/original")).unwrap();
    assert_eq!(first.nlink(), 301, "every name is a link to one file again");
    assert_eq!(std::fs::metadata(to.join("workspace/link-299")).unwrap().ino(), first.ino());
    assert_eq!(std::fs::read(to.join("workspace/link-150")).unwrap(), bytes);
    let _ = std::fs::remove_dir_all(base);
}

#[test]
fn a_pack_past_its_size_or_time_stops_with_that_reason() {
    let base = scratch();
    let from = base.join("from");
    std::fs::write(from.join("workspace/noise"), random_bytes(4 << 20, 3)).unwrap();
    let mut archive = Vec::new();
    let small = Bounds { max_bytes: 1 << 20, ..roomy() };
    assert!(matches!(pack(&from, &mut archive, small), Err(PackError::TooLarge(n)) if n == 1 << 20));
    assert!(archive.len() <= 1 << 20, "{} bytes written past a 1 MiB bound", archive.len());
    let late = Bounds { deadline: Instant::now() - std::time::Duration::from_secs(1), ..roomy() };
    assert!(matches!(pack(&from, &mut Vec::new(), late), Err(PackError::TimedOut)));
    let _ = std::fs::remove_dir_all(base);
}
