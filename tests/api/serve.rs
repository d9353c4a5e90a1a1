//! `ocaas serve` as a user runs it: no `DATABASE_URL`, its own PostgreSQL under the data dir,
//! stopped on SIGTERM and reused with its data on the next start.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reqwest::StatusCode;

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn ocaas(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocaas"));
    crate::helpers::same_host_policy(&mut command).env_remove("DATABASE_URL").env("OCAAS_DATA_DIR", data_dir);
    command
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start(data_dir: &Path, port: u16) -> Child {
    let mut child = ocaas(data_dir).args(["serve", "--bind", &format!("127.0.0.1:{port}")]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    while Instant::now() < deadline {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await
            && response.status() == StatusCode::OK
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("ocaas serve did not become ready");
}

fn stop(mut child: Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "ocaas serve exited with {status}");
}

fn run(data_dir: &Path, args: &[&str]) -> String {
    let output = ocaas(data_dir).args(args).output().unwrap();
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

async fn account_status(port: u16, key: &str) -> StatusCode {
    reqwest::Client::new().get(format!("http://127.0.0.1:{port}/api/account")).bearer_auth(key).send().await.unwrap().status()
}

#[tokio::test]
async fn serve_runs_its_own_postgres_and_keeps_data_across_restarts() {
    let dir = TempDir(std::env::temp_dir().join(format!("ocaas-serve-{}", uuid::Uuid::new_v4().simple())));
    let pid_file = dir.0.join("pg/postmaster.pid");
    let port = free_port();
    // An upload spool a crashed server left behind is cleared at start.
    std::fs::create_dir_all(dir.0.join("spool")).unwrap();
    std::fs::write(dir.0.join("spool/ocaas-upload-left-by-a-crash"), vec![0u8; 4096]).unwrap();

    let server = start(&dir.0, port).await;
    assert!(!dir.0.join("spool/ocaas-upload-left-by-a-crash").exists(), "the stale spool file was removed");
    let root: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/api")).await.unwrap().json().await.unwrap();
    assert_eq!(root["resources"].as_array().unwrap().len(), 12);
    // Admin commands reach the running server's cluster.
    run(&dir.0, &["admin", "user", "create", "--email", "keep@example.com", "--password", "correct horse battery"]);
    let key = run(&dir.0, &["admin", "key", "create", "--email", "keep@example.com"]);
    assert_eq!(account_status(port, &key).await, StatusCode::OK);
    assert!(pid_file.exists(), "the admin command leaves the server's cluster running");
    stop(server);
    assert!(!pid_file.exists(), "PostgreSQL stopped with ocaas");

    let server = start(&dir.0, port).await;
    assert_eq!(account_status(port, &key).await, StatusCode::OK, "users and keys survive a restart");
    stop(server);

    // With no server running, an admin command starts the cluster for itself and stops it.
    let listed = run(&dir.0, &["admin", "user", "list"]);
    assert!(listed.contains("keep@example.com"), "{listed}");
    assert!(!pid_file.exists(), "the admin command stopped the cluster it started");
}
