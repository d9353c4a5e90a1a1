//! Property test of the tree walk behind packing: random trees of directories, files, links
//! (to inside, to outside, dangling), hard links, fifos and sockets, some changed by a second
//! thread while they are packed, come back exactly as they were (fifos and sockets left out), and no
//! archive ever holds a byte from outside the tree. Bounded: a fixed number of seeded trees.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

const TREES: u64 = 40;

/// Makes a random tree under `root/workspace` and `root/state`; the paths made.
fn grow(root: &Path, rng: &mut StdRng, outside: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![root.join("workspace"), root.join("state")];
    let mut files = Vec::new();
    for dir in &dirs {
        std::fs::create_dir_all(dir).unwrap();
    }
    for i in 0..rng.random_range(5..60) {
        let parent = dirs[rng.random_range(0..dirs.len())].clone();
        let path = parent.join(format!("e{i}-{}", ["a", "ü", "with space", "x\u{1}y"][i % 4]));
        match rng.random_range(0..10) {
            0..=1 => {
                std::fs::create_dir(&path).unwrap();
                dirs.push(path.clone());
            }
            2..=4 => {
                let len = rng.random_range(0..5000);
                std::fs::write(&path, (0..len).map(|_| rng.random::<u8>()).collect::<Vec<_>>()).unwrap();
                files.push(path.clone());
            }
            5 => {
                let target = [outside.to_path_buf(), outside.join("secret"), PathBuf::from("../../.."), PathBuf::from("nowhere")]
                    [rng.random_range(0..4)]
                .clone();
                std::os::unix::fs::symlink(target, &path).unwrap();
            }
            6 if !files.is_empty() => std::fs::hard_link(&files[rng.random_range(0..files.len())], &path).unwrap(),
            7 => {
                let name = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o640) }, 0);
            }
            8 => {
                // Socket paths are short (108 bytes): made nearby, then moved in.
                let short = std::env::temp_dir().join(format!("ocs-{}", uuid::Uuid::new_v4().simple()));
                drop(std::os::unix::net::UnixListener::bind(&short).unwrap());
                std::fs::rename(&short, &path).unwrap();
            }
            _ => std::fs::write(&path, "small").unwrap(),
        }
    }
    dirs
}

/// What a tree holds: path → kind and content (or target); and its groups of hard links.
fn describe(root: &Path) -> (BTreeMap<String, String>, BTreeSet<Vec<String>>) {
    let (mut entries, mut inodes) = (BTreeMap::new(), BTreeMap::<u64, Vec<String>>::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let kind = meta.file_type();
            let what = if kind.is_dir() {
                stack.push(path.clone());
                "dir".to_owned()
            } else if kind.is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if kind.is_file() {
                inodes.entry(meta.ino()).or_default().push(name.clone());
                format!("file {:x}", Sha256::digest(std::fs::read(&path).unwrap()))
            } else {
                continue; // fifos and sockets are not kept
            };
            entries.insert(name, format!("{what} mode {:o}", meta.mode() & 0o7777));
        }
    }
    let groups = inodes.into_values().filter(|g| g.len() > 1).map(|mut g| {
        g.sort();
        g
    });
    (entries, groups.collect())
}

#[test]
fn random_trees_come_back_exactly_and_racing_changes_never_leak_outside_bytes() {
    let base = std::env::temp_dir().join(format!("ocaas-props-{}", uuid::Uuid::new_v4().simple()));
    let outside = base.join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let marker = format!("OUTSIDE-{}", uuid::Uuid::new_v4().simple());
    std::fs::write(outside.join("secret"), &marker).unwrap();
    for seed in 0..TREES {
        let mut rng = StdRng::seed_from_u64(seed);
        let (from, to) = (base.join(format!("from-{seed}")), base.join(format!("to-{seed}")));
        let dirs = grow(&from, &mut rng, &outside);
        let racing = seed % 2 == 1;
        let stop = Arc::new(AtomicBool::new(false));
        // Odd seeds: a second thread keeps swapping directories for links to the outside.
        let racer = racing.then(|| {
            let (dirs, outside, stop) = (dirs[2..].to_vec(), outside.clone(), stop.clone());
            std::thread::spawn(move || {
                for round in 0..200_000 {
                    if stop.load(Ordering::Relaxed) || dirs.is_empty() {
                        break;
                    }
                    let dir = &dirs[round % dirs.len()];
                    let aside = dir.with_extension("aside");
                    if std::fs::rename(dir, &aside).is_ok() {
                        let _ = std::os::unix::fs::symlink(&outside, dir);
                        std::thread::yield_now();
                        let _ = std::fs::remove_file(dir);
                        let _ = std::fs::rename(&aside, dir);
                    }
                }
            })
        });
        let before = (!racing).then(|| describe(&from));
        let mut archive = Vec::new();
        pack(&from, &mut archive, Bounds { max_bytes: 64 << 20, deadline: Instant::now() + std::time::Duration::from_secs(60) }).unwrap();
        stop.store(true, Ordering::Relaxed);
        if let Some(racer) = racer {
            racer.join().unwrap();
        }
        let mut raw = Vec::new();
        GzDecoder::new(archive.as_slice()).read_to_end(&mut raw).unwrap();
        assert!(!raw.windows(marker.len()).any(|w| w == marker.as_bytes()), "seed {seed}: bytes from outside the tree");
        unpack(&mut archive.as_slice(), &to).unwrap();
        if let Some(before) = before {
            assert_eq!(describe(&to), before, "seed {seed}: the tree did not come back as it was");
        }
        let _ = std::fs::remove_dir_all(&from);
        let _ = std::fs::remove_dir_all(&to);
    }
    let _ = std::fs::remove_dir_all(base);
}
