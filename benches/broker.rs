//! Model broker overhead: an OpenAI-compatible upstream (a small Python server) runs inside a
//! sandbox, and a Python client in the same sandbox calls it twice over — directly on loopback,
//! and the way the agent does, through the broker on the sandbox network (the instance's own
//! model points back at the upstream). Same client, same upstream, same run: the difference is
//! what the broker adds. Prints first-token latency p50/p95 (200 streamed calls each) and
//! streaming throughput (3 × 48 MiB answers each). `cargo bench --bench broker`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Bench, docker};
use serde_json::json;

const UPSTREAM: &str = r#"
import json, socket, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
PIECE = "x" * 16384
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_POST(self):
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chunks = int(body["messages"][0]["content"].split("-")[-1])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        def send(obj):
            data = ("data: " + (obj if isinstance(obj, str) else json.dumps(obj)) + "\n\n").encode()
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        for i in range(chunks):
            send({"choices": [{"index": 0, "delta": {"content": PIECE if chunks > 1 else "hi"}}]})
        send({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": chunks}})
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
ThreadingHTTPServer(("0.0.0.0", 9000), H).serve_forever()
"#;

const CLIENT: &str = r#"
import http.client, json, os, socket, sys, time, urllib.parse
def run(base, key, model, n):
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    firsts, total_bytes, started = [], 0, time.perf_counter()
    for _ in range(n):
        body = json.dumps({"model": "any", "messages": [{"role": "user", "content": model}], "stream": True})
        t0 = time.perf_counter()
        conn.request("POST", url.path + "/chat/completions", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
        r = conn.getresponse()
        first = None
        while True:
            line = r.readline()
            if not line: break
            total_bytes += len(line)
            if first is None and b'"content"' in line: first = time.perf_counter() - t0
            if line.startswith(b"data: [DONE]"):
                r.read(); break
        firsts.append(first)
    return firsts, total_bytes, time.perf_counter() - started
cfg = json.load(open(os.path.expanduser("~/.openclaw/openclaw.json")))["models"]["providers"]["operator"]
out = {}
for name, base, key in [("direct", "http://127.0.0.1:9000/v1", "x"), ("broker", cfg["baseUrl"], cfg["apiKey"])]:
    run(base, key, "warm-1", 20)
    firsts, _, _ = run(base, key, "first-1", 200)
    _, nbytes, secs = run(base, key, "bulk-3072", 3)
    out[name] = {"first": sorted(firsts), "mib_s": nbytes / secs / 1048576}
print(json.dumps(out))
"#;

fn write_into(sandbox: &str, path: &str, text: &str) -> anyhow::Result<()> {
    let mut child =
        Command::new("docker").args(["exec", "-i", "-u", "1000", sandbox, "sh", "-c", &format!("cat > {path}")]).stdin(Stdio::piped()).spawn()?;
    child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?.write_all(text.as_bytes())?;
    anyhow::ensure!(child.wait()?.success(), "writing {path}");
    Ok(())
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize] * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench::start_with(2, |s| s.instances.model_allow_private = true).await?;
    let (id, sandbox) = bench.ready_instance().await?;
    write_into(&sandbox, "/workspace/upstream.py", UPSTREAM)?;
    write_into(&sandbox, "/workspace/client.py", CLIENT)?;
    docker(&["exec", "-d", "-u", "1000", &sandbox, "python3", "/workspace/upstream.py"]);
    let ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &sandbox]);
    // The instance's own model: the upstream in its sandbox, reached by the broker from the host.
    let model = json!({"provider": "custom", "base_url": format!("http://{ip}:9000/v1"), "model": "in-sandbox", "api_key": "bench"});
    let answer = bench.http.put(format!("{}/api/instances/{id}/model", bench.base)).bearer_auth(&bench.key).json(&model).send().await?;
    anyhow::ensure!(answer.status().is_success(), "setting the model: {}", answer.text().await?);
    // Let the upstream start listening.
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let out = tokio::task::spawn_blocking(move || docker(&["exec", "-u", "1000", &sandbox, "python3", "/workspace/client.py"])).await?;
    let result: serde_json::Value = serde_json::from_str(&out)?;
    let firsts =
        |name: &str| -> Vec<f64> { result[name]["first"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default() };
    let (direct, broker) = (firsts("direct"), firsts("broker"));
    println!("broker: the same Python client and upstream, directly and through the broker");
    println!("{:<28} {:>12} {:>12} {:>12}", "", "direct", "broker", "added");
    for (label, p) in [("first token p50 (ms)", 0.5), ("first token p95 (ms)", 0.95)] {
        let (d, b) = (pct(&direct, p), pct(&broker, p));
        println!("{label:<28} {d:>12.2} {b:>12.2} {:>12.2}", b - d);
    }
    let (d, b) = (result["direct"]["mib_s"].as_f64().unwrap_or(0.0), result["broker"]["mib_s"].as_f64().unwrap_or(0.0));
    println!("{:<28} {d:>12.1} {b:>12.1} {:>11.2}x", "streaming (MiB/s)", b / d.max(0.001));
    bench.delete(&id).await?;
    bench.finish().await
}
