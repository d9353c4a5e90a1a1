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
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let public_url = args.public_url.as_deref().map(normalize_origin).transpose()?;
        Ok(Settings {
            bind: args.bind,
            public_url,
            trust_proxy: args.trust_proxy,
            registration: args.registration,
            max_body_bytes: args.max_body_bytes,
            session_hours: args.session_hours,
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
