//! Answering the agent's approval requests, and the tool policy that decides when it asks.
//! Requests are kept as the gateway broadcast them (`notices`); an answer goes to the gateway
//! (`exec.approval.resolve`, `plugin.approval.resolve`) and is recorded at once, so the feed and
//! every replica agree whichever hears the gateway's `…resolved` first.
//!
//! The tool policy is three families written into the gateway's configuration through the safe
//! patch: `exec` (`tools.exec.security`/`ask`), and `web` and `browser` (in `tools.deny`).

use serde_json::{Value, json};

use super::feed::{self, AgentFeedEvent};
use super::models::{Approval, ApprovalKind, ApprovalStatus, Decision, ToolMode, ToolPolicy};
use super::repo::agent as repo;
use super::{Link, config, rpc};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::repo::InstanceRow;
use crate::runtime::disk::DiskSpec;

pub async fn resolve(link: &Link, instance: &InstanceRow, id: &str, decision: Decision) -> AppResult<Approval> {
    let found = repo::approval(&link.db, instance.id, id).await?;
    let approval = found.ok_or_else(|| AppError::new(ErrorCode::ApprovalNotFound, "The agent has no approval request with that id."))?;
    if approval.status != ApprovalStatus::Pending {
        return Err(AppError::new(ErrorCode::ApprovalClosed, format!("The request is {} already.", approval.status)));
    }
    let method = match approval.kind {
        ApprovalKind::Exec => "exec.approval.resolve",
        ApprovalKind::Plugin => "plugin.approval.resolve",
    };
    rpc::call(link, instance, method, json!({"id": id, "decision": decision.gateway_word()})).await?;
    let status = Decision::outcome(Some(decision));
    match repo::resolve_approval(&link.db, instance.id, id, status, Some(decision)).await? {
        Some(done) => {
            feed::publish(&link.db, instance.id, &format!("approval:{id}:closed"), &AgentFeedEvent::Approval(done.clone())).await?;
            Ok(done)
        }
        // The gateway's own `resolved` was recorded first.
        None => repo::approval(&link.db, instance.id, id).await?.ok_or_else(|| AppError::new(ErrorCode::ApprovalNotFound, "The request is gone.")),
    }
}

/// The policy as the gateway's configuration says.
pub async fn policy(link: &Link, instance: &InstanceRow) -> AppResult<ToolPolicy> {
    let shown = rpc::call(link, instance, "config.get", json!({})).await?;
    Ok(policy_of(shown.get("config").unwrap_or(&Value::Null)))
}

/// The policy a configuration (`openclaw.json`, as shown) sets.
fn policy_of(config: &Value) -> ToolPolicy {
    let tools = config.get("tools").unwrap_or(&Value::Null);
    let exec = tools.get("exec").unwrap_or(&Value::Null);
    let security = exec.get("security").and_then(Value::as_str).unwrap_or("full");
    let ask = exec.get("ask").and_then(Value::as_str).unwrap_or("off");
    let denied = deny_list(tools);
    let family = |name: &str| if denied.iter().any(|d| d == name) { ToolMode::Deny } else { ToolMode::Allow };
    ToolPolicy {
        exec: match (security, ask) {
            ("deny", _) => ToolMode::Deny,
            (_, "always" | "on-miss") => ToolMode::Ask,
            _ => ToolMode::Allow,
        },
        web: family(WEB),
        browser: family(BROWSER),
    }
}

const WEB: &str = "group:web";
const BROWSER: &str = "browser";

fn deny_list(tools: &Value) -> Vec<String> {
    let list = tools.get("deny").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    list.iter().take(1000).filter_map(Value::as_str).map(str::to_owned).collect()
}

/// Writes `wanted` into the gateway's configuration (one safe patch).
pub async fn set_policy(link: &Link, disk: &DiskSpec, instance: &InstanceRow, wanted: &ToolPolicy) -> AppResult<ToolPolicy> {
    if wanted.web == ToolMode::Ask || wanted.browser == ToolMode::Ask {
        return Err(AppError::new(ErrorCode::InvalidRequest, "Only `exec` can ask first; `web` and `browser` are `allow` or `deny`."));
    }
    let shown = rpc::call(link, instance, "config.get", json!({})).await?;
    let mut deny = deny_list(shown.pointer("/config/tools").unwrap_or(&Value::Null));
    for (name, mode) in [(WEB, wanted.web), (BROWSER, wanted.browser)] {
        deny.retain(|d| d != name);
        if mode == ToolMode::Deny {
            deny.push(name.to_owned());
        }
    }
    let exec = match wanted.exec {
        ToolMode::Allow => json!({"security": "full", "ask": "off"}),
        ToolMode::Ask => json!({"security": "full", "ask": "always"}),
        ToolMode::Deny => json!({"security": "deny", "ask": "off"}),
    };
    let patched = config::patch(link, disk, instance, &json!({"tools": {"exec": exec, "deny": deny}}), None).await?;
    Ok(policy_of(&patched.config))
}
