//! Benchmark: create → `ready` latency of instances through ocaas's HTTP API, side by side with
//! a plain `docker run` of the same image until its gateway answers `/readyz`, on the same
//! engine in the same run. Prints p50/p95 and the ratio. `cargo bench --bench instance_ready`
//! (`OCAAS_BENCH_RUNS`, default 10). Needs Docker and PostgreSQL's binaries, like the tests.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ocaas::app::{self, AppState};
use ocaas::auth::service;
use ocaas::config::{InstanceSettings, RegistrationMode, Settings};
use ocaas::db::{self, embedded::EmbeddedPostgres};
use ocaas::runtime::{DockerRuntime, Limits, image};

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

async fn wait_ready(http: &reqwest::Client, url: &str) {
    loop {
        if let Ok(r) = http.get(url).timeout(Duration::from_secs(1)).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("OCAAS_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/offline/build.sh");
    let image = image::resolve(None, std::path::Path::new(script))?;

    let cluster = EmbeddedPostgres::new(&std::env::temp_dir().join("ocaas-bench-pg"))?;
    let started = cluster.ensure_running().await?;
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    db::create_database_if_missing(&cluster.connect_options("postgres"), &name).await?;
    let pool = db::pool(cluster.connect_options(&name)).await?;
    db::migrate(&pool).await?;

    let settings = Settings {
        bind: "127.0.0.1:0".parse()?,
        public_url: None,
        trust_proxy: false,
        registration: RegistrationMode::Closed,
        max_body_bytes: 1 << 20,
        session_hours: 1,
        instances: InstanceSettings {
            image: image.clone(),
            max_instances: 1000,
            limits: Limits { memory_bytes: 1 << 30, nano_cpus: 1_000_000_000, pids: 512 },
            ready_timeout: Duration::from_secs(120),
            reconcile_interval: Duration::from_secs(30),
            llm_env: vec![],
            max_read_bytes: 1 << 20,
            max_upload_bytes: 512 << 20,
            exec_max_output: 1 << 20,
        },
    };
    let state = AppState::new(pool.clone(), settings, Arc::new(DockerRuntime::connect()?)).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(app::serve(listener, state.clone(), std::future::pending()));
    let user = service::create_user(&pool, "bench@example.com", "bench passphrase", None).await?;
    service::grant_subscription(&pool, "bench@example.com", runs as u32 + 1, None).await?;
    let key = service::create_api_key(&pool, user.id, None, None).await?.key;
    let http = reqwest::Client::new();

    let mut ocaas_samples = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let created: serde_json::Value = http.post(format!("{base}/api/instances")).bearer_auth(&key).send().await?.json().await?;
        let id = created["id"].as_str().expect("an id").to_owned();
        loop {
            let body: serde_json::Value = http.get(format!("{base}/api/instances/{id}")).bearer_auth(&key).send().await?.json().await?;
            match body["status"].as_str() {
                Some("ready") => break,
                Some("error") => anyhow::bail!("instance failed: {body}"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        ocaas_samples.push(t0.elapsed());
        http.delete(format!("{base}/api/instances/{id}")).bearer_auth(&key).send().await?;
    }

    let mut docker_samples = Vec::new();
    for i in 0..runs {
        let name = format!("ocaas-bench-{}-{i}", std::process::id());
        let t0 = Instant::now();
        docker(&["run", "-d", "--name", &name, "--network", "ocaas-sandboxes", "--cap-drop", "ALL", "-e", "OPENCLAW_GATEWAY_TOKEN=bench", &image]);
        let ip = docker(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"ocaas-sandboxes\").IPAddress}}", &name]);
        wait_ready(&http, &format!("http://{ip}:18789/readyz")).await;
        docker_samples.push(t0.elapsed());
        docker(&["rm", "-f", &name]);
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("create → ready over {runs} instances (image {image})");
    println!("{:<28} {:>10} {:>10}", "", "p50 ms", "p95 ms");
    for (label, samples) in [("ocaas API (POST → ready)", &ocaas_samples), ("docker run → /readyz 200", &docker_samples)] {
        println!("{label:<28} {:>10.0} {:>10.0}", ms(percentile(samples, 0.5)), ms(percentile(samples, 0.95)));
    }
    println!(
        "ratio ocaas / docker run: p50 {:.2}x, p95 {:.2}x",
        ms(percentile(&ocaas_samples, 0.5)) / ms(percentile(&docker_samples, 0.5)),
        ms(percentile(&ocaas_samples, 0.95)) / ms(percentile(&docker_samples, 0.95))
    );

    state.shutdown.cancel();
    pool.close().await;
    if started {
        cluster.stop().await?;
    }
    Ok(())
}
