//! Tool steps of an assistant message: what the agent ran (name, arguments), how it went
//! (status, output, timing). They are part of the persisted message (`tools`, a JSON column),
//! built from the gateway's `agent` `stream:"tool"` events as they come, or from its transcript
//! (`toolCall` parts and `toolResult` messages) for imported turns. Bounded whatever the agent
//! sends: steps per message, output kept per step, size of the arguments kept.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::runtime::gateway::frames::{HistoryMessage, ToolData, text_of};

/// Tool steps kept per message; later ones are counted, not kept.
pub const MAX_STEPS: usize = 64;
/// Output kept per step (the first bytes; `output_truncated` says when there was more).
pub const MAX_OUTPUT: usize = 16 << 10;
/// Arguments kept per step, serialized; larger ones are kept as a truncated preview.
pub const MAX_ARGS: usize = 8 << 10;

crate::text_enum! {
    /// Where a tool step is.
    pub enum ToolStatus {
        Running => "running",
        Completed => "completed",
        Error => "error",
        Aborted => "aborted",
    }
}

crate::text_enum! {
    /// A `tool` event's phase: the step started, its output grew, it ended.
    pub enum ToolPhase {
        Start => "start",
        Update => "update",
        Result => "result",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ToolStep {
    /// The model's id for the call (e.g. `call_fake_22`).
    pub tool_call_id: String,
    /// The tool, e.g. `exec`, `read`, `browser`.
    pub name: String,
    pub status: ToolStatus,
    /// The call's arguments as the agent sent them (a preview when larger than 8 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// The output so far (at most 16 KiB are kept).
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub output_truncated: bool,
    #[serde(serialize_with = "crate::timefmt::serialize")]
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none", serialize_with = "crate::timefmt::option::serialize")]
    #[schema(value_type = Option<String>)]
    pub ended_at: Option<DateTime<Utc>>,
}

/// A `tool` SSE event: one step of the assistant message `message_id` changed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ToolEvent {
    pub message_id: Uuid,
    pub tool_call_id: String,
    pub name: String,
    pub phase: ToolPhase,
    /// With `start`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args: Option<Value>,
    /// With `update` and `result`: the output so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// With `result`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
}

impl ToolEvent {
    /// The event that tells a listener about `step` as it is now.
    pub fn of(message_id: Uuid, step: &ToolStep, phase: ToolPhase) -> Self {
        ToolEvent {
            message_id,
            tool_call_id: step.tool_call_id.clone(),
            name: step.name.clone(),
            phase,
            args: (phase == ToolPhase::Start).then(|| step.args.clone()).flatten(),
            output: (phase != ToolPhase::Start).then(|| step.output.clone()),
            is_error: (phase == ToolPhase::Result).then_some(step.status == ToolStatus::Error),
        }
    }
}

fn capped_args(args: Option<Value>) -> Option<Value> {
    let args = args?;
    let text = args.to_string();
    if text.len() <= MAX_ARGS {
        return Some(args);
    }
    let cut = (0..=MAX_ARGS).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    Some(serde_json::json!({"truncated": true, "preview": &text[..cut]}))
}

fn set_output(step: &mut ToolStep, output: &str) {
    if output.len() <= MAX_OUTPUT {
        step.output = output.to_owned();
        step.output_truncated = false;
    } else {
        let cut = (0..=MAX_OUTPUT).rev().find(|i| output.is_char_boundary(*i)).unwrap_or(0);
        step.output = output[..cut].to_owned();
        step.output_truncated = true;
    }
}

/// The text of a tool result: `{content:[{type:text,text}]}`, or a plain string.
fn result_text(result: &Value) -> String {
    match result {
        Value::String(text) => text.clone(),
        other => text_of(&other["content"]),
    }
}

/// Applies one gateway tool event; the phase to announce, or `None` when nothing was kept.
pub fn apply(steps: &mut Vec<ToolStep>, data: ToolData, now: DateTime<Utc>) -> Option<(usize, ToolPhase)> {
    let phase = ToolPhase::parse(&data.phase)?;
    let index = match steps.iter().position(|s| s.tool_call_id == data.tool_call_id) {
        Some(index) => index,
        None if steps.len() >= MAX_STEPS => return None,
        None => {
            let name: String = data.name.chars().take(100).collect();
            let id: String = data.tool_call_id.chars().take(200).collect();
            steps.push(ToolStep {
                tool_call_id: id,
                name,
                status: ToolStatus::Running,
                args: None,
                output: String::new(),
                output_truncated: false,
                started_at: now,
                ended_at: None,
            });
            steps.len() - 1
        }
    };
    let step = &mut steps[index];
    match phase {
        ToolPhase::Start => step.args = capped_args(data.args),
        ToolPhase::Update => set_output(step, &data.partial_result.as_ref().map(result_text).unwrap_or_default()),
        ToolPhase::Result => {
            set_output(step, &data.result.as_ref().map(result_text).unwrap_or_default());
            // A step stopped by an abort stays `aborted`, whatever its killed process reported.
            if step.status != ToolStatus::Aborted {
                step.status = if data.is_error == Some(true) { ToolStatus::Error } else { ToolStatus::Completed };
                step.ended_at = Some(now);
            }
        }
    }
    Some((index, phase))
}

/// Steps still running when the turn ended end with it.
pub fn finish(steps: &mut [ToolStep], status: ToolStatus, now: DateTime<Utc>) {
    for step in steps.iter_mut().filter(|s| s.status == ToolStatus::Running) {
        step.status = status;
        step.ended_at = Some(now);
    }
}

/// The steps of one turn in the gateway's transcript (its `toolCall` parts and `toolResult`s).
pub fn from_transcript(messages: &[HistoryMessage]) -> Vec<ToolStep> {
    let mut steps: Vec<ToolStep> = Vec::new();
    for message in messages {
        let at = message.timestamp.and_then(DateTime::from_timestamp_millis).unwrap_or_else(Utc::now);
        if message.role == "assistant" {
            for part in message.content.as_array().into_iter().flatten().filter(|p| p["type"] == "toolCall") {
                let data = ToolData {
                    phase: "start".into(),
                    name: part["name"].as_str().unwrap_or("tool").into(),
                    tool_call_id: part["id"].as_str().unwrap_or("").into(),
                    args: part.get("arguments").cloned(),
                    partial_result: None,
                    result: None,
                    is_error: None,
                };
                apply(&mut steps, data, at);
            }
        } else if message.role == "toolResult" {
            let data = ToolData {
                phase: "result".into(),
                name: message.tool_name.clone().unwrap_or_else(|| "tool".into()),
                tool_call_id: message.tool_call_id.clone().unwrap_or_default(),
                args: None,
                partial_result: None,
                result: Some(serde_json::json!({"content": message.content})),
                is_error: message.is_error,
            };
            apply(&mut steps, data, at);
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(phase: &str, extra: Value) -> ToolData {
        let mut value = serde_json::json!({"phase": phase, "name": "exec", "toolCallId": "call_1"});
        value.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_step_goes_from_start_to_result_with_its_output() {
        let mut steps = Vec::new();
        let now = Utc::now();
        assert_eq!(apply(&mut steps, data("start", serde_json::json!({"args": {"command": "echo hi"}})), now), Some((0, ToolPhase::Start)));
        apply(&mut steps, data("update", serde_json::json!({"partialResult": {"content": [{"type": "text", "text": "h"}]}})), now);
        assert_eq!(steps[0].output, "h");
        apply(&mut steps, data("result", serde_json::json!({"isError": true, "result": {"content": [{"type": "text", "text": "hi"}]}})), now);
        assert_eq!((steps[0].status, steps[0].output.as_str()), (ToolStatus::Error, "hi"));
        assert_eq!(steps[0].args, Some(serde_json::json!({"command": "echo hi"})));
        assert!(apply(&mut steps, data("bogus", serde_json::json!({})), now).is_none());
    }

    #[test]
    fn whatever_the_agent_sends_stays_bounded() {
        let mut steps = Vec::new();
        let now = Utc::now();
        let huge = "é".repeat(MAX_OUTPUT);
        apply(&mut steps, data("start", serde_json::json!({"args": {"blob": huge}})), now);
        apply(&mut steps, data("result", serde_json::json!({"result": huge})), now);
        assert!(steps[0].output.len() <= MAX_OUTPUT && steps[0].output_truncated);
        assert!(steps[0].args.as_ref().unwrap().to_string().len() <= MAX_ARGS + 100);
        for i in 0..200 {
            let mut d = data("start", serde_json::json!({}));
            d.tool_call_id = format!("c{i}");
            apply(&mut steps, d, now);
        }
        assert_eq!(steps.len(), MAX_STEPS);
    }
}
