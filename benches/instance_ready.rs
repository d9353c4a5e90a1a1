//! Benchmark: create → `ready` latency of instances through ocaas's HTTP API, side by side with
//! a plain `docker run` of the same image until its gateway answers `/readyz`, on the same
//! engine in the same run. Prints p50/p95 and the ratio. `cargo bench --bench instance_ready`
//! (`OCAAS_BENCH_RUNS`, default 10). Needs Docker and PostgreSQL's binaries, like the tests.

mod common;

use std::time::Instant;

use common::{Bench, ms, percentile};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::var("OCAAS_BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let bench = Bench::start(runs as u32 + 1).await?;
    let image = bench.image.clone();
    let http = bench.http.clone();

    let mut ocaas_samples = Vec::new();
    for _ in 0..runs {
        let t0 = Instant::now();
        let (id, _) = bench.ready_instance().await?;
        ocaas_samples.push(t0.elapsed());
        bench.delete(&id).await?;
    }
    let mut docker_samples = Vec::new();
    for i in 0..runs {
        docker_samples.push(common::docker_run_to_ready(&http, &image, i).await);
    }

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

    bench.finish().await
}
