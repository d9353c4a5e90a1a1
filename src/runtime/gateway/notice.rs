//! The operator events a gateway broadcasts that ocaas keeps (approval requests and answers,
//! schedule runs), read into small bounded values as they arrive: the queue to the agent domain
//! holds these, never a gateway's JSON tree, whatever the gateway sends.

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

const MAX_ID: usize = 128;
const MAX_COMMAND: usize = 4096;
const MAX_SHORT: usize = 512;

#[derive(Debug, Clone)]
pub struct Notice {
    pub instance_id: Uuid,
    pub kind: NoticeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NoticeKind {
    ApprovalRequested {
        id: String,
        plugin: bool,
        command: String,
        cwd: Option<String>,
        session_key: Option<String>,
        created_at_ms: Option<i64>,
        expires_at_ms: Option<i64>,
    },
    ApprovalResolved {
        id: String,
        /// `allow-once`, `allow-always` or `deny`; `None` for anything else (expired).
        decision: Option<&'static str>,
    },
    /// A schedule changed or ran (`cron`).
    Cron { job_id: Option<String>, action: String, ok: bool, run_at_ms: Option<i64>, duration_ms: Option<i64> },
}

/// The events that become notices.
pub const EVENTS: [&str; 5] = ["exec.approval.requested", "exec.approval.resolved", "plugin.approval.requested", "plugin.approval.resolved", "cron"];

fn short(text: Option<String>, max: usize) -> Option<String> {
    text.map(|t| t.chars().filter(|c| !c.is_control()).take(max).collect())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Request {
    command: Option<String>,
    title: Option<String>,
    description: Option<String>,
    cwd: Option<String>,
    session_key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Approval {
    id: Option<String>,
    request: Option<Request>,
    created_at_ms: Option<i64>,
    expires_at_ms: Option<i64>,
    decision: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Cron {
    job_id: Option<String>,
    action: Option<String>,
    status: Option<String>,
    run_at_ms: Option<i64>,
    duration_ms: Option<i64>,
}

/// The notice in event `name` with `payload`, if it is one ocaas keeps and is readable.
pub fn read(name: &str, payload: Value) -> Option<NoticeKind> {
    match name {
        "exec.approval.requested" | "plugin.approval.requested" => {
            let approval: Approval = serde_json::from_value(payload).ok()?;
            let id = approval.id.filter(|id| !id.is_empty() && id.len() <= MAX_ID && !id.chars().any(char::is_control))?;
            let request = approval.request.unwrap_or_default();
            let command = request.command.or(request.title).or(request.description);
            Some(NoticeKind::ApprovalRequested {
                id,
                plugin: name.starts_with("plugin."),
                command: short(command, MAX_COMMAND).unwrap_or_default(),
                cwd: short(request.cwd, MAX_SHORT),
                session_key: short(request.session_key, MAX_SHORT),
                created_at_ms: approval.created_at_ms,
                expires_at_ms: approval.expires_at_ms,
            })
        }
        "exec.approval.resolved" | "plugin.approval.resolved" => {
            let approval: Approval = serde_json::from_value(payload).ok()?;
            let id = approval.id.filter(|id| !id.is_empty() && id.len() <= MAX_ID && !id.chars().any(char::is_control))?;
            let decision = match approval.decision.as_deref() {
                Some("allow-once") => Some("allow-once"),
                Some("allow-always") => Some("allow-always"),
                Some("deny") => Some("deny"),
                _ => None,
            };
            Some(NoticeKind::ApprovalResolved { id, decision })
        }
        "cron" => {
            let cron: Cron = serde_json::from_value(payload).ok()?;
            Some(NoticeKind::Cron {
                job_id: short(cron.job_id, MAX_ID),
                action: short(cron.action, 32).unwrap_or_default(),
                ok: cron.status.as_deref() == Some("ok"),
                run_at_ms: cron.run_at_ms,
                duration_ms: cron.duration_ms,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn notices_are_read_small_whatever_the_gateway_sends() {
        let huge = "x".repeat(1 << 20);
        let payload = json!({"id": "a1", "request": {"command": huge, "cwd": "/w\u{1b}[2J", "extra": [1, 2, 3]}, "createdAtMs": 1});
        let Some(NoticeKind::ApprovalRequested { command, cwd, .. }) = read("exec.approval.requested", payload) else { panic!() };
        assert_eq!(command.len(), MAX_COMMAND);
        assert_eq!(cwd.as_deref(), Some("/w[2J"), "control characters dropped");
        assert_eq!(read("exec.approval.requested", json!({"id": "x".repeat(200)})), None, "an id too long is no notice");
        assert_eq!(read("exec.approval.requested", json!("nonsense")), None);
        let resolved = read("exec.approval.resolved", json!({"id": "a1", "decision": "obey"}));
        assert_eq!(resolved, Some(NoticeKind::ApprovalResolved { id: "a1".into(), decision: None }));
        let cron = read("cron", json!({"jobId": "j", "action": "finished", "status": "ok", "runAtMs": 5}));
        assert!(matches!(cron, Some(NoticeKind::Cron { ok: true, run_at_ms: Some(5), .. })));
    }
}
