//! Noisy neighbour: one tenant runs a fork bomb and a memory hog in its sandbox (both bounded by
//! the sandbox's pids and memory limits) while another user loops `GET /api/instances` and
//! `terminal/exec true` on their own instance. Prints the other user's p50/p95/p99 before and
//! during the attack side by side, and how many of their requests failed. Loopback and the
//! project's own containers only; the attack ends at its `timeout_ms`.
//! `cargo bench --bench isolation` (`OCAAS_BENCH_SECS`, default 20).

mod common;

use std::time::{Duration, Instant};

use common::{Bench, ms, percentile};
use serde_json::json;

/// (GET /api/instances, exec true) latencies of the quiet user until `deadline`, and failures.
async fn measure(bench: &Bench, instance: &str, deadline: Instant) -> (Vec<Duration>, Vec<Duration>, usize) {
    let (mut list, mut exec, mut failed) = (Vec::new(), Vec::new(), 0);
    let exec_url = format!("{}/api/instances/{instance}/terminal/exec", bench.base);
    while Instant::now() < deadline {
        let started = Instant::now();
        match bench.http.get(format!("{}/api/instances", bench.base)).bearer_auth(&bench.key).send().await {
            Ok(r) if r.status().is_success() => list.push(started.elapsed()),
            _ => failed += 1,
        }
        if list.len() % 10 == 0 {
            let started = Instant::now();
            match bench.http.post(&exec_url).bearer_auth(&bench.key).json(&json!({"command": "true"})).send().await {
                Ok(r) if r.status().is_success() => exec.push(started.elapsed()),
                _ => failed += 1,
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (list, exec, failed)
}

fn line(name: &str, quiet: &[Duration], loud: &[Duration]) {
    let fmt = |s: &[Duration]| {
        if s.is_empty() {
            return "no samples".to_owned();
        }
        format!("{:.1} / {:.1} / {:.1}", ms(percentile(s, 0.5)), ms(percentile(s, 0.95)), ms(percentile(s, 0.99)))
    };
    let ratio = if quiet.is_empty() || loud.is_empty() { f64::NAN } else { ms(percentile(loud, 0.95)) / ms(percentile(quiet, 0.95)) };
    println!("{name:<22} {:>8} {:>26} {:>26} {:>10.2}x", format!("{}/{}", quiet.len(), loud.len()), fmt(quiet), fmt(loud), ratio);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("OCAAS_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let bench = Bench::start_with(5, |s| s.instances.limits.memory_bytes = 512 << 20).await?;
    let (quiet_instance, _) = bench.ready_instance().await?;

    // The attacker: another user with an instance of their own.
    let (attacker_key, noisy) = bench.other_tenant("noisy@example.com").await?;

    println!("isolation: {secs} s quiet, then {secs} s with a fork bomb and a memory hog in another tenant's sandbox");
    let quiet = measure(&bench, &quiet_instance, Instant::now() + Duration::from_secs(secs)).await;
    let url = format!("{}/api/instances/{noisy}/terminal/exec", bench.base);
    let timeout_ms = secs * 1000;
    let attacks = [
        "bomb() { bomb | bomb & }; bomb",
        "python3 -c 'a=[]\nwhile True: a.append(bytearray(8<<20))'",
        "while true; do python3 -c 'a=[]\nwhile True: a.append(bytearray(8<<20))'; done",
    ];
    let mut tasks = Vec::new();
    for command in attacks {
        let (http, url, key) = (bench.http.clone(), url.clone(), attacker_key.clone());
        tasks.push(tokio::spawn(async move {
            let _ = http.post(url).bearer_auth(key).json(&json!({"command": command, "timeout_ms": timeout_ms})).send().await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let loud = measure(&bench, &quiet_instance, Instant::now() + Duration::from_secs(secs)).await;
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }
    println!("{:<22} {:>8} {:>26} {:>26} {:>11}", "request", "count", "quiet p50/p95/p99 ms", "attack p50/p95/p99 ms", "p95 ratio");
    line("GET /api/instances", &quiet.0, &loud.0);
    line("exec true (own sandbox)", &quiet.1, &loud.1);
    println!("failed requests of the quiet user: quiet {}, during the attack {}", quiet.2, loud.2);
    bench.delete(&quiet_instance).await?;
    bench.delete_as(&noisy, &attacker_key).await?;
    bench.finish().await
}
