//! Host programs the runtime runs for sandboxes (`mkfs.ext4`, `mount`, `iptables`, …): one
//! way to run them, killed if the caller gives up, failing with the program's own words.

use std::ffi::OsStr;

use tokio::io::AsyncWriteExt;

use super::{RuntimeError, RuntimeResult};

/// Runs `program` with `args` (and `stdin`, if any); its stdout on success. `context` names
/// what it was for in the error (e.g. "egress policy").
pub async fn run(context: &str, program: &str, args: &[&OsStr], stdin: Option<&str>) -> RuntimeResult<String> {
    let failed = |detail: String| RuntimeError::Other(format!("{context}: {program}: {detail}"));
    let mut command = tokio::process::Command::new(program);
    command.args(args).kill_on_drop(true).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    command.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
    let mut child = command.spawn().map_err(|e| failed(e.to_string()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes()).await.map_err(|e| failed(e.to_string()))?;
    }
    let output = child.wait_with_output().await.map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let shown: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        Err(failed(format!("{}: {}", shown.join(" "), String::from_utf8_lossy(&output.stderr).trim())))
    }
}
