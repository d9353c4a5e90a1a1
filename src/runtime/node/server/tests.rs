//! The node over its real link (TLS on loopback, HTTP/2) in front of the in-memory runtime:
//! what it refuses, whatever the caller sends.

use std::path::PathBuf;
use std::sync::Arc;

use crate::runtime::disk::DiskSpec;
use crate::runtime::memory::MemoryRuntime;
use crate::runtime::node::{client::RemoteRuntime, serve_loopback};
use crate::runtime::sandbox::{GATEWAY_PORT, LABEL_MANAGED};
use crate::runtime::{Runtime, RuntimeError};

async fn node(memory: Arc<MemoryRuntime>) -> RemoteRuntime {
    serve_loopback(memory, PathBuf::from("/srv/node-root"), tokio_util::sync::CancellationToken::new()).await.unwrap()
}

fn two_containers() -> Arc<MemoryRuntime> {
    let memory =
        MemoryRuntime::default().with_container("sandy-ours", "running", &[(LABEL_MANAGED, "true")]).with_container("postgres", "running", &[]);
    Arc::new(memory)
}

#[tokio::test]
async fn a_node_acts_only_on_ocaas_containers_and_only_in_its_own_directory() {
    let memory = two_containers();
    let remote = node(memory.clone()).await;
    assert!(remote.inspect("sandy-ours").await.unwrap().running);
    for name in ["postgres", "postgres?force=true", "../postgres", "sandy-ours/../postgres"] {
        assert!(remote.inspect(name).await.is_err(), "{name}");
        assert!(remote.stop(name, 0).await.is_err(), "{name}");
        assert!(remote.remove_container(name).await.is_err(), "{name}");
        assert!(remote.remove_sandbox(name, &DiskSpec::new(std::path::Path::new("/x"), "sandy-x", 0)).await.is_err(), "{name}");
    }
    assert_eq!(memory.state_of("postgres").as_deref(), Some("running"), "the other container is untouched");

    // Whatever directory the caller names, the node keeps only its last part, under its root.
    remote.prepare_storage(&DiskSpec { dir: PathBuf::from("/etc/../var/lib/sandy-ours"), quota_bytes: 0 }).await.unwrap();
    assert_eq!(*memory.disks.lock().unwrap(), vec![PathBuf::from("/srv/node-root/sandy-ours")]);
    for dir in ["/", "/etc/..", "/srv/sandy ours"] {
        assert!(remote.prepare_storage(&DiskSpec { dir: PathBuf::from(dir), quota_bytes: 0 }).await.is_err(), "{dir}");
    }
    let disk = DiskSpec { dir: PathBuf::from("/srv/sandy-ours"), quota_bytes: 0 };
    assert!(remote.read_state_file(&disk, "../../etc/shadow", 100).await.is_err());
    assert!(remote.read_state_file(&disk, "openclaw.json", 64 << 20).await.is_err(), "no more than 4 MiB at once");
    // Only the gateway's and the desktop's ports.
    assert!(remote.connect("sandy-ours", 22).await.is_err());
    assert!(remote.connect("sandy-ours", GATEWAY_PORT).await.is_ok());
    assert!(remote.exec_exit_code("not-one-of-ours").await.is_err(), "an exec id it did not start");
}

#[tokio::test]
async fn a_node_answers_only_its_credential_over_its_own_certificate() {
    let memory = two_containers();
    let remote = node(memory.clone()).await;
    let stranger = remote.with_credential("ocaasnode_guess");
    assert!(matches!(stranger.inspect("sandy-ours").await, Err(RuntimeError::Other(_))), "401 without the credential");
    assert!(stranger.stop("sandy-ours", 0).await.is_err());
    assert_eq!(memory.state_of("sandy-ours").as_deref(), Some("running"));
    // A replica that pins another certificate does not talk to it at all.
    let pinned_elsewhere = RemoteRuntime::new(remote.address().to_owned(), &"0".repeat(64), "irrelevant".into()).unwrap();
    assert!(matches!(pinned_elsewhere.ping().await, Err(RuntimeError::Unavailable(_))));
}

#[tokio::test]
async fn a_silent_node_is_unavailable_within_seconds_and_callers_do_not_queue() {
    // A listener that accepts and never answers (no TLS handshake).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let remote = RemoteRuntime::new(address, &"0".repeat(64), "c".into()).unwrap();
    let started = std::time::Instant::now();
    let calls = (0..10).map(|_| remote.inspect("sandy-ours"));
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(|a| matches!(a, Err(RuntimeError::Unavailable(_)))));
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_sandbox_that_stops_reading_holds_back_its_own_stream_only() {
    use tokio::io::AsyncWriteExt;
    let memory = two_containers();
    let remote = node(memory.clone()).await;
    let mut stalled = remote.connect("sandy-ours", GATEWAY_PORT).await.unwrap();
    // 16 MiB towards a sandbox that reads nothing: held back once the windows are full.
    let writer = tokio::spawn(async move {
        let chunk = vec![7u8; 64 << 10];
        for _ in 0..256 {
            if stalled.write_all(&chunk).await.is_err() {
                return;
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!writer.is_finished(), "the writes wait for the sandbox");
    // The link itself goes on: calls and new streams are answered at once.
    let started = std::time::Instant::now();
    for _ in 0..20 {
        assert!(remote.inspect("sandy-ours").await.unwrap().running);
    }
    let mut other = remote.connect("sandy-ours", GATEWAY_PORT).await.unwrap();
    other.write_all(b"hello").await.unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "held up by another stream: {:?}", started.elapsed());
    assert!(!writer.is_finished());
    writer.abort();
}
