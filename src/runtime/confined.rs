//! A helper process run with hard limits: work on something a sandbox sent whose cost the
//! sandbox could choose (a JSON Schema's validation is exponential in the worst case) runs in a
//! child whose address space and CPU time the kernel caps, ended after a deadline, its output
//! read up to a bound. The server itself spends a process slot and a few milliseconds.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the child may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpu_secs: u64,
    pub wall: Duration,
    pub max_output: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfinedError {
    #[error("the helper could not be started: {0}")]
    Spawn(std::io::Error),
    #[error("the helper took longer than allowed")]
    Timeout,
    #[error("the helper failed (out of its memory or time, or refused the input)")]
    Failed,
}

/// Runs `exe args…` with `input` on its stdin; its stdout (at most `max_output` bytes).
pub async fn run(exe: &Path, args: &[&str], input: Vec<u8>, limits: Limits) -> Result<Vec<u8>, ConfinedError> {
    let mut command = tokio::process::Command::new(exe);
    command.args(args).env_clear().stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
    let (memory, cpu) = (limits.memory_bytes, limits.cpu_secs);
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let set = |resource, value: u64| {
                let limit = libc::rlimit { rlim_cur: value, rlim_max: value };
                if libc::setrlimit(resource, &limit) != 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) }
            };
            set(libc::RLIMIT_AS, memory)?;
            set(libc::RLIMIT_CPU, cpu)?;
            set(libc::RLIMIT_CORE, 0)
        });
    }
    let mut child = command.spawn().map_err(ConfinedError::Spawn)?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let work = async move {
        // The child may exit before reading everything (it failed): that shows in its status.
        let _ = stdin.write_all(&input).await;
        drop(stdin);
        let mut output = Vec::new();
        let read = (&mut stdout).take(limits.max_output as u64 + 1).read_to_end(&mut output).await;
        let status = child.wait().await;
        match (read, status) {
            (Ok(_), Ok(status)) if status.success() && output.len() <= limits.max_output => Ok(output),
            _ => Err(ConfinedError::Failed),
        }
    };
    tokio::time::timeout(limits.wall, work).await.map_err(|_| ConfinedError::Timeout)?
}
