//! Soak benchmark: a well-behaved user's workload — `OCAAS_BENCH_STREAMS` (200) concurrent chat
//! SSE turns, 50 `terminal/exec` a second and 20 multipart uploads a second across 5 instances —
//! for `OCAAS_BENCH_SECS` (60) seconds, once quiet and once at the same time as a hostile mix:
//! 100 wrong sign-ins a second, 500 connections that never finish their headers (reopened when
//! closed), and another tenant whose gateway floods 100 MB answers. Prints p50/p95/p99 of each
//! request kind side by side (hostile / quiet), 5xx and transport errors of the well-behaved
//! user, and the peak RSS and CPU time of the server, a separate `ocaas serve` process. All traffic goes to loopback; every loop ends at its deadline.
//! `cargo bench --bench soak`; `OCAAS_BENCH_EXEC_PER_SEC` and `OCAAS_BENCH_UPLOADS_PER_SEC` change the rates.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::server::{ServeProcess, cpu_secs, rss_kib};
use common::{Bench, ms, percentile};
use futures_util::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

#[derive(Default)]
struct Tally {
    samples: Mutex<Vec<(&'static str, Duration)>>,
    server_errors: AtomicU64,
    transport_errors: AtomicU64,
    other_errors: AtomicU64,
    /// Failed responses by (request kind, status), to tell overload (503) from faults.
    by_status: Mutex<std::collections::BTreeMap<(&'static str, u16, String), u64>>,
}

impl Tally {
    async fn record(&self, kind: &'static str, started: Instant, outcome: Result<(reqwest::StatusCode, String), ()>) {
        match outcome {
            Ok((status, _)) if status.is_success() => self.samples.lock().await.push((kind, started.elapsed())),
            Ok((status, code)) => {
                let counter = if status.is_server_error() { &self.server_errors } else { &self.other_errors };
                counter.fetch_add(1, Ordering::Relaxed);
                *self.by_status.lock().await.entry((kind, status.as_u16(), code)).or_default() += 1;
            }
            Err(()) => {
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn percentiles(&self, kind: &str) -> Option<[Duration; 3]> {
        let samples: Vec<Duration> = self.samples.lock().await.iter().filter(|(k, _)| *k == kind).map(|(_, d)| *d).collect();
        (!samples.is_empty()).then(|| [percentile(&samples, 0.5), percentile(&samples, 0.95), percentile(&samples, 0.99)])
    }

    async fn count(&self, kind: &str) -> usize {
        self.samples.lock().await.iter().filter(|(k, _)| *k == kind).count()
    }
}

/// One chat turn over SSE, read to `complete`.
/// The status, and for a failure the API's error code.
async fn outcome(response: reqwest::Response) -> (reqwest::StatusCode, String) {
    let status = response.status();
    if status.is_success() {
        return (status, String::new());
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    (status, body["error"].as_str().unwrap_or("?").to_owned())
}

async fn chat_turn(http: &reqwest::Client, url: &str, key: &str, session: &str) -> Result<(reqwest::StatusCode, String), ()> {
    let body = json!({"session_id": session, "message": "/echo the quick brown fox jumps over the lazy dog"});
    let response = http.post(url).bearer_auth(key).json(&body).send().await.map_err(|_| ())?;
    let status = response.status();
    if !status.is_success() {
        return Ok(outcome(response).await);
    }
    let mut stream = response.bytes_stream();
    let mut tail = String::new();
    while let Some(chunk) = stream.next().await {
        tail.push_str(&String::from_utf8_lossy(&chunk.map_err(|_| ())?));
        if tail.contains("event: complete") {
            return Ok((status, String::new()));
        }
        let keep = tail.len().saturating_sub(64);
        tail.drain(..keep);
    }
    Err(())
}

/// The well-behaved user's workload until `deadline`.
async fn workload(bench: &Bench, instances: &[String], sessions: &[(String, String)], deadline: Instant) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for (instance, session) in sessions {
        let (http, key, tally) = (bench.http.clone(), bench.key.clone(), tally.clone());
        let url = format!("{}/api/instances/{instance}/chat/stream", bench.base);
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                let outcome = chat_turn(&http, &url, &key, &session).await;
                tally.record("chat turn (SSE)", started, outcome).await;
            }
        }));
    }
    let rate = |name: &str, default: u64| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok()).filter(|n| *n > 0).unwrap_or(default);
    let (exec_every, upload_every) = (
        Duration::from_secs(1) / rate("OCAAS_BENCH_EXEC_PER_SEC", 50) as u32,
        Duration::from_secs(1) / rate("OCAAS_BENCH_UPLOADS_PER_SEC", 20) as u32,
    );
    for (kind, every, per_instance) in [("exec true", exec_every, 0), ("upload 64 KiB", upload_every, 1)] {
        let (http, key, tally, base) = (bench.http.clone(), bench.key.clone(), tally.clone(), bench.base.clone());
        let instances = instances.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            let mut n = 0usize;
            while Instant::now() < deadline {
                ticker.tick().await;
                n += 1;
                let (http, key, tally) = (http.clone(), key.clone(), tally.clone());
                let instance = instances[n % instances.len()].clone();
                let base = base.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let outcome = if per_instance == 0 {
                        let url = format!("{base}/api/instances/{instance}/terminal/exec");
                        http.post(url).bearer_auth(&key).json(&json!({"command": "true"})).send().await.map_err(|_| ())
                    } else {
                        let part = reqwest::multipart::Part::bytes(vec![7u8; 64 << 10]).file_name(format!("soak-{n}.bin"));
                        let form = reqwest::multipart::Form::new().text("targetDir", "/workspace/soak").part("file", part);
                        let url = format!("{base}/api/instances/{instance}/files/upload");
                        http.post(url).bearer_auth(&key).multipart(form).send().await.map_err(|_| ())
                    };
                    let outcome = match outcome {
                        Ok(response) => Ok(self::outcome(response).await),
                        Err(()) => Err(()),
                    };
                    tally.record(kind, started, outcome).await;
                });
            }
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    // Let the last spawned requests finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    tally
}

/// The hostile mix until `stop` is set.
fn hostile(bench: &Bench, flooder: (String, String), stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    let (http, base) = (bench.http.clone(), bench.base.clone());
    let stop_logins = stop.clone();
    tasks.push(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_millis(10));
        while !stop_logins.load(Ordering::Relaxed) {
            ticker.tick().await;
            let (http, url) = (http.clone(), format!("{base}/api/account/login"));
            tokio::spawn(async move {
                let _ = http.post(url).json(&json!({"email": "victim@example.com", "password": "guess guess guess"})).send().await;
            });
        }
    }));
    let address = bench.base.trim_start_matches("http://").to_owned();
    for _ in 0..500 {
        let (address, stop) = (address.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&address).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let _ = stream.write_all(b"GET /api HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
                // Held until the server closes it (header timeout) or the run ends.
                let mut buffer = [0u8; 64];
                let _ = tokio::time::timeout(Duration::from_secs(30), tokio::io::AsyncReadExt::read(&mut stream, &mut buffer)).await;
            }
        }));
    }
    let (http, base) = (bench.http.clone(), bench.base.clone());
    tasks.push(tokio::spawn(async move {
        let (instance, key) = flooder;
        while !stop.load(Ordering::Relaxed) {
            let url = format!("{base}/api/instances/{instance}/chat/stream");
            if let Ok(response) = http.post(url).bearer_auth(&key).json(&json!({"message": "/flood 100"})).send().await {
                let mut body = response.bytes_stream();
                while let Some(Ok(_)) = body.next().await {}
            }
        }
    }));
    tasks
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("OCAAS_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(60);
    let streams: usize = std::env::var("OCAAS_BENCH_STREAMS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut bench = Bench::start(10).await?;
    // The measured server is its own process (its RSS and CPU apart from the load generator's),
    // with the per-user limits raised: the well-behaved user runs more at once than the defaults allow.
    let server = ServeProcess::start(
        &bench,
        &[
            ("OCAAS_MAX_INSTANCES", "10".into()),
            ("OCAAS_USER_MAX_STREAMS", (streams + 16).to_string()),
            ("OCAAS_USER_MAX_EXEC", "64".into()),
            ("OCAAS_EXEC_MAX_OUTPUT", (64 << 10).to_string()),
            ("OCAAS_INSTANCE_MEMORY", "1g".into()),
            ("OCAAS_RECONCILE_SECS", "30".into()),
        ],
    )
    .await?;
    bench.base = server.base.clone();
    let mut instances = Vec::new();
    for _ in 0..5 {
        instances.push(bench.ready_instance().await?.0);
    }
    let mut sessions = Vec::new();
    for n in 0..streams {
        let instance = instances[n % instances.len()].clone();
        let url = format!("{}/api/instances/{instance}/chat/sessions", bench.base);
        let created: serde_json::Value = bench.http.post(url).bearer_auth(&bench.key).send().await?.json().await?;
        sessions.push((instance, created["id"].as_str().unwrap_or_default().to_owned()));
    }
    // The other tenant, whose agent floods its answers.
    let (other_key, flood_instance) = bench.other_tenant("flood@example.com").await?;

    let (peak, pid) = (Arc::new(AtomicU64::new(0)), server.pid());
    let sampler_peak = peak.clone();
    tokio::spawn(async move {
        loop {
            sampler_peak.fetch_max(rss_kib(pid).unwrap_or(0), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let per_sec = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.to_owned());
    println!(
        "soak: {secs} s quiet, then {secs} s with the hostile mix ({streams} SSE streams, {} exec/s, {} uploads/s, 5 instances)",
        per_sec("OCAAS_BENCH_EXEC_PER_SEC", "50"),
        per_sec("OCAAS_BENCH_UPLOADS_PER_SEC", "20")
    );
    let (cpu_before, own_before) = (cpu_secs(pid), cpu_secs(std::process::id()));
    let quiet = workload(&bench, &instances, &sessions, Instant::now() + Duration::from_secs(secs)).await;
    let quiet_peak = peak.swap(0, Ordering::Relaxed);
    let (cpu_quiet, own_quiet) = (cpu_secs(pid) - cpu_before, cpu_secs(std::process::id()) - own_before);
    let stop = Arc::new(AtomicBool::new(false));
    let attackers = hostile(&bench, (flood_instance.clone(), other_key.clone()), stop.clone());
    let (cpu_before, own_before) = (cpu_secs(pid), cpu_secs(std::process::id()));
    let loud = workload(&bench, &instances, &sessions, Instant::now() + Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let loud_peak = peak.load(Ordering::Relaxed);
    let (cpu_loud, own_loud) = (cpu_secs(pid) - cpu_before, cpu_secs(std::process::id()) - own_before);
    for task in attackers {
        task.abort();
    }

    println!("{:<18} {:>8} {:>30} {:>30} {:>16}", "request", "count", "quiet p50/p95/p99 ms", "hostile p50/p95/p99 ms", "p95 ratio");
    for kind in ["chat turn (SSE)", "exec true", "upload 64 KiB"] {
        let (Some(q), Some(l)) = (quiet.percentiles(kind).await, loud.percentiles(kind).await) else {
            println!("{kind:<18} no successful samples");
            continue;
        };
        let fmt = |p: [Duration; 3]| format!("{:.1} / {:.1} / {:.1}", ms(p[0]), ms(p[1]), ms(p[2]));
        println!(
            "{kind:<18} {:>8} {:>30} {:>30} {:>15.2}x",
            format!("{}/{}", quiet.count(kind).await, loud.count(kind).await),
            fmt(q),
            fmt(l),
            ms(l[1]) / ms(q[1]).max(0.001)
        );
    }
    for (name, tally) in [("quiet", &quiet), ("hostile", &loud)] {
        println!(
            "{name:<8} well-behaved user: {} 5xx, {} transport errors, {} other non-2xx",
            tally.server_errors.load(Ordering::Relaxed),
            tally.transport_errors.load(Ordering::Relaxed),
            tally.other_errors.load(Ordering::Relaxed)
        );
        for ((kind, status, code), count) in tally.by_status.lock().await.iter() {
            println!("{:<8}   {kind}: {count} x {status} {code}", "");
        }
    }
    println!(
        "peak RSS of the server process: quiet {:.1} MiB, hostile {:.1} MiB (goal < 256 MB)",
        quiet_peak as f64 / 1024.0,
        loud_peak as f64 / 1024.0
    );
    println!(
        "CPU seconds used (of {} available per phase on this machine): server quiet {cpu_quiet:.1}, hostile {cpu_loud:.1}; load generator quiet {own_quiet:.1}, hostile {own_loud:.1}",
        secs * std::thread::available_parallelism().map(|n| n.get() as u64).unwrap_or(1)
    );
    for instance in &instances {
        bench.delete(instance).await?;
    }
    bench.delete_as(&flood_instance, &other_key).await?;
    drop(server);
    bench.finish().await
}
