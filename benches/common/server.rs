//! A separate `ocaas serve` process on the bench's database, so a benchmark reads the
//! server's own RSS and CPU time from /proc, apart from the load generator's.

use std::process::{Child, Command};
use std::time::Duration;

use super::Bench;

pub struct ServeProcess {
    child: Child,
    pub base: String,
    data_dir: std::path::PathBuf,
}

impl ServeProcess {
    /// Starts the release binary with the bench's database and image plus `env`, and waits
    /// for `/readyz`. The in-process server of `bench` stops, so only this one drives.
    pub async fn start(bench: &Bench, env: &[(&str, String)]) -> anyhow::Result<ServeProcess> {
        bench.state.shutdown.cancel();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data_dir = std::env::temp_dir().join(format!("ocaas-bench-serve-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&data_dir)?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_ocaas"));
        command
            .env("DATABASE_URL", &bench.database_url)
            .env("OCAAS_DATA_DIR", &data_dir)
            .env("OCAAS_SANDBOX_IMAGE", &bench.image)
            .env("OCAAS_INSTANCE_DISK", "1g")
            .env("OCAAS_BROKER_PORT", "18790-18799")
            .env("OCAAS_BACKUP_INTERVAL", "0s")
            .env("OCAAS_LOG", "warn");
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.args(["serve", "--bind", &format!("127.0.0.1:{port}")]).spawn()?;
        let server = ServeProcess { child, base: format!("http://127.0.0.1:{port}"), data_dir };
        let http = reqwest::Client::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while !matches!(http.get(format!("{}/readyz", server.base)).send().await, Ok(r) if r.status().is_success()) {
            anyhow::ensure!(std::time::Instant::now() < deadline, "ocaas serve did not get ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory, MiB (0 when the process is gone).
    pub fn rss_mib(&self) -> f64 {
        rss_kib(self.pid()).unwrap_or(0) as f64 / 1024.0
    }
}

/// Resident memory of a process, KiB, from /proc/<pid>/status.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).ok_or_else(|| anyhow::anyhow!("no VmRSS"))?;
    Ok(line.split_whitespace().nth(1).unwrap_or("0").parse()?)
}

/// CPU seconds (user + system) a process has used, from /proc/<pid>/stat.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = [11, 12].iter().filter_map(|i| fields.get(*i)?.parse::<f64>().ok()).sum();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
