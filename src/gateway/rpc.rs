//! Calls on an instance's gateway for the agent API: the process's connection (opened, and the
//! device paired, on demand), a bounded wait, and the gateway's answers turned into ocaas's
//! errors. The gateway is inside the tenant's sandbox: its messages are shortened and stripped
//! of control characters before a client sees them, and nothing it says sizes a buffer here
//! (its frames are capped by the connection).

use std::time::Duration;

use serde_json::Value;

use super::Link;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::repo::InstanceRow;
use crate::runtime::gateway::{RpcError, Unavailable};

/// How long a call waits for a connection (a first pairing included).
const CONNECT_WAIT: Duration = Duration::from_secs(15);
/// How long the gateway has to answer a call.
pub const ANSWER_WAIT: Duration = Duration::from_secs(30);
const MESSAGE_CHARS: usize = 300;
const RETRY_AFTER_SECS: u64 = 5;

/// Calls `method` on the instance's gateway; the answer's payload.
pub async fn call(link: &Link, instance: &InstanceRow, method: &str, params: Value) -> AppResult<Value> {
    call_within(link, instance, method, params, ANSWER_WAIT).await
}

pub async fn call_within(link: &Link, instance: &InstanceRow, method: &str, params: Value, wait: Duration) -> AppResult<Value> {
    let connection = link.connection(instance, CONNECT_WAIT).await.map_err(unavailable)?;
    connection.request(method, params, wait).await.map_err(rejected)
}

pub fn unavailable(reason: Unavailable) -> AppError {
    let message = match reason {
        Unavailable::NoProtocol(_) => "The instance's gateway does not speak its WebSocket protocol, which this needs.".to_owned(),
        Unavailable::Down(why) => format!("The instance's gateway cannot be reached right now: {}", clean(&why)),
    };
    AppError::new(ErrorCode::GatewayUnavailable, message).with_retry_after(RETRY_AFTER_SECS)
}

fn rejected(error: RpcError) -> AppError {
    match error {
        RpcError::Gateway(shape) if shape.code == "APPROVAL_NOT_FOUND" => {
            AppError::new(ErrorCode::ApprovalNotFound, "The gateway has no pending approval request with that id.")
        }
        RpcError::Gateway(shape) => AppError::new(ErrorCode::GatewayRejected, format!("The gateway refused: {}", clean(&shape.message))),
        other => {
            AppError::new(ErrorCode::GatewayUnavailable, format!("The instance's gateway did not answer: {other}")).with_retry_after(RETRY_AFTER_SECS)
        }
    }
}

/// Whether the instance's gateway answers now: a connection within 2 s, `health` within 3 s.
pub async fn answers(link: &Link, instance: &InstanceRow) -> bool {
    let Ok(connection) = link.connection(instance, Duration::from_secs(2)).await else { return false };
    connection.request("health", serde_json::json!({}), Duration::from_secs(3)).await.is_ok()
}

/// A message from the sandbox, fit to show: at most 300 characters, no control characters.
pub fn clean(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(MESSAGE_CHARS).collect()
}

/// The string at `key`, at most `max` characters (the gateway may send anything).
pub fn text(value: &Value, key: &str, max: usize) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(|s| s.chars().take(max).collect())
}

/// Milliseconds since the epoch at `key`, as a time.
pub fn time_ms(value: &Value, key: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    value.get(key).and_then(Value::as_i64).and_then(chrono::DateTime::from_timestamp_millis)
}

/// An id from a path that can name something of the gateway's: 1 to 128 characters, none of
/// them a control character (a NUL would reach the database).
pub fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(char::is_control)
}
