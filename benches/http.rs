//! Benchmark: authenticated requests against the server's cheapest answers, measured with
//! `wrk` (Debian's package) side by side in one run (`cargo bench --bench http`):
//! `GET /api/instances` and `GET /api/account` with an API key vs `GET /healthz` and the
//! unauthenticated `GET /api`, at 32 and at 4 connections (goal: authenticated ≥ 0.5× the
//! reference). `OCAAS_BENCH_SECS` per run (default 10).

mod common;

use std::process::Command;

use common::Bench;

/// Requests per second `wrk` measured.
fn wrk(url: &str, connections: u32, secs: u64, key: Option<&str>) -> anyhow::Result<f64> {
    let mut command = Command::new("wrk");
    command.args(["-t2", &format!("-c{connections}"), &format!("-d{secs}s"), "--latency"]);
    if let Some(key) = key {
        command.args(["-H", &format!("Authorization: Bearer {key}")]);
    }
    let output = command.arg(url).output().map_err(|e| anyhow::anyhow!("wrk is needed (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(!text.contains("Non-2xx"), "non-2xx answers from {url}: {text}");
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no Requests/sec in wrk's output: {text}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("OCAAS_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let bench = Bench::start(1).await?;
    let url = |path: &str| format!("{}{path}", bench.base);
    println!("wrk, {secs} s per run, 2 threads (machine: {} CPUs)", std::thread::available_parallelism().map_or(0, |n| n.get()));
    println!("{:<36} {:>12} {:>12} {:>8}", "path", "req/s", "reference", "ratio");
    for connections in [32, 4] {
        let health = tokio::task::spawn_blocking({
            let u = url("/healthz");
            move || wrk(&u, connections, secs, None)
        })
        .await??;
        let root = tokio::task::spawn_blocking({
            let u = url("/api");
            move || wrk(&u, connections, secs, None)
        })
        .await??;
        for (path, reference, label) in [("/api/instances", health, "/healthz"), ("/api/account", root, "/api")] {
            let (u, key) = (url(path), bench.key.clone());
            let rate = tokio::task::spawn_blocking(move || wrk(&u, connections, secs, Some(&key))).await??;
            println!("{:<36} {rate:>12.0} {reference:>12.0} {:>7.2}x", format!("GET {path}, {connections} conns (vs {label})"), rate / reference);
        }
    }
    bench.finish().await
}
