//! Benchmark, all side by side in one run (`cargo bench --bench idle_pool`):
//! (a) create → `ready` from the warm pool vs a cold create vs a plain `docker run` of the same
//!     image until its gateway answers `/readyz` (goal: pool ≤ 1/20 of cold; cold ≤ 1.1× docker run);
//! (b) resume → first chat delta (a chat stream on a paused instance, which wakes it) vs the
//!     same on a running instance (goal: p50 ≤ 150 ms);
//! (c) host memory and CPU of N instances running, paused and stopped (`OCAAS_BENCH_INSTANCES`,
//!     default 20). `OCAAS_BENCH_RUNS` (default 5) samples per create path, 3× that for (b).

mod common;

use std::time::{Duration, Instant};

use common::{Bench, docker, ms, percentile};

fn line(label: &str, samples: &[Duration]) {
    println!("{label:<38} {:>10.1} {:>10.1}", ms(percentile(samples, 0.5)), ms(percentile(samples, 0.95)));
}

/// `MemAvailable` of the host, in MiB.
fn host_available_mib() -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

/// Memory (MiB) and CPU (%) the engine reports for the containers, summed.
fn containers_usage(names: &[String]) -> (f64, f64) {
    let mut args = vec!["stats", "--no-stream", "--format", "{{.MemUsage}} {{.CPUPerc}}"];
    args.extend(names.iter().map(String::as_str));
    let (mut mem, mut cpu) = (0.0, 0.0);
    for row in docker(&args).lines() {
        let mut parts = row.split_whitespace();
        let used = parts.next().unwrap_or("0MiB");
        let factor = if used.ends_with("GiB") {
            1024.0
        } else if used.ends_with("KiB") {
            1.0 / 1024.0
        } else {
            1.0
        };
        mem += used.trim_end_matches(char::is_alphabetic).parse::<f64>().unwrap_or(0.0) * factor;
        cpu += parts.last().unwrap_or("0%").trim_end_matches('%').parse::<f64>().unwrap_or(0.0);
    }
    (mem, cpu)
}

async fn post(bench: &Bench, id: &str, action: &str) -> anyhow::Result<()> {
    let response = bench.http.post(format!("{}/api/instances/{id}/{action}", bench.base)).bearer_auth(&bench.key).send().await?;
    anyhow::ensure!(response.status().is_success(), "{action} answered {}", response.status());
    Ok(())
}

/// Time to the first answer delta of a chat stream; the stream is read to its end, so the
/// session is free for the next turn.
async fn first_delta(bench: &Bench, id: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let url = format!("{}/api/instances/{id}/chat/stream", bench.base);
    let response = bench.http.post(url).bearer_auth(&bench.key).json(&serde_json::json!({"message": "/echo wake"})).send().await?;
    let mut body = futures_util::StreamExt::boxed(response.bytes_stream());
    let (mut seen, mut first) = (String::new(), None);
    while let Some(chunk) = futures_util::StreamExt::next(&mut body).await {
        seen.push_str(&String::from_utf8_lossy(&chunk?));
        if first.is_none() && seen.contains("\"delta\"") {
            first = Some(t0.elapsed());
        }
    }
    first.ok_or_else(|| anyhow::anyhow!("no delta in {seen:.400}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("OCAAS_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let fleet: usize = std::env::var("OCAAS_BENCH_INSTANCES").ok().and_then(|v| v.parse().ok()).unwrap_or(20);

    // (a) Cold creates and plain `docker run`s, interleaved so both see the same load.
    let cold_server = Bench::start((runs + fleet + 2) as u32).await?;
    let (image, http) = (cold_server.image.clone(), cold_server.http.clone());
    let (mut cold, mut plain) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let t0 = Instant::now();
        let (id, _) = cold_server.ready_instance().await?;
        cold.push(t0.elapsed());
        cold_server.delete(&id).await?;
        plain.push(common::docker_run_to_ready(&http, &image, i).await);
    }

    // (b) Wake on use: a chat stream on a paused instance vs on a running one.
    let (id, _) = cold_server.ready_instance().await?;
    let (mut awake, mut resumed) = (Vec::new(), Vec::new());
    for _ in 0..runs * 3 {
        awake.push(first_delta(&cold_server, &id).await?);
        post(&cold_server, &id, "pause").await?;
        resumed.push(first_delta(&cold_server, &id).await?);
    }
    cold_server.delete(&id).await?;

    // (c) The fleet running, paused, stopped.
    let before = host_available_mib();
    let mut fleet_ids = Vec::new();
    for _ in 0..fleet {
        fleet_ids.push(cold_server.ready_instance().await?);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let names: Vec<String> = fleet_ids.iter().map(|(_, name)| name.clone()).collect();
    let running = (containers_usage(&names), before - host_available_mib());
    for (id, _) in &fleet_ids {
        post(&cold_server, id, "pause").await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let paused = (containers_usage(&names), before - host_available_mib());
    for (id, _) in &fleet_ids {
        post(&cold_server, id, "shutdown").await?;
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    let stopped = (containers_usage(&names), before - host_available_mib());
    for (id, _) in &fleet_ids {
        cold_server.delete(id).await?;
    }
    cold_server.finish().await?;

    // (a) again, from a warm pool of `runs` sandboxes.
    let pool_server = Bench::start_with((runs + 1) as u32, |settings| settings.idle.warm_pool = runs as u32).await?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM instances WHERE status = 'pooled'").fetch_one(&pool_server.state.db).await? < runs as i64
    {
        anyhow::ensure!(Instant::now() < deadline, "the warm pool did not fill");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut pooled = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let (id, _) = pool_server.ready_instance().await?;
        pooled.push(t0.elapsed());
        pool_server.delete(&id).await?;
    }
    pool_server.finish().await?;

    println!("(a) create → ready, {runs} each (image {image})");
    println!("{:<38} {:>10} {:>10}", "", "p50 ms", "p95 ms");
    line("ocaas, from the warm pool", &pooled);
    line("ocaas, cold (POST → ready)", &cold);
    line("docker run → /readyz 200", &plain);
    let p50 = |s: &[Duration]| ms(percentile(s, 0.5));
    println!(
        "pool / cold p50: {:.3} (goal ≤ 0.05); cold / docker run p50: {:.2}x (goal ≤ 1.1x)",
        p50(&pooled) / p50(&cold),
        p50(&cold) / p50(&plain)
    );
    println!("(b) chat stream → first delta, {} each", runs * 3);
    line("on a running instance", &awake);
    line("on a paused instance (resume + turn)", &resumed);
    println!("resume adds p50 {:.1} ms (goal: first delta ≤ 150 ms p50: {:.1} ms)", p50(&resumed) - p50(&awake), p50(&resumed));
    println!("(c) {fleet} instances                 containers MiB  CPU %   host MiB used");
    for (label, ((mem, cpu), host)) in [("running", running), ("paused", paused), ("stopped", stopped)] {
        println!("{label:<38} {mem:>10.0} {cpu:>6.1} {host:>12.0}");
    }
    Ok(())
}
