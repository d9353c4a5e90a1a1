//! Frames of the gateway's WebSocket protocol v4, written from its published schema
//! (openclaw `src/gateway/protocol/schema/frames.ts`, `logs-chat.ts`, `agent.ts`; see
//! docs/gateway-protocol.md) and checked against the captured frames (tests below). What ocaas
//! sends is exact (the gateway rejects unknown keys); what it reads is lenient: unknown fields
//! are ignored, since the real 2026.9.6 frames carry more than the schema.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const PROTOCOL: u32 = 4;

/// `{"type":"req","id","method","params"}`.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    pub method: &'a str,
    pub params: &'a Value,
}

/// A frame the gateway sends.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Inbound {
    Res(Response),
    Event(EventFrame),
}

#[derive(Debug, Deserialize)]
pub struct Response {
    pub id: String,
    pub ok: bool,
    #[serde(default)]
    pub payload: Value,
    #[serde(default)]
    pub error: Option<ErrorShape>,
}

/// `{code, message, details?, retryable?, retryAfterMs?}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ErrorShape {
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub details: Value,
}

impl ErrorShape {
    /// `details.code`, e.g. `AUTH_TOKEN_MISMATCH` or `PAIRING_REQUIRED`.
    pub fn detail_code(&self) -> &str {
        self.details.get("code").and_then(Value::as_str).unwrap_or("")
    }
}

#[derive(Debug, Deserialize)]
pub struct EventFrame {
    pub event: String,
    #[serde(default)]
    pub payload: Value,
    /// Per connection, from 1, contiguous; absent on `connect.challenge`.
    #[serde(default)]
    pub seq: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct Challenge {
    pub nonce: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientInfo {
    pub id: &'static str,
    pub version: &'static str,
    pub platform: &'static str,
    pub mode: &'static str,
    pub display_name: &'static str,
}

/// How ocaas introduces itself: kept stable, since a changed platform or mode asks for a new pairing.
pub const CLIENT: ClientInfo =
    ClientInfo { id: "gateway-client", version: env!("CARGO_PKG_VERSION"), platform: "linux", mode: "backend", display_name: "ocaas" };
pub const ROLE: &str = "operator";
/// What ocaas asks for: chat (read, write), the agent's configuration, channels and schedules
/// (admin), answering its approval requests (approvals) and its DM pairings (pairing). A device
/// paired with fewer scopes makes a scope-upgrade request, approved like a first pairing.
pub const SCOPES: [&str; 5] = ["operator.read", "operator.write", "operator.admin", "operator.approvals", "operator.pairing"];
/// Without these the link is no use (chat); a gateway that grants the others less makes the
/// agent API's calls answer `gateway_rejected` (missing scope), chat still works.
pub const REQUIRED_SCOPES: [&str; 2] = ["operator.read", "operator.write"];

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectParams<'a> {
    pub min_protocol: u32,
    pub max_protocol: u32,
    pub client: &'a ClientInfo,
    pub role: &'a str,
    pub scopes: &'a [&'a str],
    pub caps: &'a [&'a str],
    pub auth: ConnectAuth<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceProof>,
    pub user_agent: &'a str,
}

#[derive(Debug, Serialize)]
pub struct ConnectAuth<'a> {
    pub token: &'a str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceProof {
    pub id: String,
    pub public_key: String,
    pub signature: String,
    pub signed_at: i64,
    pub nonce: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloOk {
    pub protocol: u32,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub auth: HelloAuth,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default = "default_tick")]
    pub tick_interval_ms: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy { tick_interval_ms: default_tick() }
    }
}

fn default_tick() -> u64 {
    30_000
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelloAuth {
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub device_token: Option<String>,
}

/// The payload of a `chat` event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatPayload {
    pub run_id: String,
    pub session_key: String,
    pub state: String,
    #[serde(default)]
    pub delta_text: Option<String>,
    #[serde(default)]
    pub message: Option<Value>,
    #[serde(default)]
    pub error_message: Option<String>,
}

/// The payload of an `agent` event.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentPayload {
    pub run_id: String,
    pub stream: String,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub session_key: String,
}

/// `data` of an `agent` event with `stream: "tool"`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolData {
    pub phase: String,
    pub name: String,
    pub tool_call_id: String,
    #[serde(default)]
    pub args: Option<Value>,
    #[serde(default)]
    pub partial_result: Option<Value>,
    #[serde(default)]
    pub result: Option<Value>,
    #[serde(default)]
    pub is_error: Option<bool>,
}

/// The `chat.history` answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    #[serde(default)]
    pub messages: Vec<HistoryMessage>,
    #[serde(default)]
    pub session_info: SessionInfo,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    #[serde(default)]
    pub active_run_ids: Vec<String>,
}

/// A transcript message: `user`, `assistant` (text and `toolCall` parts) or `toolResult`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryMessage {
    pub role: String,
    #[serde(default)]
    pub content: Value,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub tool_name: Option<String>,
    #[serde(default)]
    pub is_error: Option<bool>,
    #[serde(default)]
    pub timestamp: Option<i64>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default, rename = "__openclaw")]
    pub meta: Option<MessageMeta>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageMeta {
    #[serde(default)]
    pub run_id: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
}

impl HistoryMessage {
    /// The gateway run this message belongs to: its `__openclaw.runId`, or for a user message
    /// the run its idempotency key names (`<runId>:user`).
    pub fn run_id(&self) -> Option<&str> {
        if let Some(run) = self.meta.as_ref().and_then(|m| m.run_id.as_deref()) {
            return Some(run);
        }
        self.idempotency_key.as_deref().and_then(|k| k.strip_suffix(":user"))
    }
}

/// The text of a message's `content`: a string, or the `text` parts of an array.
pub fn text_of(content: &Value) -> String {
    match content {
        Value::String(text) => text.clone(),
        Value::Array(parts) => parts.iter().filter(|p| p["type"] == "text").filter_map(|p| p["text"].as_str()).collect::<Vec<_>>().join(""),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame of the captures parses as what it is.
    #[test]
    fn the_captured_frames_parse() {
        for name in ["70_ws_backend", "71_ws_tool_run_shared_http_session", "72_ws_cli_no_device", "73_ws_bad_token"] {
            let path = format!("{}/tests/fixtures/gateway/{name}.frames.jsonl", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let record: Value = serde_json::from_str(line).unwrap();
                if record["dir"] != "recv" {
                    continue;
                }
                let frame: Inbound = serde_json::from_str(record["raw"].as_str().unwrap()).unwrap_or_else(|e| panic!("{name}: {e}: {line:.200}"));
                if let Inbound::Event(event) = frame {
                    match event.event.as_str() {
                        "chat" => drop(serde_json::from_value::<ChatPayload>(event.payload).unwrap()),
                        "agent" => {
                            let agent: AgentPayload = serde_json::from_value(event.payload).unwrap();
                            if agent.stream == "tool" {
                                serde_json::from_value::<ToolData>(agent.data).unwrap();
                            }
                        }
                        "connect.challenge" => drop(serde_json::from_value::<Challenge>(event.payload).unwrap()),
                        _ => {}
                    }
                }
            }
        }
    }

    #[test]
    fn what_ocaas_sends_is_the_captured_shape() {
        let params = ConnectParams {
            min_protocol: 4,
            max_protocol: 4,
            client: &CLIENT,
            role: ROLE,
            scopes: &SCOPES,
            caps: &["tool-events"],
            auth: ConnectAuth { token: "t" },
            device: None,
            user_agent: "ocaas",
        };
        let value = serde_json::to_value(&params).unwrap();
        assert_eq!(value["minProtocol"], 4);
        assert_eq!(value["client"]["displayName"], "ocaas");
        assert_eq!(value["caps"][0], "tool-events");
        assert!(value.get("device").is_none());
    }
}
