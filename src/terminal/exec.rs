//! One-shot commands: `/bin/sh -lc <command>` as the sandbox user, in its own process group so
//! a timeout can kill all of it, with output capped per stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{AppError, AppResult, ErrorCode};
use crate::files::paths::SandboxPath;
use crate::runtime::sandbox::{USER as SANDBOX_USER, WORKSPACE_DIR};
use crate::runtime::{ExecRequest, Runtime};

pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
pub const MAX_TIMEOUT_MS: u64 = 600_000;
const MAX_COMMAND_BYTES: usize = 256 << 10;
const MAX_ENV_VARS: usize = 200;
/// Exit status and stderr marker of the wrapper when `cwd` is not a directory it can enter.
const CWD_MISSING_EXIT: i64 = 199;
const CWD_MISSING_MARKER: &str = "ocaas: cwd is not an accessible directory";

/// `$1` command, `$2` cwd, run by the login shell itself (`/bin/sh -lc WRAPPER sh command cwd`):
/// it reads the profiles, enters `cwd` and evaluates the command with no positional parameters
/// and no variable of its own left. (A second shell `exec`ed for the command cost ~1 ms of
/// every exec; a `setsid -w` around it a fork, 2.4 ms, for nothing `timeout` does not do.)
/// Runs under `timeout`, which puts itself and the command in a process group of their own and
/// kills that whole group at the deadline inside the sandbox, whatever happens to the request
/// or to ocaas.
const WRAPPER: &str = r#"cd -- "$2" 2>/dev/null || { echo "ocaas: cwd is not an accessible directory" >&2; exit 199; }
__ocaas_command=$1; shift 2; eval "unset __ocaas_command; $__ocaas_command""#;
/// Kills every process whose environment carries `OCAAS_EXEC_ID=$0` (what the command started
/// inherits it). Nothing is written in the sandbox to find them: no file the tenant could
/// change; a process that scrubbed its environment on purpose has left on purpose.
const KILL_MARKED: &str = r#"for e in /proc/[0-9]*/environ; do
  if tr '\0' '\n' <"$e" 2>/dev/null | grep -qxF "OCAAS_EXEC_ID=$0"; then p=${e#/proc/}; kill -KILL "${p%/environ}" 2>/dev/null; fi
done; exit 0"#;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"command": "pwd", "timeout_ms": 5000}))]
pub struct ExecCommand {
    /// Run by `/bin/sh -lc` as the sandbox user.
    #[schema(min_length = 1)]
    pub command: String,
    /// Default 30000, at most 600000. On expiry the command's whole process group is killed.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 600000)]
    pub timeout_ms: Option<u64>,
    /// Absolute working directory (default `/workspace`).
    #[serde(default)]
    #[schema(pattern = "^/")]
    pub cwd: Option<String>,
    /// Extra environment variables.
    #[serde(default)]
    pub env: Option<HashMap<String, String>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"command": "pwd", "stdout": "/workspace\n", "stderr": "", "exit_code": 0, "duration_ms": 112, "timed_out": false, "truncated": false}))]
pub struct ExecResult {
    pub command: String,
    /// UTF-8 (invalid bytes replaced).
    pub stdout: String,
    pub stderr: String,
    /// `null` when the command timed out.
    pub exit_code: Option<i64>,
    pub duration_ms: u64,
    pub timed_out: bool,
    /// True when stdout or stderr was cut at `OCAAS_EXEC_MAX_OUTPUT` bytes.
    pub truncated: bool,
}

fn invalid(message: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::InvalidRequest, message)
}

fn validate(request: &ExecCommand) -> AppResult<(Duration, SandboxPath, Vec<String>)> {
    if request.command.trim().is_empty() || request.command.len() > MAX_COMMAND_BYTES || request.command.contains('\0') {
        return Err(invalid("`command` must be a non-empty string of at most 256 KiB without NUL bytes."));
    }
    let timeout_ms = request.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(invalid(format!("`timeout_ms` must be between 1 and {MAX_TIMEOUT_MS}.")));
    }
    let cwd = SandboxPath::parse(request.cwd.as_deref().unwrap_or(WORKSPACE_DIR))?;
    let env = request.env.clone().unwrap_or_default();
    if env.len() > MAX_ENV_VARS {
        return Err(invalid(format!("`env` may hold at most {MAX_ENV_VARS} variables.")));
    }
    let mut pairs = Vec::with_capacity(env.len());
    for (name, value) in env {
        let valid_name =
            name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_name || value.contains('\0') {
            return Err(invalid(format!("`env` entry `{}` needs a name like MY_VAR and a value without NUL.", name.escape_debug())));
        }
        pairs.push(format!("{name}={value}"));
    }
    Ok((Duration::from_millis(timeout_ms), cwd, pairs))
}

/// The command line that runs `command` in `cwd` with a deadline inside the sandbox.
pub fn command_line(command: &str, cwd: &str, timeout_ms: u64) -> Vec<String> {
    // `timeout` needs whole seconds; ocaas stops waiting at the exact deadline and kills then.
    let deadline_secs = timeout_ms.div_ceil(1000).to_string();
    ["timeout", "-s", "KILL", &deadline_secs, "/bin/sh", "-lc", WRAPPER, "sh", command, cwd].map(str::to_owned).to_vec()
}

/// Kills the command's processes if the request ends before the command does (the client
/// went away and its future was dropped).
struct KillOnDrop {
    runtime: Arc<dyn Runtime>,
    sandbox: String,
    marker: String,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let (runtime, sandbox, marker) = (self.runtime.clone(), std::mem::take(&mut self.sandbox), std::mem::take(&mut self.marker));
            tokio::spawn(async move {
                if let Err(error) = kill_marked(runtime.as_ref(), &sandbox, &marker).await {
                    tracing::warn!(%sandbox, %error, "exec: ending the command of a request that went away");
                }
            });
        }
    }
}

async fn kill_marked(runtime: &dyn Runtime, sandbox: &str, marker: &str) -> Result<(), crate::runtime::RuntimeError> {
    let cmd = ["/bin/sh", "-c", KILL_MARKED, marker].map(str::to_owned).to_vec();
    let kill = ExecRequest { cmd, user: Some(SANDBOX_USER.into()), max_output: 4096, timeout: Some(Duration::from_secs(10)), ..Default::default() };
    runtime.exec(sandbox, kill).await.map(|_| ())
}

/// Runs the command with output capped at `max_output` bytes per stream. It ends at its
/// timeout inside the sandbox, and as soon as the request does.
pub async fn run(runtime: Arc<dyn Runtime>, max_output: usize, sandbox: &str, request: ExecCommand) -> AppResult<ExecResult> {
    let (timeout, cwd, mut env) = validate(&request)?;
    let marker = Uuid::new_v4().simple().to_string();
    env.push(format!("OCAAS_EXEC_ID={marker}"));
    let cmd = command_line(&request.command, cwd.as_str(), timeout.as_millis() as u64);
    let exec = ExecRequest { cmd, env, user: Some(SANDBOX_USER.into()), max_output, timeout: Some(timeout), ..Default::default() };
    let started = Instant::now();
    let mut guard = KillOnDrop { runtime: runtime.clone(), sandbox: sandbox.to_owned(), marker: marker.clone(), armed: true };
    let output = runtime.exec(sandbox, exec).await?;
    guard.armed = false;
    if output.timed_out {
        kill_marked(runtime.as_ref(), sandbox, &marker).await?;
    }
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if output.exit_code == Some(CWD_MISSING_EXIT) && stderr.trim() == CWD_MISSING_MARKER {
        return Err(AppError::new(ErrorCode::InvalidCwd, format!("`cwd` {} is not a directory the sandbox user can enter.", cwd.as_str())));
    }
    Ok(ExecResult {
        command: request.command,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr,
        exit_code: output.exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        timed_out: output.timed_out,
        truncated: output.truncated,
    })
}
