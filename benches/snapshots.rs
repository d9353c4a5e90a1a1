//! Benchmark, side by side in one run (`cargo bench --bench snapshots`):
//! (a) snapshot and restore throughput through the API vs a plain `tar -cz` / `tar -xz` of the
//!     same storage directories on the same disk (goal ≥ 0.8×); the workspace holds
//!     `OCAAS_BENCH_MIB` (default 256) MiB, half random, half text;
//! (b) an upgrade of `OCAAS_BENCH_INSTANCES` (default 10) instances with `--parallel 3` through
//!     `ocaas admin instances upgrade`: total time and each instance's downtime.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Bench, docker};

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn sh(script: &str) -> anyhow::Result<()> {
    let status = Command::new("sh").args(["-c", script]).status()?;
    anyhow::ensure!(status.success(), "`{script}` failed");
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mib: u64 = std::env::var("OCAAS_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let fleet: usize = std::env::var("OCAAS_BENCH_INSTANCES").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let data_dir = std::env::temp_dir().join(format!("ocaas-bench-snapshots-{}", std::process::id()));
    let (instances_dir, snapshots_dir) = (data_dir.join("instances"), data_dir.join("snapshots"));
    let bench = Bench::start_with((fleet + 2) as u32, |settings| {
        settings.instances.disk_root = instances_dir.clone();
        settings.snapshots.root = snapshots_dir.clone();
        settings.instances.disk_quota_bytes = (mib * 3 + 1024) << 20;
        settings.instances.reconcile_interval = Duration::from_secs(1);
    })
    .await?;

    // (a) one instance with `mib` MiB in its workspace.
    let (id, sandbox) = bench.ready_instance().await?;
    let half = mib / 2;
    docker(&[
        "exec",
        &sandbox,
        "sh",
        "-c",
        &format!(
            "head -c {half}M /dev/urandom > /workspace/random.bin; yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {half}M > /workspace/text.txt"
        ),
    ]);
    let storage = instances_dir.join(&sandbox);
    let reference_archive = data_dir.join("reference.tar.gz");

    let t0 = Instant::now();
    let taken: serde_json::Value = bench
        .http
        .post(format!("{}/api/instances/{id}/snapshots", bench.base))
        .bearer_auth(&bench.key)
        .json(&serde_json::json!({}))
        .send()
        .await?
        .json()
        .await?;
    let snapshot_time = t0.elapsed();
    let sid = taken["id"].as_str().ok_or_else(|| anyhow::anyhow!("no snapshot: {taken}"))?.to_owned();
    let t0 = Instant::now();
    sh(&format!("tar -czf {} -C {} workspace state", reference_archive.display(), storage.display()))?;
    let tar_create = t0.elapsed();

    let t0 = Instant::now();
    bench
        .http
        .post(format!("{}/api/instances/{id}/restore", bench.base))
        .bearer_auth(&bench.key)
        .json(&serde_json::json!({"snapshot_id": sid}))
        .send()
        .await?;
    common::wait_ready(&bench.http, &bench.base, &bench.key, &id).await?;
    let restore_time = t0.elapsed();
    let target = data_dir.join("untar");
    std::fs::create_dir_all(&target)?;
    let t0 = Instant::now();
    sh(&format!("tar -xzf {} -C {}", reference_archive.display(), target.display()))?;
    let tar_extract = t0.elapsed();
    // The restore's data phase alone: ocaas's unpacking of its own archive, as the driver runs it.
    let ours = data_dir.join("ours.tar.gz");
    let download = bench.http.get(format!("{}/api/instances/{id}/snapshots/{sid}/download", bench.base)).bearer_auth(&bench.key).send().await?;
    std::fs::write(&ours, download.bytes().await?)?;
    let unpack_target = data_dir.join("unpacked");
    let t0 = Instant::now();
    let (from, into) = (ours.clone(), unpack_target.clone());
    tokio::task::spawn_blocking(move || ocaas::runtime::archive::unpack(&mut std::fs::File::open(from)?, &into)).await??;
    let unpack_time = t0.elapsed();
    let rate = |d: Duration| mib as f64 / seconds(d);
    println!("(a) {mib} MiB workspace (half random, half text), gzip on both sides");
    println!("{:<44} {:>8} {:>10}", "", "s", "MiB/s");
    println!("{:<44} {:>8.2} {:>10.1}", "snapshot through the API (freeze + pack)", seconds(snapshot_time), rate(snapshot_time));
    println!("{:<44} {:>8.2} {:>10.1}", "tar -czf of the same directories", seconds(tar_create), rate(tar_create));
    println!("{:<44} {:>8.2} {:>10.1}", "restore through the API (incl. restart)", seconds(restore_time), rate(restore_time));
    println!("{:<44} {:>8.2} {:>10.1}", "  of which unpacking (ocaas's archive code)", seconds(unpack_time), rate(unpack_time));
    println!("{:<44} {:>8.2} {:>10.1}", "tar -xzf of the same directories", seconds(tar_extract), rate(tar_extract));
    println!(
        "snapshot {:.2}x of tar; restore's unpacking {:.2}x of tar, the whole restore {:.2}x (it also takes a safety \
         snapshot and restarts the sandbox) (goal ≥ 0.8x); archive {} MiB vs tar's {} MiB",
        seconds(tar_create) / seconds(snapshot_time),
        seconds(tar_extract) / seconds(unpack_time),
        seconds(tar_extract) / seconds(restore_time),
        taken["size_bytes"].as_u64().unwrap_or(0) >> 20,
        std::fs::metadata(&reference_archive)?.len() >> 20
    );
    bench.delete(&id).await?;

    // (b) the fleet upgrade, driven by this server, started by the admin command.
    let mut ids = Vec::new();
    for _ in 0..fleet {
        ids.push(bench.ready_instance().await?.0);
    }
    let new_image = format!("{}-upgraded", bench.image.replace("ocaas-sandbox:", "ocaas-sandbox:bench-"));
    docker(&["tag", &bench.image, &new_image]);
    let t0 = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_ocaas"))
        .env("DATABASE_URL", &bench.database_url)
        .env("OCAAS_DATA_DIR", &data_dir)
        .args(["admin", "instances", "upgrade", "--image", &new_image, "--all", "--parallel", "3"])
        .output()?;
    let total = t0.elapsed();
    println!("(b) upgrade of {fleet} instances with --parallel 3: {:.1} s in all", seconds(total));
    print!("{}", String::from_utf8_lossy(&output.stdout));
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    for id in &ids {
        bench.delete(id).await?;
    }
    docker(&["rmi", &new_image]);
    bench.finish().await?;
    let _ = std::fs::remove_dir_all(&data_dir);
    Ok(())
}
