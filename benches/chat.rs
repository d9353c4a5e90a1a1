//! Benchmark: (a) time to the first answer delta of a chat turn through ocaas (`chat/stream`,
//! which speaks the gateway's WebSocket protocol) against asking the stand-in gateway directly,
//! over its WebSocket (`chat.send`, as a paired device) and over HTTP, p50/p95 over
//! `OCAAS_BENCH_TURNS` (default 50) turns each; (a2) memory of `OCAAS_BENCH_CONNECTIONS`
//! (default 100) open gateway connections of ocaas's client, against none; (b) resident memory of one `ocaas serve` process holding
//! `OCAAS_BENCH_SUBSCRIBERS` (default 1000) idle `chat/events` subscribers against none.
//! `cargo bench --bench chat`.

mod common;

use std::time::{Duration, Instant};

use common::server::rss_kib;
use common::{Bench, docker, ms, percentile};
use futures_util::StreamExt;
use ocaas::runtime::gateway::{ConnectError, Device, RunEvent, conn};
use serde_json::json;

/// Times from `t0` until each needle first shows up in the (SSE) body, in order.
async fn until_each<const N: usize>(response: reqwest::Response, needles: [&str; N], t0: Instant) -> anyhow::Result<[Duration; N]> {
    let mut body = response.bytes_stream();
    let (mut seen, mut times, mut found) = (String::new(), [Duration::ZERO; N], 0);
    while let Some(chunk) = body.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk?));
        while found < N && seen.contains(needles[found]) {
            times[found] = t0.elapsed();
            found += 1;
        }
        if found == N {
            // Read to the end, so the connection goes back to the client's pool for the next
            // turn (as it does for any client that reads its answers whole).
            while let Some(chunk) = body.next().await {
                chunk?;
            }
            return Ok(times);
        }
    }
    anyhow::bail!("stream ended before {:?}: {seen:.400}", needles.get(found))
}

/// A connection to the gateway at `addr` as `device`, paired first the way ocaas pairs.
async fn paired(addr: std::net::SocketAddr, token: &str, device: &Device, sandbox: &str) -> anyhow::Result<std::sync::Arc<conn::Connection>> {
    for _ in 0..3 {
        let sinks = ocaas::runtime::gateway::Sinks { foreign: tokio::sync::mpsc::channel(16).0, notices: tokio::sync::mpsc::channel(16).0 };
        let tunnel: ocaas::runtime::dial::Tunnel = Box::new(tokio::net::TcpStream::connect(addr).await?);
        match conn::connect(tunnel, token, device, uuid::Uuid::nil(), sinks).await {
            Ok(connection) => return Ok(connection),
            Err(ConnectError::NotPaired { request_id }) => {
                docker(&["exec", "-u", "1000", sandbox, "openclaw", "devices", "approve", &request_id]);
            }
            Err(error) => anyhow::bail!("{error}"),
        }
    }
    anyhow::bail!("the device was not paired")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let turns: usize = std::env::var("OCAAS_BENCH_TURNS").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let subscribers: usize = std::env::var("OCAAS_BENCH_SUBSCRIBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let bench = Bench::start(2).await?;
    let (id, sandbox) = bench.ready_instance().await?;
    let ip = docker(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"ocaas-sandboxes\").IPAddress}}", &sandbox]);
    let token: String = sqlx::query_scalar("SELECT gateway_token FROM instances WHERE id = $1::uuid").bind(&id).fetch_one(&bench.state.db).await?;

    // The three paths take turns, so each sees the machine in the same state (a path measured
    // after idle gaps pays for waking the CPU and the runtime; one measured back to back does not).
    let (mut through_ocaas, mut before_gateway, mut instance_read, mut direct) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let addr = std::net::SocketAddr::new(ip.parse()?, 18789);
    let device = Device::generate();
    let ws = paired(addr, &token, &device, &sandbox).await?;
    let mut direct_ws = Vec::new();
    for n in 0..turns {
        let t0 = Instant::now();
        let response = bench
            .http
            .post(format!("{}/api/instances/{id}/chat/stream", bench.base))
            .bearer_auth(&bench.key)
            .json(&json!({"message": format!("benchmark turn {n}")}))
            .send()
            .await?;
        // Read to the end, which comes after the turn released its session: the next turn
        // finds it free.
        let [queued, delta] = until_each(response, ["\"queued\"", "\"delta\""], t0).await?;
        before_gateway.push(queued);
        through_ocaas.push(delta);

        // Reference inside ocaas: the same authentication and instance lookup, answered at once.
        let t0 = Instant::now();
        let response = bench.http.get(format!("{}/api/instances/{id}", bench.base)).bearer_auth(&bench.key).send().await?;
        anyhow::ensure!(response.status().is_success(), "GET instance: {}", response.status());
        response.bytes().await?;
        instance_read.push(t0.elapsed());

        let t0 = Instant::now();
        let response = bench
            .http
            .post(format!("http://{ip}:18789/v1/chat/completions"))
            .bearer_auth(&token)
            .header("x-openclaw-session-key", "bench-direct")
            .json(&json!({"model": "openclaw/default", "stream": true, "messages": [{"role": "user", "content": format!("benchmark turn {n}")}]}))
            .send()
            .await?;
        let [first] = until_each(response, ["\"content\""], t0).await?;
        direct.push(first);

        let run = uuid::Uuid::new_v4().to_string();
        let t0 = Instant::now();
        let mut feed = ws.subscribe(&run);
        let params = json!({"sessionKey": "bench-direct-ws", "message": format!("benchmark turn {n}"), "idempotencyKey": run});
        ws.request("chat.send", params, Duration::from_secs(30)).await?;
        let mut first = None;
        while let Some(event) = feed.recv().await {
            if first.is_none() && matches!(event, RunEvent::Delta(_)) {
                first = Some(t0.elapsed());
            }
            if event.ends_run() {
                break;
            }
        }
        direct_ws.push(first.ok_or_else(|| anyhow::anyhow!("no delta over the WebSocket"))?);
        // ocaas imports that turn (made on the gateway without it, as the agent's own UI
        // would): let the import finish, so it does not run into the next path's measurement.
        let imported = std::time::Instant::now();
        while imported.elapsed() < Duration::from_secs(3) {
            let done: i64 = sqlx::query_scalar("SELECT count(*) FROM chat_messages WHERE gateway_ref = $1 AND status = 'complete'")
                .bind(format!("run:{run}"))
                .fetch_one(&bench.state.db)
                .await?;
            if done == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    println!("time to first answer delta over {turns} turns");
    println!("{:<32} {:>8} {:>8}", "", "p50 ms", "p95 ms");
    println!("{:<32} {:>8.1} {:>8.1}", "ocaas POST chat/stream", ms(percentile(&through_ocaas, 0.5)), ms(percentile(&through_ocaas, 0.95)));
    println!("{:<32} {:>8.1} {:>8.1}", "gateway directly, WebSocket", ms(percentile(&direct_ws, 0.5)), ms(percentile(&direct_ws, 0.95)));
    println!("{:<32} {:>8.1} {:>8.1}", "gateway directly, HTTP", ms(percentile(&direct, 0.5)), ms(percentile(&direct, 0.95)));
    println!(
        "added by ocaas over the gateway's WebSocket: p50 {:+.2} ms (goal: at most +1 ms)",
        ms(percentile(&through_ocaas, 0.5)) - ms(percentile(&direct_ws, 0.5))
    );
    // Where the difference goes: the `queued` event is sent once the turn's rows are committed
    // (auth, instance, session, claim, the two messages), before ocaas calls the gateway.
    let p50 = |samples: &[Duration]| ms(percentile(samples, 0.5));
    println!(
        "where it goes (p50): until `queued` (auth, instance, session claim and rows committed) {:.1} ms; from `queued` to the first delta {:.1} ms (gateway directly {:.1} ms)",
        p50(&before_gateway),
        p50(&through_ocaas) - p50(&before_gateway),
        p50(&direct)
    );
    println!(
        "for reference, an authenticated GET of the instance (same auth and lookup) takes {:.1} ms p50: the turn's own statement and the event stream's start are the rest",
        p50(&instance_read)
    );

    // (a2) Open gateway connections: the client's memory per connection, in this process.
    let connections: usize = std::env::var("OCAAS_BENCH_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100);
    drop(ws);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(std::process::id())?;
    let mut open = Vec::with_capacity(connections);
    for _ in 0..connections {
        open.push(paired(addr, &token, &device, &sandbox).await?);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(std::process::id())?;
    anyhow::ensure!(open.iter().all(|c| !c.is_closed()), "a connection closed");
    println!(
        "\nmemory of {connections} open gateway connections (this process's RSS): {:.1} MiB before, {:.1} MiB after: {:.1} KiB per connection (goal: at most 64 KiB)",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        after.saturating_sub(before) as f64 / connections as f64
    );
    drop(open);

    // (b) A separate server process on the same database, so its memory is its own.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain getrlimit/setrlimit on this process; the child inherits the raised limit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_ocaas"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", &bench.database_url)
        .env("OCAAS_SANDBOX_IMAGE", &bench.image)
        .env("OCAAS_LOG", "warn")
        .spawn()?;
    let base = format!("http://127.0.0.1:{port}");
    while bench.http.get(format!("{base}/readyz")).send().await.map(|r| !r.status().is_success()).unwrap_or(true) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let session =
        bench.http.post(format!("{base}/api/instances/{id}/chat/sessions")).bearer_auth(&bench.key).send().await?.json::<serde_json::Value>().await?;
    let session = session["id"].as_str().unwrap_or_default().to_owned();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = rss_kib(server.id())?;
    let mut streams = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        let client = reqwest::Client::new();
        let response =
            client.get(format!("{base}/api/instances/{id}/chat/events")).query(&[("session_id", &session)]).bearer_auth(&bench.key).send().await?;
        let mut body = response.bytes_stream();
        let first = body.next().await.ok_or_else(|| anyhow::anyhow!("no ready event"))??;
        anyhow::ensure!(String::from_utf8_lossy(&first).contains("ready"), "unexpected first event");
        streams.push((client, body));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loaded = rss_kib(server.id())?;
    println!("\nRSS of one `ocaas serve` process");
    println!("  idle, no subscribers:         {:>8.1} MiB", idle as f64 / 1024.0);
    println!("  with {subscribers} chat/events subscribers: {:>8.1} MiB", loaded as f64 / 1024.0);
    println!("  per subscriber:               {:>8.1} KiB", (loaded.saturating_sub(idle)) as f64 / subscribers as f64);
    drop(streams);
    // SAFETY: signalling our own child.
    unsafe { libc::kill(server.id() as i32, libc::SIGTERM) };
    server.wait()?;

    bench.delete(&id).await?;
    bench.finish().await
}
