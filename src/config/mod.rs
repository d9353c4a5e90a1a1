//! Configuration: command-line flags, each with an `OCAAS_*` (or `DATABASE_URL`) environment
//! variable, and the `Settings` the running server reads from its state.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, ValueEnum};
use secrecy::SecretString;

mod idle;
mod instances;
mod snapshots;

pub use crate::net::{IpNet, parse_net};
pub use idle::{IdleArgs, IdleSettings, parse_duration};
pub(crate) use instances::at_least_one;
use instances::secret;
pub use instances::{InstanceArgs, InstanceSettings, LlmSettings, parse_size};
pub use snapshots::{S3Location, SnapshotArgs, SnapshotSettings};

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
    /// How chat reaches each instance's gateway: `auto` (its WebSocket protocol, with tool
    /// steps, stop and imported turns; HTTP where the gateway does not speak it) or `http`.
    #[arg(long, env = "OCAAS_GATEWAY_PROTOCOL", value_enum, default_value_t = GatewayProtocol::Auto)]
    pub gateway_protocol: GatewayProtocol,
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
    /// Per user: requests being handled at once (until their response head); more get 429
    /// `too_many_in_flight`.
    #[arg(long, env = "OCAAS_USER_MAX_INFLIGHT", default_value_t = 64, value_parser = at_least_one::<usize>)]
    pub user_max_inflight: usize,
    /// Per client address: requests without credentials (and sign-ins, registrations) being
    /// handled at once; more get 429 `too_many_in_flight`.
    #[arg(long, env = "OCAAS_ADDR_MAX_INFLIGHT", default_value_t = 32, value_parser = at_least_one::<usize>)]
    pub addr_max_inflight: usize,
    /// Seconds a request body may take before it must arrive at 4 KiB/s or more (uploads get
    /// three times as long); slower bodies are cut with 408 `body_too_slow`.
    #[arg(long, env = "OCAAS_BODY_TIMEOUT_SECS", default_value_t = 10, value_parser = at_least_one::<u64>)]
    pub body_timeout_secs: u64,
    /// Reverse proxies whose `X-Forwarded-For` is believed when `OCAAS_TRUST_PROXY` is on
    /// (comma-separated addresses or CIDRs): the client is the right-most hop not among them.
    #[arg(long, env = "OCAAS_TRUSTED_PROXIES", value_delimiter = ',', default_value = "127.0.0.0/8,::1/128", value_parser = parse_net)]
    pub trusted_proxies: Vec<IpNet>,
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
    /// Let users aim webhooks at private, loopback or link-local addresses (receivers on the
    /// LAN); off: only public addresses, so webhooks cannot reach the host's internal services.
    #[arg(long, env = "OCAAS_WEBHOOK_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub webhook_allow_private: bool,
    #[command(flatten)]
    pub instances: InstanceArgs,
    #[command(flatten)]
    pub idle: IdleArgs,
    #[command(flatten)]
    pub snapshots: SnapshotArgs,
}

/// What handlers read at run time.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    /// Normalised origin without trailing slash, if configured.
    pub public_url: Option<String>,
    pub trust_proxy: bool,
    /// The proxies `X-Forwarded-For` hops are believed from (with `trust_proxy`).
    pub trusted_proxies: Vec<IpNet>,
    pub registration: RegistrationMode,
    pub max_body_bytes: usize,
    pub session_hours: u32,
    pub chat_timeout: std::time::Duration,
    pub max_answer_bytes: usize,
    pub gateway_protocol: GatewayProtocol,
    pub ticket_ttl: std::time::Duration,
    pub novnc_dir: PathBuf,
    pub xterm_dir: PathBuf,
    pub metrics_token: Option<SecretString>,
    /// Seals users' own provider keys at rest.
    pub secret_key: crate::secrets::SecretKey,
    pub auth_per_minute_per_addr: std::num::NonZeroU32,
    pub login_per_minute_per_account: std::num::NonZeroU32,
    pub hash_concurrency: usize,
    /// How often the `last_used_at` of keys served from the credential cache is written.
    pub key_touch_interval: std::time::Duration,
    pub limits: ServerLimits,
    pub user_limits: SlotLimits,
    pub instances: InstanceSettings,
    pub idle: IdleSettings,
    pub snapshots: SnapshotSettings,
    /// The `ocaas` binary, run confined for work on what a sandbox sent that could cost
    /// unbounded CPU or memory (checking a configuration against the gateway's schema).
    pub helper_exe: std::path::PathBuf,
    /// `OCAAS_WEBHOOK_ALLOW_PRIVATE`.
    pub webhook_allow_private: bool,
}

/// Per-user caps on long-lived work at once.
#[derive(Debug, Clone, Copy)]
pub struct SlotLimits {
    pub exec: usize,
    pub terminal: usize,
    pub desktop: usize,
    pub stream: usize,
    pub request: usize,
}

/// Limits of the HTTP server itself.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub max_inflight: usize,
    pub addr_max_inflight: usize,
    pub body_timeout: std::time::Duration,
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
            trusted_proxies: args.trusted_proxies.clone(),
            registration: args.registration,
            max_body_bytes: args.max_body_bytes,
            session_hours: args.session_hours,
            chat_timeout: std::time::Duration::from_secs(args.chat_timeout_secs),
            max_answer_bytes: args.max_answer_bytes,
            gateway_protocol: args.gateway_protocol,
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
            key_touch_interval: std::time::Duration::from_secs(60),
            limits: ServerLimits {
                max_connections: args.max_connections,
                max_inflight: args.max_inflight,
                addr_max_inflight: args.addr_max_inflight,
                body_timeout: std::time::Duration::from_secs(args.body_timeout_secs),
                header_timeout: std::time::Duration::from_secs(args.header_timeout_secs),
            },
            user_limits: SlotLimits {
                exec: args.user_max_exec,
                terminal: args.user_max_terminals,
                desktop: args.user_max_desktops,
                stream: args.user_max_streams,
                request: args.user_max_inflight,
            },
            instances: InstanceSettings::from_args(&args.instances, image),
            idle: IdleSettings::from(&args.idle),
            snapshots: SnapshotSettings::from_args(&args.snapshots).map_err(anyhow::Error::msg)?,
            helper_exe: std::env::current_exe().unwrap_or_else(|_| "ocaas".into()),
            webhook_allow_private: args.webhook_allow_private,
        })
    }

    /// `serve`'s settings as the environment gives them (no flags): what every other command
    /// (`migrate`, `admin …`) runs with, so it sees the instances as the server does.
    pub fn args_from_env() -> anyhow::Result<ServeArgs> {
        #[derive(Parser)]
        struct FromEnv {
            #[command(flatten)]
            serve: ServeArgs,
        }
        // Clap names the flag; the operator set the variable, so both are named.
        let parsed = FromEnv::try_parse_from(["ocaas"]).map_err(|e| {
            let flag = e.get(clap::error::ContextKind::InvalidArg).map(|arg| arg.to_string()).unwrap_or_default();
            let long = flag.split_whitespace().next().unwrap_or_default().trim_start_matches("--").to_owned();
            let command = FromEnv::command();
            let variable = command.get_arguments().find(|a| a.get_long() == Some(long.as_str())).and_then(|a| a.get_env());
            match variable {
                Some(variable) => anyhow::anyhow!("the environment's {}: {e}", variable.to_string_lossy()),
                None => anyhow::anyhow!("the environment's settings: {e}"),
            }
        })?;
        Ok(parsed.serve)
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

/// How chat reaches the gateways (`OCAAS_GATEWAY_PROTOCOL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GatewayProtocol {
    /// The gateway's WebSocket protocol where it speaks it, else HTTP.
    Auto,
    /// Only `/v1/chat/completions` (no tool steps, no stop, no imported turns).
    Http,
}
