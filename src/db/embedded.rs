//! The private PostgreSQL cluster ocaas runs when no `DATABASE_URL` is given.
//!
//! It lives in `<data dir>/pg`, listens only on a Unix socket in `<data dir>/run` (mode 0700,
//! so only its owner and root can connect, with `trust` auth inside that boundary), and is run
//! by an unprivileged OS user (`postgres`, else `nobody`) when ocaas runs as root, because
//! PostgreSQL refuses to run as root. Start and init are serialised across processes by a lock
//! file, so a server, an admin command and parallel tests can share one cluster.

use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, chown};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sqlx::postgres::PgConnectOptions;

const SUPERUSER: &str = "ocaas";
/// Unix sockets paths are limited to 107 bytes by the kernel.
const MAX_SOCKET_PATH: usize = 100;

#[derive(Debug, Clone)]
struct OsUser {
    name: String,
    uid: u32,
    gid: u32,
}

#[derive(Debug, Clone)]
pub struct EmbeddedPostgres {
    root: PathBuf,
    cluster: PathBuf,
    socket_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<OsUser>,
}

impl EmbeddedPostgres {
    /// Prepares (but does not start) the cluster under `data_dir`.
    pub fn new(data_dir: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let root = data_dir.canonicalize()?;
        if root.to_string_lossy().contains('\'') {
            bail!("the data dir {} must not contain a single quote", root.display());
        }
        let socket_dir = root.join("run");
        if socket_dir.join(".s.PGSQL.5432").as_os_str().len() > MAX_SOCKET_PATH {
            bail!("the data dir {} is too long a path for a Unix socket; set a shorter OCAAS_DATA_DIR", root.display());
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let run_as = if unsafe { libc::geteuid() } == 0 { Some(unprivileged_user()?) } else { None };
        Ok(EmbeddedPostgres { cluster: root.join("pg"), socket_dir, bin_dir: find_bin_dir()?, run_as, root })
    }

    /// Starts the cluster unless it already runs (initialising it on first use).
    /// Returns whether this call started it.
    pub async fn ensure_running(&self) -> anyhow::Result<bool> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.ensure_running_blocking()).await?
    }

    /// Blocking form of `ensure_running`, for callers outside an async context.
    pub fn ensure_running_blocking(&self) -> anyhow::Result<bool> {
        let lock = File::create(self.root.join(".pg.lock"))?;
        lock.lock().context("locking the private PostgreSQL")?;
        if self.is_running()? {
            return Ok(false);
        }
        if !self.cluster.join("PG_VERSION").exists() {
            self.init()?;
        }
        self.prepare_dir(&self.socket_dir)?;
        let log = self.root.join("postgres.log");
        File::options().create(true).append(true).open(&log)?;
        self.give_to_owner(&log)?;
        let options = format!("-k '{}' -c listen_addresses='' -c unix_socket_permissions=0700", self.socket_dir.display());
        let status = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "120", "-D"])
            .arg(&self.cluster)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options])
            .output()
            .context("running pg_ctl start")?;
        if !status.status.success() {
            bail!("PostgreSQL did not start (see {}): {}", log.display(), String::from_utf8_lossy(&status.stderr).trim());
        }
        Ok(true)
    }

    fn is_running(&self) -> anyhow::Result<bool> {
        if !self.cluster.join("PG_VERSION").exists() {
            return Ok(false);
        }
        let status = self.command("pg_ctl").arg("status").arg("-D").arg(&self.cluster).output().context("running pg_ctl status")?;
        Ok(status.status.success())
    }

    fn init(&self) -> anyhow::Result<()> {
        tracing::info!(dir = %self.cluster.display(), "initialising the private PostgreSQL cluster");
        self.check_reachable()?;
        self.prepare_dir(&self.cluster)?;
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(&self.cluster)
            .args(["-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-instructions"])
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(())
    }

    /// Stops the cluster, waiting for a clean shutdown.
    pub async fn stop(&self) -> anyhow::Result<()> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let out = this.command("pg_ctl").args(["stop", "-m", "fast", "-w", "-D"]).arg(&this.cluster).output().context("running pg_ctl stop")?;
            if !out.status.success() {
                bail!("pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            Ok(())
        })
        .await?
    }

    /// A `postgres://` URL for `database`, for tools that take a URL (`DATABASE_URL`).
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@localhost/{database}?host={}", self.socket_dir.display())
    }

    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new().socket(&self.socket_dir).username(SUPERUSER).database(database)
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        // Own process group: a ctrl-c meant for ocaas must not reach PostgreSQL before the clean stop.
        command.env_remove("PGDATA").current_dir(&self.root).process_group(0);
        // std drops root's supplementary groups when it switches uid (setgroups(0) before setuid).
        if let Some(user) = &self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        command
    }

    fn prepare_dir(&self, dir: &Path) -> anyhow::Result<()> {
        fs::create_dir_all(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        self.give_to_owner(dir)
    }

    fn give_to_owner(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(user) = &self.run_as {
            chown(path, Some(user.uid), Some(user.gid)).with_context(|| format!("giving {} to user {}", path.display(), user.name))?;
        }
        Ok(())
    }

    /// The unprivileged user must be able to walk down to the data dir.
    fn check_reachable(&self) -> anyhow::Result<()> {
        let Some(user) = &self.run_as else { return Ok(()) };
        for dir in self.root.ancestors() {
            let mode = fs::metadata(dir)?.permissions().mode();
            if mode & 0o001 == 0 {
                bail!(
                    "the private PostgreSQL runs as user `{}`, who cannot enter {} (mode {:o}); \
                     set OCAAS_DATA_DIR to a directory outside it, or set DATABASE_URL",
                    user.name,
                    dir.display(),
                    mode & 0o777
                );
            }
        }
        Ok(())
    }
}

pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OCAAS_PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("pg_ctl"))
        .find(|candidate| candidate.is_file())
        .and_then(|pg_ctl| pg_ctl.canonicalize().ok())
        .and_then(|pg_ctl| pg_ctl.parent().map(Path::to_path_buf))
        .filter(|dir| dir.join("initdb").is_file());
    if let Some(dir) = on_path {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir).context(
        "no PostgreSQL server binaries found (initdb, pg_ctl on PATH or under /usr/lib/postgresql/*/bin); \
         install the `postgresql` package or set DATABASE_URL",
    )
}

fn unprivileged_user() -> anyhow::Result<OsUser> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    let users: Vec<OsUser> = passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            Some(OsUser { name: fields.first()?.to_string(), uid: fields.get(2)?.parse().ok()?, gid: fields.get(3)?.parse().ok()? })
        })
        .filter(|user| user.uid != 0)
        .collect();
    ["postgres", "nobody"]
        .iter()
        .find_map(|name| users.iter().find(|u| u.name == *name).cloned())
        .context("ocaas runs as root and found neither a `postgres` nor a `nobody` user to run PostgreSQL as")
}
