//! Wire types of the agent API: configuration, channels, schedules, approvals, and the agent's
//! status. Field names are ocaas's (snake_case); the gateway's own words stay behind `rpc`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

crate::text_enum! {
    /// A channel ocaas connects with a token (`PUT …/channels/{kind}`) or a QR code (WhatsApp).
    pub enum ChannelKind {
        Telegram => "telegram",
        Discord => "discord",
        Slack => "slack",
        Whatsapp => "whatsapp",
    }
}

crate::text_enum! {
    /// Where an approval request comes from.
    pub enum ApprovalKind {
        /// A command the agent wants to run.
        Exec => "exec",
        /// A plugin's action.
        Plugin => "plugin",
    }
}

crate::text_enum! {
    /// An approval request's state (the `approvals.status` column).
    pub enum ApprovalStatus {
        Pending => "pending",
        Allowed => "allowed",
        Denied => "denied",
        /// Nobody answered in time; the gateway denied it.
        Expired => "expired",
    }
}

crate::text_enum! {
    /// An answer to an approval request.
    pub enum Decision {
        /// Run it this once.
        AllowOnce => "allow_once",
        /// Run it and do not ask again for the same command.
        AllowAlways => "allow_always",
        Deny => "deny",
    }
}

impl Decision {
    /// The gateway's word for it (`exec.approval.resolve`, `…resolved`).
    pub fn gateway_word(self) -> &'static str {
        match self {
            Decision::AllowOnce => "allow-once",
            Decision::AllowAlways => "allow-always",
            Decision::Deny => "deny",
        }
    }

    pub fn from_gateway_word(word: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|d| d.gateway_word() == word)
    }

    /// What a request becomes with this answer (`None`: nobody answered, it expired).
    pub fn outcome(decision: Option<Self>) -> ApprovalStatus {
        match decision {
            Some(Decision::Deny) => ApprovalStatus::Denied,
            Some(_) => ApprovalStatus::Allowed,
            None => ApprovalStatus::Expired,
        }
    }
}

crate::text_enum! {
    /// What a tool family may do: run, ask first (exec only), or nothing.
    pub enum ToolMode {
        Allow => "allow",
        Ask => "ask",
        Deny => "deny",
    }
}

crate::text_enum! {
    /// Why the idle policy leaves an instance awake right now.
    pub enum AwakeReason {
        /// The user pinned it (`keep_awake`).
        KeepAwake => "keep_awake",
        /// A schedule runs soon or has just run.
        Schedule => "schedule",
        /// A messaging channel is connected and listening.
        Channel => "channel",
        /// Used within the idle timeout, or something is open in it.
        InUse => "in_use",
    }
}

/// The gateway's configuration, secrets redacted.
#[derive(Debug, Serialize, ToSchema)]
pub struct GatewayConfig {
    /// `openclaw.json` as the gateway reads it; every secret is `"__OPENCLAW_REDACTED__"`
    /// (send it back unchanged to keep the stored value).
    pub config: Value,
    /// The file's version; pass it as `If-Match` to patch only this version (empty in the answer
    /// to a patch after which the gateway restarts).
    pub hash: String,
    pub valid: bool,
    pub issues: Vec<ConfigIssue>,
    /// A patch is on probation: the gateway must come back ready by then, or it is rolled back.
    #[serde(with = "crate::timefmt::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub rollback_deadline: Option<DateTime<Utc>>,
    /// The last automatic rollback, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_rollback: Option<Rollback>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConfigIssue {
    /// Dotted path of the offending key (`<root>` for the whole file).
    pub path: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Rollback {
    #[serde(with = "crate::timefmt")]
    #[schema(value_type = String, format = DateTime)]
    pub at: DateTime<Utc>,
    pub reason: String,
}

/// `openclaw doctor`'s findings.
#[derive(Debug, Serialize, ToSchema)]
pub struct Doctor {
    /// No finding at `error` level.
    pub ok: bool,
    pub findings: Vec<Finding>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Finding {
    pub check_id: String,
    /// `error`, `warn` or `info`.
    pub severity: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix_hint: Option<String>,
}

/// The gateway after `POST …/gateway/restart`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Restarted {
    /// The gateway answered again within 60 s.
    pub ready: bool,
    pub took_ms: u64,
}

/// A messaging channel as the gateway reports it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Channel {
    pub kind: ChannelKind,
    pub label: String,
    /// It has what it needs to connect (a token, a linked phone).
    pub configured: bool,
    pub running: bool,
    /// Connected and listening (this keeps the instance awake, see docs/operations.md).
    pub connected: bool,
    /// A token is stored (sealed on the server; never returned).
    pub token_set: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Tokens for a channel: Telegram and Discord take `bot_token`; Slack `bot_token` and `app_token`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelTokens {
    pub bot_token: String,
    #[serde(default)]
    pub app_token: Option<String>,
    /// Who may write to the agent directly: `pairing` (default: strangers get a code to be
    /// approved), `allowlist`, `open` or `disabled`.
    #[serde(default)]
    pub dm_policy: Option<String>,
}

impl std::fmt::Debug for ChannelTokens {
    /// Never the tokens themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelTokens").field("dm_policy", &self.dm_policy).finish_non_exhaustive()
    }
}

/// A QR login in progress (WhatsApp).
#[derive(Debug, Serialize, ToSchema)]
pub struct QrLogin {
    pub connected: bool,
    pub message: String,
    /// `data:image/png;base64,…` to show until it is scanned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_data_url: Option<String>,
}

/// Someone who wrote to the agent on a channel and waits to be let in.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pairing {
    pub id: String,
    pub channel: String,
    pub sender_id: String,
    pub sender_label: String,
    #[serde(with = "crate::timefmt::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PairingAnswer {
    /// `true` lets the sender in; `false` dismisses the request.
    pub approve: bool,
}

/// A schedule: the agent gets `message` at every `cron` time, or once `at`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    /// Five-field cron expression (UTC), when repeating.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// RFC 3339 time, when it runs once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    pub message: String,
    pub enabled: bool,
    #[serde(with = "crate::timefmt::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::timefmt::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_run_at: Option<DateTime<Utc>>,
    /// `ok` or `error`, after a run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<String>,
}

/// A new schedule (`cron` or `at`, not both), or the fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    pub name: Option<String>,
    pub cron: Option<String>,
    pub at: Option<String>,
    pub message: Option<String>,
    pub enabled: Option<bool>,
}

/// One run of a schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleRun {
    pub schedule_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// `ok` or `error`.
    pub status: String,
    #[serde(with = "crate::timefmt")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    /// The start of the agent's answer, or the error.
    pub summary: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunStarted {
    pub run_id: String,
}

/// An approval request of the agent.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Approval {
    pub id: String,
    pub kind: ApprovalKind,
    pub status: ApprovalStatus,
    /// The command (or the plugin's action), at most 4 KiB.
    pub command: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    #[serde(with = "crate::timefmt")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalAnswer {
    pub decision: Decision,
}

/// Per tool family: what the agent may do without asking.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolPolicy {
    /// Shell commands: `allow`, `ask` (an approval request each time) or `deny`.
    pub exec: ToolMode,
    /// Web search and fetch: `allow` or `deny`.
    pub web: ToolMode,
    /// The browser: `allow` or `deny`.
    pub browser: ToolMode,
}

/// The agent at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentOverview {
    /// Why the idle policy leaves it awake now (`null`: nothing; it pauses when idle).
    pub awake_reason: Option<AwakeReason>,
    #[serde(with = "crate::timefmt::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run_at: Option<DateTime<Utc>>,
    pub live_channels: Vec<String>,
    pub pending_approvals: i64,
}
