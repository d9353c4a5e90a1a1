//! Interactive shells on a pseudo-terminal: `bash -l` (or `sh -l`) in `/workspace` as the
//! sandbox user, the control frames a terminal client sends, and ending the shell's whole
//! session when the client goes away.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::Deserialize;

use crate::runtime::sandbox::USER as SANDBOX_USER;
use crate::runtime::{ExecRequest, Runtime, RuntimeResult, TtyRequest, TtySession};
use crate::wsbridge::Upstream;

pub const DEFAULT_COLS: u16 = 80;
pub const DEFAULT_ROWS: u16 = 24;
pub const MAX_DIMENSION: u16 = 1000;

/// `$0` is the pid file. The shell is the leader of the session the engine gives a TTY exec,
/// so its pid names every process started from the terminal (see `HANG_UP`).
const SHELL: &str = r#"echo $$ > "$0"; cd /workspace 2>/dev/null || cd
if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"#;
/// Hangs up the terminal's session like closing a terminal window would, then kills what is left.
const HANG_UP: &str = r#"sid=$(cat -- "$0" 2>/dev/null) && [ -n "$sid" ] && {
  pkill -HUP -s "$sid"; sleep 0.3; pkill -KILL -s "$sid"; }; rm -f -- "$0"; exit 0"#;

/// A text frame from a terminal client.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Control {
    Input { data: String },
    Resize { cols: u16, rows: u16 },
}

/// What a text frame asks for; text that is not a control message is typed as it is, so
/// `websocat` (which sends text frames) works as a terminal.
pub fn parse_text(text: &str) -> Option<Control> {
    if !text.trim_start().starts_with('{') {
        return Some(Control::Input { data: text.to_owned() });
    }
    match serde_json::from_str::<Control>(text) {
        Ok(Control::Resize { cols, rows }) if !valid_size(cols, rows) => None,
        Ok(control) => Some(control),
        Err(_) if serde_json::from_str::<serde_json::Value>(text).is_ok() => None,
        Err(_) => Some(Control::Input { data: text.to_owned() }),
    }
}

pub fn valid_size(cols: u16, rows: u16) -> bool {
    (1..=MAX_DIMENSION).contains(&cols) && (1..=MAX_DIMENSION).contains(&rows)
}

/// One open terminal.
pub struct Terminal {
    runtime: Arc<dyn Runtime>,
    sandbox: String,
    exec_id: String,
    pid_file: String,
}

pub async fn open(runtime: Arc<dyn Runtime>, sandbox: &str, cols: u16, rows: u16) -> RuntimeResult<(Terminal, TtySession)> {
    let pid_file = format!("/tmp/.ocaas-tty-{}.pid", uuid::Uuid::new_v4().simple());
    let request = TtyRequest {
        cmd: ["/bin/sh", "-c", SHELL, &pid_file].map(str::to_owned).to_vec(),
        env: vec!["TERM=xterm-256color".into(), "COLORTERM=truecolor".into(), "LANG=C.UTF-8".into()],
        working_dir: Some("/".into()),
        user: Some(SANDBOX_USER.into()),
        cols,
        rows,
    };
    let session = runtime.exec_tty(sandbox, request).await?;
    let terminal = Terminal { runtime, sandbox: sandbox.to_owned(), exec_id: session.exec_id.clone(), pid_file };
    Ok((terminal, session))
}

impl Terminal {
    /// Ends every process of the terminal's session (the shell and what it started).
    pub async fn hang_up(&self) {
        let request = ExecRequest {
            cmd: ["/bin/sh", "-c", HANG_UP, &self.pid_file].map(str::to_owned).to_vec(),
            user: Some(SANDBOX_USER.into()),
            max_output: 4096,
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        if let Err(error) = self.runtime.exec(&self.sandbox, request).await {
            tracing::warn!(sandbox = %self.sandbox, %error, "could not hang up a terminal");
        }
    }
}

#[async_trait]
impl Upstream for Terminal {
    async fn on_text(&mut self, text: &str) -> Option<Bytes> {
        match parse_text(text)? {
            Control::Input { data } => Some(Bytes::from(data)),
            Control::Resize { cols, rows } => {
                // Awaited, so input sent after a resize meets the new size.
                if let Err(error) = self.runtime.resize_tty(&self.exec_id, cols, rows).await {
                    tracing::debug!(%error, "terminal resize failed");
                }
                None
            }
        }
    }

    async fn farewell(&mut self) -> Option<String> {
        // The engine may report the exec as running for a moment after its output ends.
        for _ in 0..50 {
            match self.runtime.exec_exit_code(&self.exec_id).await {
                Ok(Some(code)) => return Some(serde_json::json!({"type": "exit", "code": code}).to_string()),
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => break,
            }
        }
        Some(serde_json::json!({"type": "exit", "code": null}).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_frames_are_control_messages_or_keystrokes() {
        assert_eq!(parse_text(r#"{"type":"resize","cols":120,"rows":40}"#), Some(Control::Resize { cols: 120, rows: 40 }));
        assert_eq!(parse_text(r#"{"type":"input","data":"ls\n"}"#), Some(Control::Input { data: "ls\n".into() }));
        assert_eq!(parse_text("ls -la\n"), Some(Control::Input { data: "ls -la\n".into() }));
        assert_eq!(parse_text(r#"{"type":"resize","cols":0,"rows":40}"#), None);
        assert_eq!(parse_text(r#"{"type":"bogus"}"#), None);
        assert_eq!(parse_text("{ not json"), Some(Control::Input { data: "{ not json".into() }));
    }
}
