//! Benchmark: the server's memory per managed instance (`cargo bench --bench memory`). A
//! separate `ocaas serve` process manages `OCAAS_BENCH_INSTANCES` (default 30) instances, then
//! `OCAAS_BENCH_SUBSCRIBERS` (default 2,000) idle `chat/events` subscribers spread over them;
//! its RSS (from /proc) is read idle, with the instances, and with the subscribers.
//! Goal: ≤ 1 MB of server RSS per managed instance.

mod common;

use std::time::Duration;

use common::Bench;
use common::server::ServeProcess;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let instances: usize = std::env::var("OCAAS_BENCH_INSTANCES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let subscribers: usize = std::env::var("OCAAS_BENCH_SUBSCRIBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let bench = Bench::start((instances + 1) as u32).await?;
    // The database and the user come from `Bench`; the measured server is its own process.
    let server = ServeProcess::start(
        &bench,
        &[("OCAAS_MAX_INSTANCES", (instances + 1).to_string()), ("OCAAS_USER_MAX_STREAMS", (subscribers + 10).to_string())],
    )
    .await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = server.rss_mib();

    let mut ids = Vec::new();
    for _ in 0..instances {
        let created: serde_json::Value = http.post(format!("{base}/api/instances")).bearer_auth(&bench.key).send().await?.json().await?;
        ids.push(created["id"].as_str().ok_or_else(|| anyhow::anyhow!("create failed: {created}"))?.to_owned());
    }
    for id in &ids {
        common::wait_ready(&http, &base, &bench.key, id).await?;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let managed = server.rss_mib();

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
    let subscribed = server.rss_mib();

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
    Ok(())
}
