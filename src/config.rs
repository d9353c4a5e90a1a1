//! Configuration: command-line flags, each with an `OCAAS_*` (or `DATABASE_URL`) environment
//! variable, and the `Settings` the running server reads from its state.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Where the database is and how logs look; shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// PostgreSQL URL. Without it ocaas runs its own private PostgreSQL under the data dir.
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,
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
    #[arg(long, env = "OCAAS_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long a browser session lasts, in hours.
    #[arg(long, env = "OCAAS_SESSION_HOURS", default_value_t = 24 * 14)]
    pub session_hours: u32,
    /// How long one chat turn may take before its assistant message ends in `error`.
    #[arg(long, env = "OCAAS_CHAT_TIMEOUT", default_value_t = 600)]
    pub chat_timeout_secs: u64,
    /// How long a websocket ticket from `vnc-url` stays valid, in seconds (one handshake).
    #[arg(long, env = "OCAAS_TICKET_TTL", default_value_t = 60)]
    pub ticket_ttl_secs: u64,
    /// noVNC's client files (Debian's `novnc` package), served for the desktop page.
    #[arg(long, env = "OCAAS_NOVNC_DIR", default_value = "/usr/share/novnc")]
    pub novnc_dir: PathBuf,
    /// xterm.js as CommonJS modules (Debian's `node-xterm` package), bundled for the dashboard's terminal.
    #[arg(long, env = "OCAAS_XTERM_DIR", default_value = "/usr/share/nodejs/xterm")]
    pub xterm_dir: PathBuf,
    #[command(flatten)]
    pub instances: InstanceArgs,
}

/// Flags about sandboxes.
#[derive(Debug, Clone, Args)]
pub struct InstanceArgs {
    /// Sandbox image to run. Unset: the offline image, built by `--image-build-script` if missing.
    #[arg(long, env = "OCAAS_SANDBOX_IMAGE")]
    pub sandbox_image: Option<String>,
    /// Script that builds the offline sandbox image and prints its tag.
    #[arg(long, env = "OCAAS_IMAGE_BUILD_SCRIPT", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/offline/build.sh"))]
    pub image_build_script: PathBuf,
    /// Most instances this server runs at once (all users together).
    #[arg(long, env = "OCAAS_MAX_INSTANCES", default_value_t = 20)]
    pub max_instances: u32,
    /// Memory limit per sandbox (bytes, or with a k/m/g suffix).
    #[arg(long, env = "OCAAS_INSTANCE_MEMORY", default_value = "2g", value_parser = parse_size)]
    pub instance_memory: i64,
    /// CPU limit per sandbox, in CPUs.
    #[arg(long, env = "OCAAS_INSTANCE_CPUS", default_value_t = 1.0)]
    pub instance_cpus: f64,
    /// Process limit per sandbox.
    #[arg(long, env = "OCAAS_INSTANCE_PIDS", default_value_t = 512)]
    pub instance_pids: i64,
    /// How long a sandbox's gateway may take to become ready before the instance is `error`.
    #[arg(long, env = "OCAAS_READY_TIMEOUT_SECS", default_value_t = 180)]
    pub ready_timeout_secs: u64,
    /// Seconds between reconciler passes.
    #[arg(long, env = "OCAAS_RECONCILE_SECS", default_value_t = 10)]
    pub reconcile_secs: u64,
    /// OpenAI-compatible base URL of the LLM the agents use (passed to each sandbox).
    #[arg(long, env = "OCAAS_LLM_BASE_URL", default_value = "")]
    pub llm_base_url: String,
    #[arg(long, env = "OCAAS_LLM_API_KEY", default_value = "", hide_env_values = true)]
    pub llm_api_key: String,
    #[arg(long, env = "OCAAS_LLM_MODEL", default_value = "")]
    pub llm_model: String,
    /// Largest file `files/read` returns as text (bigger ones: use `files/download`).
    #[arg(long, env = "OCAAS_MAX_READ_BYTES", default_value_t = 1 << 20)]
    pub max_read_bytes: u64,
    /// Largest file accepted by `files/write` and `files/upload`.
    #[arg(long, env = "OCAAS_MAX_UPLOAD_BYTES", default_value_t = 512 << 20)]
    pub max_upload_bytes: u64,
    /// Cap per stream (stdout, stderr) of `terminal/exec` output.
    #[arg(long, env = "OCAAS_EXEC_MAX_OUTPUT", default_value_t = 1 << 20)]
    pub exec_max_output: usize,
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

/// Sandbox settings the server reads at run time.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    pub image: String,
    pub max_instances: u32,
    pub limits: crate::runtime::Limits,
    pub ready_timeout: std::time::Duration,
    pub reconcile_interval: std::time::Duration,
    /// `KEY=value` pairs for the LLM, passed to every sandbox.
    pub llm_env: Vec<String>,
    pub max_read_bytes: u64,
    pub max_upload_bytes: u64,
    pub exec_max_output: usize,
}

impl InstanceSettings {
    /// Body limit of the upload routes: the file, base64-encoded in JSON, plus room for the rest.
    pub fn upload_body_limit(&self) -> usize {
        usize::try_from(self.max_upload_bytes / 3 * 4 + (64 << 10)).unwrap_or(usize::MAX)
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
            },
            ready_timeout: std::time::Duration::from_secs(args.ready_timeout_secs),
            reconcile_interval: std::time::Duration::from_secs(args.reconcile_secs.max(1)),
            llm_env: vec![
                format!("OCAAS_LLM_BASE_URL={}", args.llm_base_url),
                format!("OCAAS_LLM_API_KEY={}", args.llm_api_key),
                format!("OCAAS_LLM_MODEL={}", args.llm_model),
            ],
            max_read_bytes: args.max_read_bytes,
            max_upload_bytes: args.max_upload_bytes,
            exec_max_output: args.exec_max_output,
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
    pub ticket_ttl: std::time::Duration,
    pub novnc_dir: PathBuf,
    pub xterm_dir: PathBuf,
    pub instances: InstanceSettings,
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
            chat_timeout: std::time::Duration::from_secs(args.chat_timeout_secs.max(1)),
            ticket_ttl: std::time::Duration::from_secs(args.ticket_ttl_secs.max(1)),
            novnc_dir: args.novnc_dir.clone(),
            xterm_dir: args.xterm_dir.clone(),
            instances: InstanceSettings::from_args(&args.instances, image),
        })
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
}
