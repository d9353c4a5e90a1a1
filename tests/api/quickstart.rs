//! The README's "Your first instance" block, run as written against `ocaas serve` started the
//! way the quick start starts it (own PostgreSQL under the data dir, embedded image build
//! context): only `cargo run -q --release --` becomes this build's `ocaas` binary and
//! `localhost:8080` the test server's address.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM lets it stop its PostgreSQL.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
        // The server leaves its sandboxes running when it stops (as it should); the test does not.
        crate::helpers::clear_server_dir(&self.1);
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn readme_block(heading: &str) -> String {
    let readme = include_str!("../../README.md");
    let section = &readme[readme.find(heading).expect("the README has the section")..];
    let start = section.find("```sh\n").expect("the section has a sh block") + 6;
    section[start..start + section[start..].find("```").unwrap()].to_owned()
}

#[tokio::test]
async fn the_readme_first_instance_block_works_as_written() {
    crate::helpers::sandbox_image(); // builds the image once for the run (fails without Docker)
    let data_dir = std::env::temp_dir().join(format!("ocaas-quickstart-{}", uuid::Uuid::new_v4().simple()));
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let binary = env!("CARGO_BIN_EXE_ocaas");
    let child = crate::helpers::same_host_policy(&mut Command::new(binary))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env_remove("DATABASE_URL")
        .env("OCAAS_DATA_DIR", &data_dir)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let _server = Server(child, data_dir.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    while !matches!(reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await, Ok(r) if r.status().is_success()) {
        assert!(Instant::now() < deadline, "ocaas serve did not become ready");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let block = readme_block("### Your first instance");
    assert!(block.contains("cargo run -q --release --") && block.contains("localhost:8080"), "{block}");
    let script = block.replace("cargo run -q --release --", binary).replace("localhost:8080", &format!("127.0.0.1:{port}"));
    let output = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env_remove("DATABASE_URL")
            .env("OCAAS_DATA_DIR", &data_dir)
            .output(),
    )
    .await
    .expect("the quick start finished within 4 minutes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the block failed: {}\n{stdout}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    let last = stdout.lines().last().unwrap_or_default();
    let exchange: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("not the chat exchange ({e}): {stdout}"));
    assert_eq!(exchange["user_message"]["content"], "Hello");
    assert_eq!(exchange["assistant_message"]["status"], "complete", "{exchange}");
    assert!(!exchange["assistant_message"]["content"].as_str().unwrap_or_default().is_empty(), "{exchange}");
}

#[test]
fn the_readme_is_short_and_reaches_every_page_of_the_docs() {
    let readme = include_str!("../../README.md");
    assert!(readme.len() < 8 << 10, "the README is {} bytes: a newcomer's page stays under 8 KiB", readme.len());
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for entry in std::fs::read_dir(&docs).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(readme.contains(&format!("](docs/{name})")), "the README does not link docs/{name}");
    }
    // Links between the pages lead to pages that exist.
    for entry in std::fs::read_dir(&docs).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for link in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            let file = link.split('#').next().unwrap();
            if file.ends_with(".md") && !file.contains("://") {
                assert!(docs.join(file).exists(), "a link to {file}, which is not in docs/");
            }
        }
    }
}
