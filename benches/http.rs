//! Benchmark: authenticated requests against the server's cheapest answers, measured with
//! `wrk` (Debian's package) side by side in one run (`cargo bench --bench http`):
//! `GET /api/instances` and `GET /api/account` with an API key vs `GET /healthz` and the
//! unauthenticated `GET /api`, at 32 and at 4 connections (goal: authenticated ≥ 0.5× the
//! reference). Beside them, `pgbench` runs the very query `GET /api/instances` makes, prepared,
//! on the same PostgreSQL at the same concurrency: the most any server that reads the list
//! per request gets on this machine (ocaas answers it from its list cache, so it can go past
//! that). `OCAAS_BENCH_SECS` per run (default 10).

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

/// Transactions per second of `pgbench` running `sql` (prepared) with `clients` connections.
fn pgbench(database_url: &str, sql: &str, clients: u32, secs: u64) -> anyhow::Result<f64> {
    let script = std::env::temp_dir().join(format!("ocaas-bench-{}.sql", std::process::id()));
    std::fs::write(&script, sql)?;
    let program = ["pgbench".to_owned()]
        .into_iter()
        .chain(std::fs::read_dir("/usr/lib/postgresql").into_iter().flatten().flatten().map(|d| d.path().join("bin/pgbench").display().to_string()))
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .ok_or_else(|| anyhow::anyhow!("pgbench (PostgreSQL's package) is needed"))?;
    let output = Command::new(program)
        .args(["-n", "-M", "prepared", "-j2", &format!("-c{clients}"), &format!("-T{secs}"), "-f"])
        .arg(&script)
        .arg(database_url)
        .output()?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output: {text} {}", String::from_utf8_lossy(&output.stderr)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let secs: u64 = std::env::var("OCAAS_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let bench = Bench::start(1).await?;
    let url = |path: &str| format!("{}{path}", bench.base);
    let user: uuid::Uuid = sqlx::query_scalar("SELECT id FROM users WHERE email = 'bench@example.com'").fetch_one(&bench.state.db).await?;
    // The query of `instances::repo::list_for_user`, for this user.
    let list_sql = format!(
        "SELECT id, user_id, sandbox_id, name, status, last_error, image, gateway_token, created_at, updated_at, last_active_at, \
         stop_reason, keep_awake, openclaw_version, pending_snapshot_id, upgrade_from_image FROM instances WHERE user_id = '{user}' \
         ORDER BY created_at DESC, id DESC;\n"
    );
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
        let mut instances_rate = 0.0;
        for (path, reference, label) in [("/api/instances", health, "/healthz"), ("/api/account", root, "/api")] {
            let (u, key) = (url(path), bench.key.clone());
            let rate = tokio::task::spawn_blocking(move || wrk(&u, connections, secs, Some(&key))).await??;
            println!("{:<36} {rate:>12.0} {reference:>12.0} {:>7.2}x", format!("GET {path}, {connections} conns (vs {label})"), rate / reference);
            if path == "/api/instances" {
                instances_rate = rate;
            }
        }
        let (database_url, sql) = (bench.database_url.clone(), list_sql.clone());
        let database = tokio::task::spawn_blocking(move || pgbench(&database_url, &sql, connections, secs)).await??;
        println!(
            "{:<36} {instances_rate:>12.0} {database:>12.0} {:>7.2}x",
            format!("GET /api/instances, {connections} conns (vs its query in pgbench)"),
            instances_rate / database
        );
    }
    bench.finish().await
}
