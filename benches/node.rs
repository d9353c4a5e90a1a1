//! Benchmark: the same API calls for an instance in process (this host's engine, as a one-box
//! server runs) and behind an `ocaas node` process on loopback (the pinned-TLS HTTP/2 link a
//! multi-host deployment uses), interleaved in one run: `terminal/exec` of `true`, the first
//! answer delta of a chat turn, a 16 MiB upload; then the node process's resident memory with
//! 0, 1 and 3 instances. `cargo bench --bench node` (`OCAAS_BENCH_RUNS`, default 50).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::server::rss_kib;
use common::{Bench, ms, percentile};
use futures_util::StreamExt;
use ocaas::runtime::node::{client::RemoteRuntime, credential_hash, new_credential, tls};

/// `ocaas node` as its own process, already joined (its credential's hash written for it).
struct NodeProcess {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start_node() -> anyhow::Result<(NodeProcess, RemoteRuntime)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("ocaas-bench-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let credential = new_credential();
    std::fs::write(dir.join("credential.sha256"), ocaas::secrets::hex(&credential_hash(&credential)))?;
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_ocaas"))
        .args(["node", "--dir", dir.to_str().unwrap(), "--listen", &format!("127.0.0.1:{port}")])
        .env("OCAAS_LOG", "warn")
        .spawn()?;
    let node = NodeProcess { child, dir: dir.clone() };
    let cert = dir.join("node.crt.der");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cert.exists() || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "ocaas node did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pin = tls::fingerprint(&std::fs::read(&cert)?.into());
    Ok((node, RemoteRuntime::new(format!("127.0.0.1:{port}"), &pin, credential)?))
}

async fn exec(bench: &Bench, id: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let url = format!("{}/api/instances/{id}/terminal/exec", bench.base);
    let body: serde_json::Value =
        bench.http.post(url).bearer_auth(&bench.key).json(&serde_json::json!({"command": "true"})).send().await?.json().await?;
    anyhow::ensure!(body["exit_code"] == 0, "exec failed: {body}");
    Ok(t0.elapsed())
}

async fn first_delta(bench: &Bench, id: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let url = format!("{}/api/instances/{id}/chat/stream", bench.base);
    let response = bench.http.post(url).bearer_auth(&bench.key).json(&serde_json::json!({"message": "/echo a b c d"})).send().await?;
    let mut body = response.bytes_stream();
    let (mut seen, mut first) = (String::new(), None);
    while let Some(chunk) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk?));
        if first.is_none() && seen.contains("\"delta\"") {
            first = Some(t0.elapsed());
        }
        if seen.contains("event: complete") {
            break;
        }
    }
    first.ok_or_else(|| anyhow::anyhow!("no delta: {seen:.300}"))
}

async fn upload(bench: &Bench, id: &str, data: &[u8]) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let part = reqwest::multipart::Part::bytes(data.to_vec()).file_name("bench.bin");
    let form = reqwest::multipart::Form::new().text("targetDir", "/workspace").part("file", part);
    let response = bench.http.post(format!("{}/api/instances/{id}/files/upload", bench.base)).bearer_auth(&bench.key).multipart(form).send().await?;
    anyhow::ensure!(response.status().is_success(), "upload failed: {}", response.text().await?);
    Ok(t0.elapsed())
}

fn row(label: &str, local: &[Duration], node: &[Duration]) {
    let (l50, n50) = (ms(percentile(local, 0.5)), ms(percentile(node, 0.5)));
    println!("{label:<28} {l50:>9.1} {:>9.1} {n50:>9.1} {:>9.1}   {:+.1} ms", ms(percentile(local, 0.95)), ms(percentile(node, 0.95)), n50 - l50);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("OCAAS_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let (node, remote) = start_node().await?;
    let node_pid = node.child.id();
    let idle_kib = rss_kib(node_pid)?;
    let local = Bench::start(4).await?;
    let far = Bench::start_on(4, Arc::new(remote), |_| {}).await?;
    let (local_id, _) = local.ready_instance().await?;
    let (far_id, _) = far.ready_instance().await?;
    let one_kib = rss_kib(node_pid)?;

    let (mut execs, mut deltas, mut uploads) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    let data = vec![7u8; 16 << 20];
    for run in 0..runs {
        // Interleaved, so that whatever else the machine does weighs on both alike.
        execs[0].push(exec(&local, &local_id).await?);
        execs[1].push(exec(&far, &far_id).await?);
        if run % 2 == 0 {
            deltas[0].push(first_delta(&local, &local_id).await?);
            deltas[1].push(first_delta(&far, &far_id).await?);
        }
        if run % 10 == 0 {
            uploads[0].push(upload(&local, &local_id, &data).await?);
            uploads[1].push(upload(&far, &far_id, &data).await?);
        }
    }
    println!("in process (this host's engine) beside an `ocaas node` process on loopback, {runs} runs");
    println!("{:<28} {:>9} {:>9} {:>9} {:>9}   node - in process", "", "p50 ms", "p95 ms", "node p50", "node p95");
    row("exec `true`", &execs[0], &execs[1]);
    row("first chat delta", &deltas[0], &deltas[1]);
    row("upload 16 MiB (multipart)", &uploads[0], &uploads[1]);

    for _ in 0..2 {
        far.ready_instance().await?;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let three_kib = rss_kib(node_pid)?;
    println!(
        "ocaas node resident memory: {:.1} MiB idle, {:.1} MiB with 1 instance, {:.1} MiB with 3",
        idle_kib as f64 / 1024.0,
        one_kib as f64 / 1024.0,
        three_kib as f64 / 1024.0
    );
    println!("  per managed instance: {:.0} KiB (from 1 to 3)", three_kib.saturating_sub(one_kib) as f64 / 2.0);
    for bench in [&local, &far] {
        let list: serde_json::Value = bench.http.get(format!("{}/api/instances", bench.base)).bearer_auth(&bench.key).send().await?.json().await?;
        for instance in list.as_array().cloned().unwrap_or_default() {
            bench.delete(instance["id"].as_str().unwrap_or_default()).await?;
        }
    }
    far.finish().await?;
    local.finish().await?;
    drop(node);
    Ok(())
}
