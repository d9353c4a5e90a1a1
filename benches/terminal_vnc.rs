//! Benchmark: keystroke echo latency through `terminal/ws` against a raw Docker TTY exec attach
//! (bollard) on the same container, and RFB throughput (full raw framebuffer updates) through
//! `vnc/ws` against a straight TCP connection to the container's port 5900.
//! `cargo bench --bench terminal_vnc` (`OCAAS_BENCH_KEYS`, default 200; `OCAAS_BENCH_FRAMES`, default 30).

mod common;

use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use common::{Bench, ms, percentile};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Where keystrokes go: a websocket, or the exec's attached stdin.
trait Keyboard {
    async fn press(&mut self, bytes: &[u8]) -> anyhow::Result<()>;
}

struct WsKeys<S>(S);

impl<S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin> Keyboard for WsKeys<S> {
    async fn press(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(self.0.send(Message::Binary(bytes.to_vec().into())).await?)
    }
}

struct StdinKeys(std::pin::Pin<Box<dyn AsyncWrite + Send>>);

impl Keyboard for StdinKeys {
    async fn press(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.0.write_all(bytes).await?;
        Ok(self.0.flush().await?)
    }
}

/// Sends single keystrokes and waits for each to come back; clears the line now and then.
async fn keystrokes(keyboard: &mut impl Keyboard, output: &mut (impl Stream<Item = Vec<u8>> + Unpin), count: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(count);
    for i in 0..count {
        if i % 40 == 0 {
            keyboard.press(&[0x15]).await?; // ^U: empty the line
            tokio::time::sleep(Duration::from_millis(50)).await;
            drain(output).await;
        }
        let key = b'a' + (i % 26) as u8;
        let t0 = Instant::now();
        keyboard.press(&[key]).await?;
        loop {
            let chunk = tokio::time::timeout(Duration::from_secs(5), output.next()).await?.ok_or_else(|| anyhow::anyhow!("terminal closed"))?;
            if chunk.contains(&key) {
                break;
            }
        }
        samples.push(t0.elapsed());
    }
    Ok(samples)
}

async fn drain(output: &mut (impl Stream<Item = Vec<u8>> + Unpin)) {
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), output.next()).await {}
}

/// A byte pipe to an RFB server: TCP directly, or the bytes inside websocket frames.
trait Pipe {
    async fn read_exact(&mut self, n: usize) -> anyhow::Result<Vec<u8>>;
    /// Reads and drops `n` bytes (pixel data), as cheaply as the transport allows, so the
    /// client's own copying weighs the same on both paths.
    async fn skip(&mut self, n: usize) -> anyhow::Result<()>;
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()>;
}

struct Tcp<T>(T);

impl<T: AsyncRead + AsyncWrite + Unpin> Pipe for Tcp<T> {
    async fn read_exact(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        let mut buf = vec![0; n];
        self.0.read_exact(&mut buf).await?;
        Ok(buf)
    }
    async fn skip(&mut self, mut n: usize) -> anyhow::Result<()> {
        let mut scratch = vec![0u8; 256 << 10];
        while n > 0 {
            let got = self.0.read(&mut scratch[..n.min(256 << 10)]).await?;
            anyhow::ensure!(got > 0, "connection closed");
            n -= got;
        }
        Ok(())
    }
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(self.0.write_all(bytes).await?)
    }
}

struct WsPipe<W> {
    ws: W,
    buffer: bytes::BytesMut,
}

impl<W> WsPipe<W>
where
    W: Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    async fn frame(&mut self) -> anyhow::Result<bytes::Bytes> {
        loop {
            match self.ws.next().await.ok_or_else(|| anyhow::anyhow!("websocket closed"))?? {
                Message::Binary(bytes) => return Ok(bytes),
                Message::Close(_) => anyhow::bail!("websocket closed"),
                _ => {}
            }
        }
    }
}

impl<W> Pipe for WsPipe<W>
where
    W: Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
        + futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error>
        + Unpin,
{
    async fn read_exact(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        while self.buffer.len() < n {
            let frame = self.frame().await?;
            self.buffer.extend_from_slice(&frame);
        }
        Ok(self.buffer.split_to(n).to_vec())
    }
    async fn skip(&mut self, n: usize) -> anyhow::Result<()> {
        let buffered = n.min(self.buffer.len());
        let _ = self.buffer.split_to(buffered);
        let mut left = n - buffered;
        while left > 0 {
            let frame = self.frame().await?;
            if frame.len() > left {
                self.buffer.extend_from_slice(&frame[left..]);
                left = 0;
            } else {
                left -= frame.len();
            }
        }
        Ok(())
    }
    async fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        Ok(self.ws.send(Message::Binary(bytes.to_vec().into())).await?)
    }
}

/// RFB 3.8 handshake without authentication; returns (width, height, bytes per pixel).
async fn rfb_handshake(pipe: &mut impl Pipe) -> anyhow::Result<(u16, u16, usize)> {
    pipe.read_exact(12).await?;
    pipe.write(b"RFB 003.008\n").await?;
    let count = pipe.read_exact(1).await?[0] as usize;
    let types = pipe.read_exact(count).await?;
    anyhow::ensure!(types.contains(&1), "no-auth not offered: {types:?}");
    pipe.write(&[1]).await?;
    anyhow::ensure!(pipe.read_exact(4).await? == [0, 0, 0, 0], "security failed");
    rfb_init(pipe).await
}

/// From `ClientInit` on (shared session), asking for raw encoding; (width, height, bytes per pixel).
async fn rfb_init(pipe: &mut impl Pipe) -> anyhow::Result<(u16, u16, usize)> {
    pipe.write(&[1]).await?;
    let init = pipe.read_exact(24).await?;
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    pipe.read_exact(name_len).await?;
    // Raw encoding only, so every update moves the full pixels.
    pipe.write(&[2, 0, 0, 1, 0, 0, 0, 0]).await?;
    Ok((u16::from_be_bytes([init[0], init[1]]), u16::from_be_bytes([init[2], init[3]]), init[4] as usize / 8))
}

/// Requests `frames` full framebuffer updates one after another; returns bytes moved per second.
async fn rfb_throughput(pipe: &mut impl Pipe, (width, height, bpp): (u16, u16, usize), frames: usize) -> anyhow::Result<f64> {
    let [wh, wl] = width.to_be_bytes();
    let [hh, hl] = height.to_be_bytes();
    let mut bytes = 0usize;
    let t0 = Instant::now();
    for _ in 0..frames {
        pipe.write(&[3, 0, 0, 0, 0, 0, wh, wl, hh, hl]).await?;
        loop {
            let kind = pipe.read_exact(1).await?[0];
            match kind {
                0 => break,
                2 => continue, // bell
                3 => {
                    let header = pipe.read_exact(7).await?;
                    let len = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
                    pipe.skip(len).await?;
                }
                other => anyhow::bail!("unexpected RFB message {other}"),
            }
        }
        let header = pipe.read_exact(3).await?;
        for _ in 0..u16::from_be_bytes([header[1], header[2]]) {
            let rect = pipe.read_exact(12).await?;
            let w = u16::from_be_bytes([rect[4], rect[5]]) as usize;
            let h = u16::from_be_bytes([rect[6], rect[7]]) as usize;
            let encoding = i32::from_be_bytes([rect[8], rect[9], rect[10], rect[11]]);
            anyhow::ensure!(encoding == 0, "expected raw rectangles, got encoding {encoding}");
            pipe.skip(w * h * bpp).await?;
            bytes += 12 + w * h * bpp;
        }
    }
    Ok(bytes as f64 / t0.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let keys: usize = std::env::var("OCAAS_BENCH_KEYS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let frames: usize = std::env::var("OCAAS_BENCH_FRAMES").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let bench = Bench::start(2).await?;
    let (id, sandbox) = bench.ready_instance().await?;
    let ws_base = bench.base.replacen("http", "ws", 1);

    let connect = |path: String| {
        let mut request = format!("{ws_base}{path}").into_client_request().expect("request");
        request.headers_mut().insert("authorization", format!("Bearer {}", bench.key).parse().expect("header"));
        tokio_tungstenite::connect_async(request)
    };
    let (terminal, _) = connect(format!("/api/instances/{id}/terminal/ws?cols=1000&rows=50")).await?;
    let (sink, stream) = terminal.split();
    let mut output = Box::pin(stream.filter_map(|m| async move {
        match m {
            Ok(Message::Binary(bytes)) => Some(bytes.to_vec()),
            _ => None,
        }
    }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut output).await;
    let through_ocaas = keystrokes(&mut WsKeys(sink), &mut output, keys).await?;

    let engine = Docker::connect_with_defaults()?;
    let config = ExecConfig {
        cmd: Some(vec!["bash".into(), "-l".into()]),
        user: Some("1000:1000".into()),
        working_dir: Some("/workspace".into()),
        env: Some(vec!["TERM=xterm-256color".into()]),
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(true),
        console_size: Some(vec![50, 1000]),
        ..Default::default()
    };
    let exec = engine.create_exec(&sandbox, config).await?;
    let StartExecResults::Attached { output: raw_output, input } =
        engine.start_exec(&exec.id, Some(StartExecOptions { detach: false, tty: true, output_capacity: None })).await?
    else {
        anyhow::bail!("exec detached");
    };
    let mut raw_output = Box::pin(raw_output.filter_map(|frame| async move { frame.ok().map(|f| f.into_bytes().to_vec()) }));
    tokio::time::sleep(Duration::from_millis(500)).await;
    drain(&mut raw_output).await;
    let mut stdin = StdinKeys(input);
    let raw = keystrokes(&mut stdin, &mut raw_output, keys).await?;
    let _ = stdin.press(b"\x15exit\n").await;

    println!("keystroke echo through a login shell, {keys} keystrokes each");
    println!("{:<34} {:>8} {:>8}", "", "p50 ms", "p95 ms");
    for (label, samples) in [("ocaas terminal/ws", &through_ocaas), ("raw Docker TTY exec attach", &raw)] {
        println!("{label:<34} {:>8.2} {:>8.2}", ms(percentile(samples, 0.5)), ms(percentile(samples, 0.95)));
    }
    println!("ratio ocaas / raw: p50 {:.2}x", ms(percentile(&through_ocaas, 0.5)) / ms(percentile(&raw, 0.5)));

    // Alternating rounds, so neither path profits from going second; the median of each is shown.
    let ip = common::docker(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"ocaas-sandboxes\").IPAddress}}", &sandbox]);
    let token: String = sqlx::query_scalar("SELECT gateway_token FROM instances WHERE id = $1::uuid").bind(&id).fetch_one(&bench.state.db).await?;
    let password = ocaas::runtime::sandbox::vnc_password(&token);
    let (mut via_ws, mut direct) = (Vec::new(), Vec::new());
    // CPU seconds of this process (the server and the benchmark's client) per path: the
    // difference is what the relay costs.
    let (mut ws_cpu, mut tcp_cpu) = (0.0, 0.0);
    for _ in 0..3 {
        let (vnc, _) = connect(format!("/api/instances/{id}/vnc/ws")).await?;
        let mut pipe = WsPipe { ws: vnc, buffer: bytes::BytesMut::new() };
        let screen = rfb_handshake(&mut pipe).await?;
        let cpu = common::server::cpu_secs(std::process::id());
        via_ws.push(rfb_throughput(&mut pipe, screen, frames).await?);
        ws_cpu += common::server::cpu_secs(std::process::id()) - cpu;
        // Directly, the sandbox's VNC server asks for the instance's own password.
        let mut tcp = tokio::net::TcpStream::connect((ip.as_str(), 5900)).await?;
        tcp.set_nodelay(true)?;
        ocaas::vnc::rfb::authenticate_upstream(&mut tcp, &password).await.map_err(|e| anyhow::anyhow!(e))?;
        let mut pipe = Tcp(tcp);
        let screen = rfb_init(&mut pipe).await?;
        let cpu = common::server::cpu_secs(std::process::id());
        direct.push(rfb_throughput(&mut pipe, screen, frames).await?);
        tcp_cpu += common::server::cpu_secs(std::process::id()) - cpu;
    }
    let median = |mut rates: Vec<f64>| {
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (via_ws, direct) = (median(via_ws), median(direct));
    let mib = |rate: f64| rate / (1 << 20) as f64;
    println!("\nRFB full-screen raw updates, {frames} frames per round, median of 3 rounds");
    println!("{:<34} {:>10}", "", "MiB/s");
    println!("{:<34} {:>10.1}", "ocaas vnc/ws", mib(via_ws));
    println!("{:<34} {:>10.1}", "TCP to container :5900", mib(direct));
    println!("ratio ocaas / direct: {:.2}x", via_ws / direct);
    println!(
        "CPU of this process (server + client) over the 3 rounds: through ocaas {ws_cpu:.2} s, direct {tcp_cpu:.2} s; the relay's share: {:.2} s of {} CPUs",
        ws_cpu - tcp_cpu,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    bench.delete(&id).await?;
    bench.finish().await
}
