//! Snapshots in an S3-compatible bucket: `moto`'s server (from PyPI, installed by `tests/run`)
//! on loopback stands in for S3. An archive larger than one part goes up as a multipart
//! upload and is the only thing kept (nothing on the host's disk); the download is the
//! object, byte for byte; a restore reads it back into the sandbox; deleting the snapshot
//! deletes the object.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::helpers::{ready_instance, sandbox_sh, spawn_app_with_docker};
use crate::snapshots::{manifest, restore, snapshot, write_tree};

pub const BUCKET: &str = "ocaas-snapshots";

/// moto's S3 server on a loopback port, stopped when dropped.
pub struct Moto {
    child: Child,
    pub url: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn moto() -> Moto {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto's server (tests/run installs moto[server])");
    let moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(&moto.url).await.is_err() {
        assert!(Instant::now() < deadline, "moto's server did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let made = reqwest::Client::new().put(format!("{}/{BUCKET}", moto.url)).send().await.unwrap();
    assert!(made.status().is_success(), "creating the bucket: {}", made.status());
    moto
}

/// The bucket's objects: (key, size).
pub async fn objects(moto: &Moto) -> Vec<(String, u64)> {
    let listing = reqwest::get(format!("{}/{BUCKET}?list-type=2", moto.url)).await.unwrap().text().await.unwrap();
    let tag = |item: &str, name: &str| item.split(&format!("<{name}>")).nth(1).and_then(|r| r.split(&format!("</{name}>")).next()).map(str::to_owned);
    listing.split("<Contents>").skip(1).filter_map(|item| Some((tag(item, "Key")?, tag(item, "Size")?.parse().ok()?))).collect()
}

#[tokio::test]
async fn snapshots_go_to_the_bucket_whole_and_come_back_from_it() {
    let moto = moto().await;
    let location = ocaas::config::S3Location::parse(&format!("{}/{BUCKET}/site-a", moto.url), "us-east-1", "testing", "testing").unwrap();
    let app = spawn_app_with_docker(move |settings| settings.snapshots.s3 = Some(location)).await;
    let (id, sandbox) = ready_instance(&app).await;
    write_tree(&sandbox);
    let before = manifest(&sandbox);

    let taken = snapshot(&app, &id, "to the bucket").await;
    let (sid, size) = (taken["id"].as_str().unwrap().to_owned(), taken["size_bytes"].as_u64().unwrap());
    let key = format!("site-a/{}/{sid}.tar.gz", app.user.id);
    assert_eq!(objects(&moto).await, vec![(key.clone(), size)], "the archive is the bucket's one object");
    assert!(size > 32 << 20, "32 MiB of random bytes: more than one 16 MiB part ({size})");
    let on_disk = walkdir(&app.state.settings.snapshots.root.join(app.user.id.to_string()));
    assert!(on_disk.is_empty(), "nothing kept on the host for this user: {on_disk:?}");

    // The download is the object, whose digest is the snapshot's.
    let object = reqwest::get(format!("{}/{BUCKET}/{key}", moto.url)).await.unwrap().bytes().await.unwrap();
    assert_eq!(format!("{:x}", Sha256::digest(&object)), taken["sha256"].as_str().unwrap());
    let download = app.api(Method::GET, &format!("/api/instances/{id}/snapshots/{sid}/download")).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.bytes().await.unwrap(), object);

    // A restore reads it back from the bucket.
    sandbox_sh(&sandbox, "rm -rf /workspace/src /workspace/large.bin; echo x > /workspace/new.txt");
    restore(&app, &id, &sid).await;
    assert_eq!(manifest(&sandbox), before, "identical tree after a restore from the bucket");

    // Deleting the snapshot deletes its object (the restore's safety snapshot stays).
    let deleted = app.api(Method::DELETE, &format!("/api/instances/{id}/snapshots/{sid}")).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let left = objects(&moto).await;
    assert!(left.iter().all(|(k, _)| *k != key) && left.len() == 1, "{left:?}");
}

/// Every file under `root` (none if it does not exist).
fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => dirs.push(entry.path()),
                _ => found.push(entry.path()),
            }
        }
    }
    found
}
