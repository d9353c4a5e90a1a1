#![allow(dead_code)] // each benchmark uses part of this module
//! Shared set-up of the benchmarks: the real app on loopback against a fresh database in a
//! private PostgreSQL cluster, with a user who may create instances.

pub mod server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ocaas::auth::service;
use ocaas::config::{RegistrationMode, Settings};
use ocaas::db::{self, embedded::EmbeddedPostgres};
use ocaas::runtime::{DockerRuntime, image};
use ocaas::serve;
use ocaas::state::AppState;

pub struct Bench {
    pub base: String,
    pub key: String,
    pub image: String,
    pub http: reqwest::Client,
    pub state: AppState,
    /// URL of the bench database, for a separate `ocaas serve` process.
    pub database_url: String,
    cluster: EmbeddedPostgres,
    started_cluster: bool,
}

pub fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker").args(args).output().expect("docker");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

impl Bench {
    pub async fn start(max_instances: u32) -> anyhow::Result<Bench> {
        Self::start_with(max_instances, |_| {}).await
    }

    /// Like `start`, with the settings adjusted by `configure` before the server starts.
    pub async fn start_with(max_instances: u32, configure: impl FnOnce(&mut Settings)) -> anyhow::Result<Bench> {
        Self::start_on(max_instances, Arc::new(DockerRuntime::connect()?), configure).await
    }

    /// Like `start_with`, with sandboxes on `runtime` (e.g. behind an `ocaas node`).
    pub async fn start_on(
        max_instances: u32,
        runtime: Arc<dyn ocaas::runtime::Runtime>,
        configure: impl FnOnce(&mut Settings),
    ) -> anyhow::Result<Bench> {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/offline/build.sh");
        let image = image::resolve(None, std::path::Path::new(script))?;
        let cluster = EmbeddedPostgres::new(&std::env::temp_dir().join("ocaas-bench-pg"))?;
        let started_cluster = cluster.ensure_running().await?;
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        db::create_database_if_missing(&cluster.connect_options("postgres"), &name).await?;
        let pool = db::pool(cluster.connect_options(&name)).await?;
        db::migrate(&pool).await?;
        // The server's own defaults, with room for many instances and a slow reconciler.
        let mut settings = Settings::defaults(&image);
        settings.bind = "127.0.0.1:0".parse()?;
        settings.registration = RegistrationMode::Closed;
        settings.instances.max_instances = 1000;
        settings.instances.limits.memory_bytes = 1 << 30;
        settings.instances.ready_timeout = Duration::from_secs(120);
        settings.instances.reconcile_interval = Duration::from_secs(30);
        settings.instances.broker_ports = (18790, 18799);
        settings.instances.egress.host_ports = vec![settings.instances.broker_ports];
        // A scheduled backup freezes an instance for its copy: not in the middle of a measurement.
        settings.snapshots.backup_interval = Duration::ZERO;
        configure(&mut settings);
        let state = AppState::new(pool.clone(), settings, runtime).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        serve::start_background_tasks(&state);
        tokio::spawn(serve::serve(listener, state.clone(), std::future::pending()));
        let user = service::create_user(&pool, "bench@example.com", "bench passphrase", None).await?;
        service::grant_subscription(&pool, "bench@example.com", max_instances, None).await?;
        let key = service::create_api_key(&pool, user.id, None, None).await?.key;
        let database_url = cluster.url(&name);
        Ok(Bench { base, key, image, http: reqwest::Client::new(), state, database_url, cluster, started_cluster })
    }

    /// Creates an instance and waits until it is ready; returns (id, sandbox name).
    pub async fn ready_instance(&self) -> anyhow::Result<(String, String)> {
        let created: serde_json::Value = self.http.post(format!("{}/api/instances", self.base)).bearer_auth(&self.key).send().await?.json().await?;
        let id = created["id"].as_str().ok_or_else(|| anyhow::anyhow!("no id in {created}"))?.to_owned();
        wait_ready(&self.http, &self.base, &self.key, &id).await?;
        Ok((id, created["sandbox_id"].as_str().unwrap_or_default().to_owned()))
    }

    /// Another user with a plan of one instance and a ready instance: (their key, instance id).
    pub async fn other_tenant(&self, email: &str) -> anyhow::Result<(String, String)> {
        let user = service::create_user(&self.state.db, email, "other tenant passphrase", None).await?;
        service::grant_subscription(&self.state.db, email, 1, None).await?;
        let key = service::create_api_key(&self.state.db, user.id, None, None).await?.key;
        let created: serde_json::Value = self.http.post(format!("{}/api/instances", self.base)).bearer_auth(&key).send().await?.json().await?;
        let id = created["id"].as_str().ok_or_else(|| anyhow::anyhow!("no id in {created}"))?.to_owned();
        loop {
            let body: serde_json::Value = self.http.get(format!("{}/api/instances/{id}", self.base)).bearer_auth(&key).send().await?.json().await?;
            match body["status"].as_str() {
                Some("ready") => return Ok((key, id)),
                Some("error") => anyhow::bail!("the other tenant's instance failed: {body}"),
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    /// Deletes the instance and waits (at most a minute) until it is gone, container and storage.
    pub async fn delete(&self, id: &str) -> anyhow::Result<()> {
        self.delete_as(id, &self.key).await
    }

    pub async fn delete_as(&self, id: &str, key: &str) -> anyhow::Result<()> {
        let url = format!("{}/api/instances/{id}", self.base);
        self.http.delete(&url).bearer_auth(key).send().await?;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while self.http.get(&url).bearer_auth(key).send().await?.status() != reqwest::StatusCode::NOT_FOUND {
            anyhow::ensure!(std::time::Instant::now() < deadline, "instance {id} was not deleted within a minute");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    pub async fn finish(self) -> anyhow::Result<()> {
        self.state.shutdown.cancel();
        self.state.db.close().await;
        if self.started_cluster {
            self.cluster.stop().await?;
        }
        Ok(())
    }
}

/// Polls the instance on the server at `base` until it is `ready` (an `error` fails).
pub async fn wait_ready(http: &reqwest::Client, base: &str, key: &str, id: &str) -> anyhow::Result<()> {
    loop {
        let body: serde_json::Value = http.get(format!("{base}/api/instances/{id}")).bearer_auth(key).send().await?.json().await?;
        match body["status"].as_str() {
            Some("ready") => return Ok(()),
            Some("error") => anyhow::bail!("instance failed: {body}"),
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A plain `docker run` of `image` on the sandbox network, timed until its gateway answers
/// `/readyz` (the reference for create → ready); the container is removed afterwards.
pub async fn docker_run_to_ready(http: &reqwest::Client, image: &str, n: usize) -> Duration {
    let name = format!("ocaas-bench-{}-{n}", std::process::id());
    let t0 = Instant::now();
    docker(&["run", "-d", "--name", &name, "--network", "ocaas-sandboxes", "--cap-drop", "ALL", "-e", "OPENCLAW_GATEWAY_TOKEN=bench", image]);
    let ip = docker(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"ocaas-sandboxes\").IPAddress}}", &name]);
    let url = format!("http://{ip}:18789/readyz");
    while !matches!(http.get(&url).timeout(Duration::from_secs(1)).send().await, Ok(r) if r.status().is_success()) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    docker(&["rm", "-f", &name]);
    took
}
