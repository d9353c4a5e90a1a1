//! Configuration: command-line flags, each with an `OCAAS_*` (or `DATABASE_URL`) environment
//! variable, and the `Settings` the running server reads from its state.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use secrecy::SecretString;

use crate::runtime::egress::{AllowRule, EgressMode, EgressPolicy};

/// Where the database is and how logs look; shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL. Without it ocaas runs its own private PostgreSQL under the data dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true, value_parser = secret)]
    pub database_url: Option<SecretString>,
    /// Directory for ocaas's own state (the private PostgreSQL cluster among it).
    #[arg(long, env = "OCAAS_DATA_DIR", default_value = "./data", global = true)]
    pub data_dir: PathBuf,
    /// Log format.
    #[arg(long, env = "OCAAS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum RegistrationMode {
    /// Anyone may register.
    Open,
    /// Registering needs an invite code.
    #[default]
    Invite,
    /// Only `ocaas admin user create` makes accounts.
    Closed,
}

/// Flags of `ocaas serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "OCAAS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Public origin (e.g. `https://ocaas.example.com`) used in links, cookies and docs.
    #[arg(long, env = "OCAAS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Trust `X-Forwarded-Proto` / `X-Forwarded-Host` from a reverse proxy.
    #[arg(long, env = "OCAAS_TRUST_PROXY", default_value_t = false, action = clap::ArgAction::Set)]
    pub trust_proxy: bool,
    /// Who may register accounts over the API.
    #[arg(long, env = "OCAAS_REGISTRATION", value_enum, default_value_t = RegistrationMode::Invite)]
    pub registration: RegistrationMode,
    /// Largest JSON request body, in bytes.
    #[arg(long, env = "OCAAS_MAX_BODY_BYTES", default_value_t = 1024 * 1024, value_parser = at_least_one::<usize>)]
    pub max_body_bytes: usize,
    /// How long a browser session lasts, in hours.
    #[arg(long, env = "OCAAS_SESSION_HOURS", default_value_t = 24 * 14, value_parser = at_least_one::<u32>)]
    pub session_hours: u32,
    /// How long one chat turn may take before its assistant message ends in `error`.
    #[arg(long, env = "OCAAS_CHAT_TIMEOUT", default_value_t = 600, value_parser = at_least_one::<u64>)]
    pub chat_timeout_secs: u64,
    /// Largest assistant answer kept, in bytes; past it the turn ends `error`.
    #[arg(long, env = "OCAAS_MAX_ANSWER_BYTES", default_value_t = 1 << 20, value_parser = at_least_one::<usize>)]
    pub max_answer_bytes: usize,
    /// How long a websocket ticket from `vnc-url` stays valid, in seconds (one handshake).
    #[arg(long, env = "OCAAS_TICKET_TTL", default_value_t = 60, value_parser = at_least_one::<u64>)]
    pub ticket_ttl_secs: u64,
    /// noVNC's client files (Debian's `novnc` package), served for the desktop page.
    #[arg(long, env = "OCAAS_NOVNC_DIR", default_value = "/usr/share/novnc")]
    pub novnc_dir: PathBuf,
    /// xterm.js as CommonJS modules (Debian's `node-xterm` package), bundled for the dashboard's terminal.
    #[arg(long, env = "OCAAS_XTERM_DIR", default_value = "/usr/share/nodejs/xterm")]
    pub xterm_dir: PathBuf,
    /// Sign-in and registration attempts a minute from one client address.
    #[arg(long, env = "OCAAS_AUTH_PER_MINUTE_PER_ADDR", default_value_t = 20, value_parser = at_least_one::<u32>)]
    pub auth_per_minute_per_addr: u32,
    /// Sign-in attempts a minute on one account (email), from any address.
    #[arg(long, env = "OCAAS_LOGIN_PER_MINUTE_PER_ACCOUNT", default_value_t = 10, value_parser = at_least_one::<u32>)]
    pub login_per_minute_per_account: u32,
    /// Password hashes computed at once (argon2id, 19 MiB each); 0 or unset: the CPU count.
    #[arg(long, env = "OCAAS_HASH_CONCURRENCY", default_value_t = 0)]
    pub hash_concurrency: usize,
    /// Per user: `terminal/exec` commands running at once.
    #[arg(long, env = "OCAAS_USER_MAX_EXEC", default_value_t = 8, value_parser = at_least_one::<usize>)]
    pub user_max_exec: usize,
    /// Per user: terminals open at once.
    #[arg(long, env = "OCAAS_USER_MAX_TERMINALS", default_value_t = 4, value_parser = at_least_one::<usize>)]
    pub user_max_terminals: usize,
    /// Per user: desktop (VNC) sockets open at once.
    #[arg(long, env = "OCAAS_USER_MAX_DESKTOPS", default_value_t = 4, value_parser = at_least_one::<usize>)]
    pub user_max_desktops: usize,
    /// Per user: SSE streams (chat stream, chat events, logs) open at once.
    #[arg(long, env = "OCAAS_USER_MAX_STREAMS", default_value_t = 16, value_parser = at_least_one::<usize>)]
    pub user_max_streams: usize,
    /// Connections open at once; more are closed as they arrive.
    #[arg(long, env = "OCAAS_MAX_CONNECTIONS", default_value_t = 4096, value_parser = at_least_one::<usize>)]
    pub max_connections: usize,
    /// Requests handled at once (streams count until their head is sent); more get 503.
    #[arg(long, env = "OCAAS_MAX_INFLIGHT", default_value_t = 1024, value_parser = at_least_one::<usize>)]
    pub max_inflight: usize,
    /// Seconds a client may take to send a request's headers, and a keep-alive connection may
    /// sit idle, before it is closed.
    #[arg(long, env = "OCAAS_HEADER_TIMEOUT_SECS", default_value_t = 15, value_parser = at_least_one::<u64>)]
    pub header_timeout_secs: u64,
    /// Bearer token that `GET /metrics` requires; unset, `/metrics` is not served.
    #[arg(long, env = "OCAAS_METRICS_TOKEN", hide_env_values = true, value_parser = secret)]
    pub metrics_token: Option<SecretString>,
    /// Key sealing users' own provider keys (64 hex digits). Unset: `secret.key` in the data dir,
    /// created on first start.
    #[arg(long, env = "OCAAS_SECRET_KEY", hide_env_values = true, value_parser = secret)]
    pub secret_key: Option<SecretString>,
    /// Install missing Debian packages (PostgreSQL, debootstrap, noVNC, node-xterm) with apt
    /// when running as root; `false`: only say which command would.
    #[arg(long, env = "OCAAS_AUTO_INSTALL", default_value_t = true, action = clap::ArgAction::Set)]
    pub auto_install: bool,
    #[command(flatten)]
    pub instances: InstanceArgs,
}

/// Flags about sandboxes.
#[derive(Debug, Clone, Args)]
pub struct InstanceArgs {
    /// Sandbox image to run. Unset: the offline image, built by `--image-build-script` if missing.
    #[arg(long, env = "OCAAS_SANDBOX_IMAGE")]
    pub sandbox_image: Option<String>,
    /// Script that builds the offline sandbox image and prints its tag. Unset: the build
    /// context compiled into ocaas, written to `<data dir>/image-build/`.
    #[arg(long, env = "OCAAS_IMAGE_BUILD_SCRIPT")]
    pub image_build_script: Option<PathBuf>,
    /// Most instances this server runs at once (all users together).
    #[arg(long, env = "OCAAS_MAX_INSTANCES", default_value_t = 20, value_parser = at_least_one::<u32>)]
    pub max_instances: u32,
    /// Memory limit per sandbox (bytes, or with a k/m/g suffix).
    #[arg(long, env = "OCAAS_INSTANCE_MEMORY", default_value = "2g", value_parser = parse_size)]
    pub instance_memory: i64,
    /// CPU limit per sandbox, in CPUs.
    #[arg(long, env = "OCAAS_INSTANCE_CPUS", default_value_t = 1.0)]
    pub instance_cpus: f64,
    /// Process limit per sandbox.
    #[arg(long, env = "OCAAS_INSTANCE_PIDS", default_value_t = 512, value_parser = at_least_one::<i64>)]
    pub instance_pids: i64,
    /// How long a sandbox's gateway may take to become ready before the instance is `error`.
    #[arg(long, env = "OCAAS_READY_TIMEOUT_SECS", default_value_t = 180, value_parser = at_least_one::<u64>)]
    pub ready_timeout_secs: u64,
    /// Seconds between reconciler passes.
    #[arg(long, env = "OCAAS_RECONCILE_SECS", default_value_t = 10, value_parser = at_least_one::<u64>)]
    pub reconcile_secs: u64,
    /// OpenAI-compatible base URL of the LLM the agents use (passed to each sandbox).
    #[arg(long, env = "OCAAS_LLM_BASE_URL", default_value = "")]
    pub llm_base_url: String,
    #[arg(long, env = "OCAAS_LLM_API_KEY", default_value = "", hide_env_values = true, value_parser = secret)]
    pub llm_api_key: SecretString,
    #[arg(long, env = "OCAAS_LLM_MODEL", default_value = "")]
    pub llm_model: String,
    /// Largest file `files/read` returns as text (bigger ones: use `files/download`).
    #[arg(long, env = "OCAAS_MAX_READ_BYTES", default_value_t = 1 << 20, value_parser = at_least_one::<u64>)]
    pub max_read_bytes: u64,
    /// Largest file accepted by `files/write` and `files/upload`.
    #[arg(long, env = "OCAAS_MAX_UPLOAD_BYTES", default_value_t = 512 << 20, value_parser = at_least_one::<u64>)]
    pub max_upload_bytes: u64,
    /// Largest JSON body of `files/write` and `files/upload` (bigger files: multipart).
    #[arg(long, env = "OCAAS_MAX_JSON_UPLOAD_BYTES", default_value_t = 16 << 20, value_parser = at_least_one::<usize>)]
    pub max_json_upload_bytes: usize,
    /// Seconds a download may go unread before ocaas lets go of the engine's archive (the
    /// engine locks the sandbox while it streams one).
    #[arg(long, env = "OCAAS_STALL_TIMEOUT_SECS", default_value_t = 30, value_parser = at_least_one::<u64>)]
    pub stall_timeout_secs: u64,
    /// Disk quota per instance (`/workspace` and the agent's state), bytes or with a k/m/g
    /// suffix; 0: no quota (plain directories on the host's disk).
    #[arg(long, env = "OCAAS_INSTANCE_DISK", default_value = "10g", value_parser = parse_size_or_zero)]
    pub instance_disk: i64,
    /// Cap of each sandbox's container log (the engine rotates it).
    #[arg(long, env = "OCAAS_INSTANCE_LOG", default_value = "20m", value_parser = parse_size)]
    pub instance_log: i64,
    /// Where sandboxes may connect to: `public` (the internet, nothing private or on the host),
    /// `none` (only ocaas's endpoints and the allowlist) or `open` (no filtering).
    #[arg(long, env = "OCAAS_EGRESS", value_enum, default_value_t = EgressMode::Public)]
    pub egress: EgressMode,
    /// Extra destinations sandboxes may reach, comma-separated `CIDR` or `CIDR:PORT` (TCP).
    #[arg(long, env = "OCAAS_EGRESS_ALLOW", value_delimiter = ',', value_parser = clap::value_parser!(AllowRule))]
    pub egress_allow: Vec<AllowRule>,
    /// TCP port of the model broker, which listens on the sandbox network's gateway address
    /// only; `A-B`: the first free port of the range (several servers on one host).
    #[arg(long, env = "OCAAS_BROKER_PORT", default_value = "18790", value_parser = parse_port_range)]
    pub broker_port: (u16, u16),
    /// Let users point their instance's model at private, loopback or link-local addresses
    /// (a provider on the LAN); off: only public addresses, so the broker cannot be aimed at
    /// the host's or the network's internal services.
    #[arg(long, env = "OCAAS_MODEL_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub model_allow_private: bool,
    /// Cap per stream (stdout, stderr) of `terminal/exec` output.
    #[arg(long, env = "OCAAS_EXEC_MAX_OUTPUT", default_value_t = 1 << 20, value_parser = at_least_one::<usize>)]
    pub exec_max_output: usize,
}

/// A number of which 0 makes no sense (a limit, a timeout, an interval): refused, not clamped.
fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(raw: &str) -> Result<T, String> {
    match raw.trim().parse::<T>() {
        Ok(n) if n >= T::from(1) => Ok(n),
        _ => Err(format!("`{raw}` must be a whole number of at least 1")),
    }
}

/// `18790` or `18800-18999`.
fn parse_port_range(raw: &str) -> Result<(u16, u16), String> {
    let bad = || format!("`{raw}` is not a port or a port range like 18800-18999");
    let (first, last) = raw.trim().split_once('-').unwrap_or((raw.trim(), raw.trim()));
    let (first, last) = (first.parse::<u16>().map_err(|_| bad())?, last.parse::<u16>().map_err(|_| bad())?);
    if first == 0 || last < first { Err(bad()) } else { Ok((first, last)) }
}

/// Like `parse_size`, and `0` turns the limit off.
fn parse_size_or_zero(raw: &str) -> Result<i64, String> {
    if raw.trim() == "0" { Ok(0) } else { parse_size(raw) }
}

/// A value that must not show up in logs or `Debug` output.
fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(raw.to_owned()))
}

/// Parses `512m`, `2g`, `1048576` into bytes.
pub fn parse_size(raw: &str) -> Result<i64, String> {
    let raw = raw.trim().to_ascii_lowercase();
    let (digits, unit) = match raw.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => raw.split_at(at),
        None => (raw.as_str(), ""),
    };
    let multiplier: i64 = match unit.trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("`{raw}` is not a size (use e.g. 512m or 2g)")),
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{raw}` is not a size (use e.g. 512m or 2g)"))
}

/// An OpenAI-compatible endpoint; the key never prints (`Debug` shows it redacted).
#[derive(Debug, Clone)]
pub struct LlmSettings {
    pub base_url: String,
    pub api_key: SecretString,
    pub model: String,
}

/// Sandbox settings the server reads at run time.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    pub image: String,
    pub max_instances: u32,
    pub limits: crate::runtime::Limits,
    pub ready_timeout: std::time::Duration,
    pub reconcile_interval: std::time::Duration,
    /// The LLM the agents use.
    pub llm: LlmSettings,
    pub max_read_bytes: u64,
    pub max_upload_bytes: u64,
    /// JSON bodies of `files/write` and `files/upload` (read whole before use): at most this.
    pub max_json_upload_bytes: usize,
    pub exec_max_output: usize,
    pub stall_timeout: std::time::Duration,
    /// Where multipart uploads are spooled (`OCAAS_DATA_DIR/spool` for `ocaas serve`).
    pub spool_dir: PathBuf,
    /// Where each instance's storage lives (`OCAAS_DATA_DIR/instances` for `ocaas serve`).
    pub disk_root: PathBuf,
    /// 0: no quota.
    pub disk_quota_bytes: u64,
    pub egress: EgressPolicy,
    /// The model broker's port range (see `OCAAS_BROKER_PORT`).
    pub broker_ports: (u16, u16),
    /// Custom model endpoints may be private addresses.
    pub model_allow_private: bool,
}

impl InstanceSettings {
    /// Body limit of multipart `files/upload`: the file plus room for the form's other parts.
    pub fn upload_body_limit(&self) -> usize {
        usize::try_from(self.max_upload_bytes + (64 << 10)).unwrap_or(usize::MAX)
    }
}

impl InstanceSettings {
    pub fn from_args(args: &InstanceArgs, image: String) -> Self {
        InstanceSettings {
            image,
            max_instances: args.max_instances,
            limits: crate::runtime::Limits {
                memory_bytes: args.instance_memory,
                nano_cpus: (args.instance_cpus * 1e9) as i64,
                pids: args.instance_pids,
                log_bytes: args.instance_log as u64,
            },
            ready_timeout: std::time::Duration::from_secs(args.ready_timeout_secs),
            reconcile_interval: std::time::Duration::from_secs(args.reconcile_secs),
            llm: LlmSettings { base_url: args.llm_base_url.clone(), api_key: args.llm_api_key.clone(), model: args.llm_model.clone() },
            max_read_bytes: args.max_read_bytes,
            max_upload_bytes: args.max_upload_bytes,
            max_json_upload_bytes: args.max_json_upload_bytes,
            exec_max_output: args.exec_max_output,
            stall_timeout: std::time::Duration::from_secs(args.stall_timeout_secs),
            spool_dir: std::env::temp_dir().join("ocaas-spool"),
            disk_root: std::env::temp_dir().join("ocaas-instances"),
            disk_quota_bytes: args.instance_disk as u64,
            egress: EgressPolicy { mode: args.egress, allow: args.egress_allow.clone(), host_ports: vec![args.broker_port] },
            broker_ports: args.broker_port,
            model_allow_private: args.model_allow_private,
        }
    }
}

/// What handlers read at run time.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    /// Normalised origin without trailing slash, if configured.
    pub public_url: Option<String>,
    pub trust_proxy: bool,
    pub registration: RegistrationMode,
    pub max_body_bytes: usize,
    pub session_hours: u32,
    pub chat_timeout: std::time::Duration,
    pub max_answer_bytes: usize,
    pub ticket_ttl: std::time::Duration,
    pub novnc_dir: PathBuf,
    pub xterm_dir: PathBuf,
    pub metrics_token: Option<SecretString>,
    /// Seals users' own provider keys at rest.
    pub secret_key: crate::secrets::SecretKey,
    pub auth_per_minute_per_addr: std::num::NonZeroU32,
    pub login_per_minute_per_account: std::num::NonZeroU32,
    pub hash_concurrency: usize,
    pub limits: ServerLimits,
    pub user_limits: SlotLimits,
    pub instances: InstanceSettings,
}

/// Per-user caps on long-lived work at once.
#[derive(Debug, Clone, Copy)]
pub struct SlotLimits {
    pub exec: usize,
    pub terminal: usize,
    pub desktop: usize,
    pub stream: usize,
}

/// Limits of the HTTP server itself.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_inflight: usize,
    pub header_timeout: std::time::Duration,
}

impl Settings {
    /// `image` is the sandbox image resolved at start (configured or built).
    pub fn from_args(args: &ServeArgs, image: String) -> anyhow::Result<Self> {
        let public_url = args.public_url.as_deref().map(normalize_origin).transpose()?;
        Ok(Settings {
            bind: args.bind,
            public_url,
            trust_proxy: args.trust_proxy,
            registration: args.registration,
            max_body_bytes: args.max_body_bytes,
            session_hours: args.session_hours,
            chat_timeout: std::time::Duration::from_secs(args.chat_timeout_secs),
            max_answer_bytes: args.max_answer_bytes,
            ticket_ttl: std::time::Duration::from_secs(args.ticket_ttl_secs),
            novnc_dir: args.novnc_dir.clone(),
            xterm_dir: args.xterm_dir.clone(),
            metrics_token: args.metrics_token.clone(),
            secret_key: match &args.secret_key {
                Some(hex) => crate::secrets::SecretKey::from_hex(secrecy::ExposeSecret::expose_secret(hex)).map_err(anyhow::Error::msg)?,
                None => crate::secrets::SecretKey::random(),
            },
            auth_per_minute_per_addr: std::num::NonZeroU32::new(args.auth_per_minute_per_addr).expect("checked by the parser"),
            login_per_minute_per_account: std::num::NonZeroU32::new(args.login_per_minute_per_account).expect("checked by the parser"),
            hash_concurrency: if args.hash_concurrency == 0 {
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            } else {
                args.hash_concurrency
            },
            limits: ServerLimits {
                max_connections: args.max_connections,
                max_inflight: args.max_inflight,
                header_timeout: std::time::Duration::from_secs(args.header_timeout_secs),
            },
            user_limits: SlotLimits {
                exec: args.user_max_exec,
                terminal: args.user_max_terminals,
                desktop: args.user_max_desktops,
                stream: args.user_max_streams,
            },
            instances: InstanceSettings::from_args(&args.instances, image),
        })
    }

    /// The settings `ocaas serve` runs with when given no flags and no environment (tests and
    /// benchmarks start here and override what they need), with `image` as the sandbox image.
    pub fn defaults(image: &str) -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            serve: ServeArgs,
        }
        // Without the environment: only the declared defaults count.
        let command = Defaults::command().mut_args(|arg| arg.env(None::<&str>));
        let matches = command.try_get_matches_from(["ocaas"]).expect("the defaults parse");
        let args = Defaults::from_arg_matches(&matches).expect("the defaults parse").serve;
        Settings::from_args(&args, image.to_owned()).expect("the defaults are valid")
    }

    /// Cookies get `Secure` when the public origin is https.
    pub fn secure_cookies(&self) -> bool {
        self.public_url.as_deref().is_some_and(|u| u.starts_with("https://"))
    }
}

fn normalize_origin(raw: &str) -> anyhow::Result<String> {
    let parsed = url::Url::parse(raw).map_err(|e| anyhow::anyhow!("OCAAS_PUBLIC_URL `{raw}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        anyhow::bail!("OCAAS_PUBLIC_URL `{raw}` must be an http(s) URL with a host");
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("64kb"), Ok(64 << 10));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("3t").is_err());
    }

    #[test]
    fn zero_is_refused_where_it_makes_no_sense() {
        assert!(super::at_least_one::<u64>("0").is_err());
        assert_eq!(super::at_least_one::<u64>("5"), Ok(5));
        let defaults = super::Settings::defaults("img");
        assert_eq!(defaults.instances.reconcile_interval, std::time::Duration::from_secs(10));
        assert!(!format!("{defaults:?}").contains("OCAAS_LLM_API_KEY="));
    }
}
