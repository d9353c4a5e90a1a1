//! Benchmark: the server's memory per managed instance (`cargo bench --bench memory`). A
//! separate `ocaas serve` process manages `OCAAS_BENCH_INSTANCES` (default 30) instances, then
//! `OCAAS_BENCH_SUBSCRIBERS` (default 2,000) idle `chat/events` subscribers spread over them;
//! its RSS (from /proc) is read idle, with the instances, and with the subscribers.
//! Goal: ≤ 1 MB of server RSS per managed instance.

mod common;

use std::process::{Child, Command};
use std::time::Duration;

use common::Bench;

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 =
        status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|n| n.parse().ok()).unwrap_or(0.0);
    kib / 1024.0
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let instances: usize = std::env::var("OCAAS_BENCH_INSTANCES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let subscribers: usize = std::env::var("OCAAS_BENCH_SUBSCRIBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let bench = Bench::start((instances + 1) as u32).await?;
    // The database and the user come from `Bench`; the measured server is its own process.
    bench.state.shutdown.cancel();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let data_dir = std::env::temp_dir().join(format!("ocaas-bench-memory-{}", std::process::id()));
    std::fs::create_dir_all(&data_dir)?;
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_ocaas"))
            .env("DATABASE_URL", &bench.database_url)
            .env("OCAAS_DATA_DIR", &data_dir)
            .env("OCAAS_SANDBOX_IMAGE", &bench.image)
            .env("OCAAS_MAX_INSTANCES", (instances + 1).to_string())
            .env("OCAAS_USER_MAX_STREAMS", (subscribers + 10).to_string())
            .env("OCAAS_INSTANCE_DISK", "1g")
            .env("OCAAS_BROKER_PORT", "18790-18799")
            .env("OCAAS_LOG", "warn")
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .spawn()?,
    );
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    while !matches!(http.get(format!("{base}/readyz")).send().await, Ok(r) if r.status().is_success()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = rss_mib(pid);

    let mut ids = Vec::new();
    for _ in 0..instances {
        let created: serde_json::Value = http.post(format!("{base}/api/instances")).bearer_auth(&bench.key).send().await?.json().await?;
        ids.push(created["id"].as_str().ok_or_else(|| anyhow::anyhow!("create failed: {created}"))?.to_owned());
    }
    for id in &ids {
        common::wait_ready(&http, &base, &bench.key, id).await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let managed = rss_mib(pid);

    let mut streams = Vec::new();
    let mut sessions = Vec::new();
    for id in &ids {
        let session: serde_json::Value = http
            .post(format!("{base}/api/instances/{id}/chat/sessions"))
            .bearer_auth(&bench.key)
            .json(&serde_json::json!({}))
            .send()
            .await?
            .json()
            .await?;
        sessions.push((id.clone(), session["id"].as_str().unwrap_or_default().to_owned()));
    }
    for n in 0..subscribers {
        let (id, session) = &sessions[n % sessions.len()];
        let response = http.get(format!("{base}/api/instances/{id}/chat/events?session_id={session}")).bearer_auth(&bench.key).send().await?;
        anyhow::ensure!(response.status().is_success(), "subscriber {n}: {}", response.status());
        streams.push(response);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let subscribed = rss_mib(pid);

    println!("server RSS (MiB): idle {idle:.1}, with {instances} instances {managed:.1}, plus {subscribers} idle SSE subscribers {subscribed:.1}");
    println!(
        "per managed instance: {:.3} MiB (goal ≤ 1 MB); per subscriber: {:.1} KiB; everything per instance: {:.3} MiB",
        (managed - idle) / instances as f64,
        (subscribed - managed) * 1024.0 / subscribers as f64,
        (subscribed - idle) / instances as f64
    );
    drop(streams);
    for id in &ids {
        http.delete(format!("{base}/api/instances/{id}")).bearer_auth(&bench.key).send().await?;
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
