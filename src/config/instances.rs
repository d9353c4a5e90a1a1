//! Flags and settings of the sandboxes: limits, storage, network, the model broker and the
//! operator's model; and the value parsers every flag uses.

use std::path::PathBuf;

use clap::Args;
use secrecy::SecretString;

use crate::runtime::egress::{AllowRule, EgressMode, EgressPolicy};

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
    /// Lifetime of a driver lease (renewed every third of it while the work goes on): how long
    /// an instance whose driving process died waits before another process takes over.
    #[arg(long, env = "OCAAS_DRIVER_LEASE_SECS", default_value_t = 15, value_parser = at_least_one::<u64>)]
    pub driver_lease_secs: u64,
    /// OpenAI-compatible base URL of the LLM the agents use (passed to each sandbox).
    #[arg(long, env = "OCAAS_LLM_BASE_URL", default_value = "")]
    pub llm_base_url: String,
    #[arg(long, env = "OCAAS_LLM_API_KEY", default_value = "", hide_env_values = true, value_parser = secret)]
    pub llm_api_key: SecretString,
    #[arg(long, env = "OCAAS_LLM_MODEL", default_value = "")]
    pub llm_model: String,
    /// Without `OCAAS_LLM_MODEL`: the models sandboxes may ask for on the operator's key
    /// (comma-separated); none listed, calls on the operator's key are refused.
    #[arg(long, env = "OCAAS_LLM_ALLOWED_MODELS", value_delimiter = ',', default_value = "")]
    pub llm_allowed_models: Vec<String>,
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
pub(crate) fn at_least_one<T: std::str::FromStr + PartialOrd + From<u8>>(raw: &str) -> Result<T, String> {
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
pub(super) fn secret(raw: &str) -> Result<SecretString, std::convert::Infallible> {
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
    /// The one model of the operator's provider; empty: one of `allowed_models`.
    pub model: String,
    pub allowed_models: Vec<String>,
}

/// Sandbox settings the server reads at run time.
#[derive(Debug, Clone)]
pub struct InstanceSettings {
    pub image: String,
    pub max_instances: u32,
    pub limits: crate::runtime::Limits,
    pub ready_timeout: std::time::Duration,
    pub reconcile_interval: std::time::Duration,
    /// See `OCAAS_DRIVER_LEASE_SECS`.
    pub driver_lease: std::time::Duration,
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
            driver_lease: std::time::Duration::from_secs(args.driver_lease_secs),
            llm: LlmSettings {
                base_url: args.llm_base_url.clone(),
                api_key: args.llm_api_key.clone(),
                model: args.llm_model.clone(),
                allowed_models: args.llm_allowed_models.iter().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect(),
            },
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
