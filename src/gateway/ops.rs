//! Operations on the gateway process itself, run in the sandbox as its user: a restart
//! (`SIGUSR1` to the gateway, which the real one takes as "restart in place"; tini passes it
//! on) and `openclaw doctor --lint --json`, whose findings the API returns. Both outputs are
//! capped; nothing the sandbox prints sizes anything here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::models::{Doctor, Finding, Restarted};
use super::{Link, rpc};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::repo::InstanceRow;
use crate::runtime::{ExecRequest, Runtime};

const DOCTOR_OUTPUT: usize = 256 << 10;
const MAX_FINDINGS: usize = 200;
/// How long a restarted gateway has to answer again.
const RESTART_WAIT: Duration = Duration::from_secs(60);

fn as_sandbox_user(cmd: &[&str], timeout: Duration, max_output: usize) -> ExecRequest {
    ExecRequest {
        cmd: cmd.iter().map(|s| (*s).to_owned()).collect(),
        env: Vec::new(),
        working_dir: None,
        user: Some(format!("{0}:{0}", crate::runtime::disk::SANDBOX_OWNER)),
        max_output,
        timeout: Some(timeout),
    }
}

/// Restarts the gateway in place and waits for it to answer again.
pub async fn restart(link: &Link, runtime: &Arc<dyn Runtime>, instance: &InstanceRow) -> AppResult<Restarted> {
    let started = Instant::now();
    let before = link.connection(instance, Duration::from_secs(5)).await.ok();
    let output = runtime.exec(&instance.sandbox_id, as_sandbox_user(&["kill", "-USR1", "1"], Duration::from_secs(10), 4 << 10)).await?;
    if output.exit_code != Some(0) {
        return Err(AppError::new(ErrorCode::GatewayRejected, "The gateway could not be signalled to restart."));
    }
    // The old connection ends when the old process does.
    if let Some(before) = before {
        let _ = tokio::time::timeout(Duration::from_secs(5), before.closed()).await;
    }
    while started.elapsed() < RESTART_WAIT {
        if rpc::answers(link, instance).await {
            return Ok(Restarted { ready: true, took_ms: started.elapsed().as_millis() as u64 });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(Restarted { ready: false, took_ms: started.elapsed().as_millis() as u64 })
}

/// `openclaw doctor --lint --json` in the sandbox.
pub async fn doctor(runtime: &Arc<dyn Runtime>, instance: &InstanceRow) -> AppResult<Doctor> {
    let request = as_sandbox_user(&["openclaw", "doctor", "--lint", "--json"], Duration::from_secs(60), DOCTOR_OUTPUT);
    let output = runtime.exec(&instance.sandbox_id, request).await?;
    let report: Value = match (output.exit_code, serde_json::from_slice(&output.stdout)) {
        (Some(0 | 1), Ok(report)) => report,
        _ => {
            let why = rpc::clean(&String::from_utf8_lossy(&output.stderr));
            return Err(AppError::new(ErrorCode::GatewayRejected, format!("openclaw doctor failed: {why}")));
        }
    };
    let list = report.get("findings").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let findings: Vec<Finding> = list
        .iter()
        .take(MAX_FINDINGS)
        .map(|f| Finding {
            check_id: rpc::text(f, "checkId", 128).unwrap_or_default(),
            severity: rpc::text(f, "severity", 16).unwrap_or_else(|| "info".into()),
            message: rpc::text(f, "message", 1000).map(|m| rpc::clean(&m)).unwrap_or_default(),
            path: rpc::text(f, "path", 300),
            fix_hint: rpc::text(f, "fixHint", 1000).map(|m| rpc::clean(&m)),
        })
        .collect();
    Ok(Doctor { ok: !findings.iter().any(|f| f.severity == "error"), findings })
}
