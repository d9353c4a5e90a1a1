//! Benchmark: `terminal/exec` round trips against the raw Engine API (create + start + inspect
//! exec, via bollard) and the `docker exec` CLI on the same container; and 100 MiB upload and
//! download through `files/upload` (multipart) and `files/download` against `docker cp`.
//! `cargo bench --bench files_exec` (`OCAAS_BENCH_EXEC_RUNS`, default 100; `OCAAS_BENCH_MIB`, default 100).

mod common;

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{CreateExecOptions, StartExecResults};
use common::{Bench, docker, ms, percentile};
use futures_util::StreamExt;

fn row(label: &str, samples: &[Duration]) {
    println!("{label:<34} {:>8.1} {:>8.1}", ms(percentile(samples, 0.5)), ms(percentile(samples, 0.95)));
}

async fn engine_exec(engine: &Docker, sandbox: &str, cmd: Vec<&str>, user: Option<&str>, env: Vec<&str>) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let options =
        CreateExecOptions { cmd: Some(cmd), user, env: Some(env), attach_stdout: Some(true), attach_stderr: Some(true), ..Default::default() };
    let exec = engine.create_exec(sandbox, options).await?;
    if let StartExecResults::Attached { mut output, .. } = engine.start_exec(&exec.id, None).await? {
        while output.next().await.is_some() {}
    }
    engine.inspect_exec(&exec.id).await?;
    Ok(t0.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("OCAAS_BENCH_EXEC_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let mib: usize = std::env::var("OCAAS_BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    let bench = Bench::start(2).await?;
    let (id, sandbox) = bench.ready_instance().await?;
    let exec_url = format!("{}/api/instances/{id}/terminal/exec", bench.base);

    let engine = Docker::connect_with_defaults()?;
    // The same engine calls with the command line, user and environment ocaas uses: what the
    // sandbox's process chain costs, apart from ocaas itself.
    let wrapper = ocaas::terminal::exec::command_line("true", "/workspace", 30_000);
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let marker = vec!["OCAAS_EXEC_ID=bench"];
    // Interleaved, so that whatever else the machine does weighs on all four alike.
    let (mut api, mut raw, mut wrapped, mut cli) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t0 = Instant::now();
        let body: serde_json::Value =
            bench.http.post(&exec_url).bearer_auth(&bench.key).json(&serde_json::json!({"command": "true"})).send().await?.json().await?;
        anyhow::ensure!(body["exit_code"] == 0, "exec failed: {body}");
        api.push(t0.elapsed());
        raw.push(engine_exec(&engine, &sandbox, vec!["true"], None, vec![]).await?);
        wrapped.push(engine_exec(&engine, &sandbox, wrapper.clone(), Some("1000:1000"), marker.clone()).await?);
        let t0 = Instant::now();
        docker(&["exec", &sandbox, "true"]);
        cli.push(t0.elapsed());
    }
    println!("exec round trip of `true`, {runs} runs each");
    println!("{:<34} {:>8} {:>8}", "", "p50 ms", "p95 ms");
    row("ocaas POST terminal/exec", &api);
    row("Engine API create+start+inspect", &raw);
    row("Engine API, ocaas's command line", &wrapped);
    row("docker exec CLI", &cli);
    let p50 = |samples: &[Duration]| ms(percentile(samples, 0.5));
    println!("ratio ocaas / raw Engine API: p50 {:.2}x; ocaas / docker exec: p50 {:.2}x", p50(&api) / p50(&raw), p50(&api) / p50(&cli));
    println!(
        "where the difference goes (p50): sandbox process chain (timeout, login shell) {:+.1} ms; ocaas itself (HTTP, auth, checks, JSON) {:+.1} ms",
        p50(&wrapped) - p50(&raw),
        p50(&api) - p50(&wrapped)
    );

    let size = mib << 20;
    let data: Vec<u8> = (0..size).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let local = std::env::temp_dir().join(format!("ocaas-bench-{}.bin", std::process::id()));
    std::fs::write(&local, &data)?;

    let t0 = Instant::now();
    let form =
        reqwest::multipart::Form::new().text("targetDir", "/workspace").part("file", reqwest::multipart::Part::bytes(data).file_name("api.bin"));
    let response = bench.http.post(format!("{}/api/instances/{id}/files/upload", bench.base)).bearer_auth(&bench.key).multipart(form).send().await?;
    anyhow::ensure!(response.status().is_success(), "upload failed: {}", response.text().await?);
    let api_up = t0.elapsed();

    let t0 = Instant::now();
    let mut stream = bench
        .http
        .get(format!("{}/api/instances/{id}/files/download", bench.base))
        .query(&[("path", "/workspace/api.bin")])
        .bearer_auth(&bench.key)
        .send()
        .await?
        .bytes_stream();
    let mut received = 0usize;
    while let Some(chunk) = stream.next().await {
        received += chunk?.len();
    }
    let api_down = t0.elapsed();
    anyhow::ensure!(received == size, "downloaded {received} of {size} bytes");

    let t0 = Instant::now();
    docker(&["cp", local.to_str().unwrap_or_default(), &format!("{sandbox}:/workspace/cp.bin")]);
    let cp_up = t0.elapsed();
    let back = std::env::temp_dir().join(format!("ocaas-bench-back-{}.bin", std::process::id()));
    let t0 = Instant::now();
    docker(&["cp", &format!("{sandbox}:/workspace/cp.bin"), back.to_str().unwrap_or_default()]);
    let cp_down = t0.elapsed();
    let _ = std::fs::remove_file(&local);
    let _ = std::fs::remove_file(&back);

    let rate = |d: Duration| mib as f64 / d.as_secs_f64();
    println!("\n{mib} MiB transfer");
    println!("{:<34} {:>10} {:>10}", "", "up MiB/s", "down MiB/s");
    println!("{:<34} {:>10.1} {:>10.1}", "ocaas files/upload + download", rate(api_up), rate(api_down));
    println!("{:<34} {:>10.1} {:>10.1}", "docker cp", rate(cp_up), rate(cp_down));
    println!("ratio ocaas / docker cp throughput: up {:.2}x, down {:.2}x", rate(api_up) / rate(cp_up), rate(api_down) / rate(cp_down));

    bench.delete(&id).await?;
    bench.finish().await
}
