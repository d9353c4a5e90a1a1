//! Running a tool: its arguments become a request to the API's own route (path, query, JSON
//! body), sent through the router with the caller's `Authorization` — so authentication,
//! scopes, instance ownership, validation and error codes are the API's, not a second copy.
//! A 2xx answer is the tool's result (text, and the JSON as structured content); an error is
//! an MCP error whose `data` carries the API's `{error, status}`. `chat` reads the turn's event
//! stream and sends its pieces as progress notifications.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use rmcp::model::{CallToolResult, ContentBlock, ErrorCode, ErrorData, ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RoleServer};
use serde_json::{Map, Value, json};
use tower::ServiceExt;

use super::catalog::{Entry, Place};

/// Most of an answer read into a tool result (a file read's cap is below it).
const MAX_ANSWER: usize = 32 << 20;
/// Longest SSE line kept while reading a chat turn's stream.
const MAX_LINE: usize = 16 << 20;

/// What a tool call needs besides its arguments.
pub struct Caller {
    pub router: Router,
    pub authorization: HeaderValue,
    /// The original request's extensions that the API's extractors read (client address).
    pub connect_info: Option<axum::extract::ConnectInfo<std::net::SocketAddr>>,
    pub progress: Option<(Peer<RoleServer>, ProgressToken)>,
}

fn invalid(message: impl Into<String>) -> ErrorData {
    ErrorData::new(ErrorCode::INVALID_PARAMS, message.into(), None)
}

/// The request a tool's arguments make.
pub fn request(entry: &Entry, arguments: Option<Map<String, Value>>, authorization: &HeaderValue) -> Result<Request<Body>, ErrorData> {
    let mut args = arguments.unwrap_or_default();
    let mut path = entry.def.path.to_owned();
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for param in &entry.params {
        let Some(value) = args.remove(&param.arg) else {
            if param.required {
                return Err(invalid(format!("`{}` is required.", param.arg)));
            }
            continue;
        };
        let text = match value {
            Value::String(s) => s,
            Value::Null => continue,
            other => other.to_string(),
        };
        match param.place {
            Place::Path => {
                let segment: String = url::form_urlencoded::byte_serialize(text.as_bytes()).collect();
                path = path.replace(&format!("{{{}}}", param.api_name), &segment);
            }
            Place::Query => {
                query.append_pair(&param.api_name, &text);
            }
        }
    }
    let query = query.finish();
    let uri = if query.is_empty() { path } else { format!("{path}?{query}") };
    let body = if entry.has_body {
        Body::from(serde_json::to_vec(&Value::Object(args)).unwrap_or_default())
    } else if let Some(extra) = args.keys().next() {
        return Err(invalid(format!("`{extra}` is not an argument of `{}`.", entry.def.name)));
    } else {
        Body::empty()
    };
    Request::builder()
        .method(entry.def.method.clone())
        .uri(uri)
        .header(header::AUTHORIZATION, authorization)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .body(body)
        .map_err(|_| invalid("The arguments make no valid request."))
}

/// Runs the tool `entry` with `arguments` for `caller`.
pub async fn run(entry: &Entry, arguments: Option<Map<String, Value>>, caller: Caller) -> Result<CallToolResult, ErrorData> {
    let mut request = request(entry, arguments, &caller.authorization)?;
    if let Some(info) = caller.connect_info {
        request.extensions_mut().insert(info);
    }
    let answer = caller.router.oneshot(request).await.map_err(|never| match never {})?;
    let status = answer.status();
    let streaming = answer.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if status.is_success() && streaming {
        return follow_turn(answer.into_body(), caller.progress).await;
    }
    let bytes = http_body_util::Limited::new(answer.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|_| ErrorData::new(ErrorCode::INTERNAL_ERROR, "The answer was too large for a tool result.", None))?
        .to_bytes();
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    if !status.is_success() {
        return Err(api_error(status, parsed.as_ref()));
    }
    Ok(result(parsed, String::from_utf8_lossy(&bytes).into_owned()))
}

/// The tool result for an answer: its text, and the JSON object as structured content.
fn result(parsed: Option<Value>, text: String) -> CallToolResult {
    let text = if text.is_empty() { "Done.".to_owned() } else { text };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = match parsed {
        Some(object @ Value::Object(_)) => Some(object),
        Some(list @ Value::Array(_)) => Some(json!({ "items": list })),
        _ => None,
    };
    result
}

/// The API's error as an MCP error: the message, and `{error, status}` in `data`.
pub fn api_error(status: StatusCode, body: Option<&Value>) -> ErrorData {
    let code = body.and_then(|b| b["error"].as_str()).unwrap_or("internal_error").to_owned();
    let message = body.and_then(|b| b["message"].as_str()).unwrap_or("The request failed.").to_owned();
    let rpc = match status.as_u16() {
        400 | 413 | 415 | 422 => ErrorCode::INVALID_PARAMS,
        404 => ErrorCode::RESOURCE_NOT_FOUND,
        500.. => ErrorCode::INTERNAL_ERROR,
        // 401, 403, 409, 412, 429: the server refused; the API's code says why.
        _ => ErrorCode(-32000),
    };
    ErrorData::new(rpc, message, Some(json!({ "error": code, "status": status.as_u16() })))
}

/// Reads a chat turn's SSE stream to its `complete` event, sending each piece of the answer
/// and each tool step as a progress notification when the client asked for progress.
async fn follow_turn(body: Body, progress: Option<(Peer<RoleServer>, ProgressToken)>) -> Result<CallToolResult, ErrorData> {
    let mut stream = body.into_data_stream();
    let (mut buffer, mut event, mut data) = (Vec::new(), String::new(), String::new());
    let mut step = 0f64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ErrorData::new(ErrorCode::INTERNAL_ERROR, "The chat stream broke off.", None))?;
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\n', '\r']);
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_owned();
            } else if let Some(more) = line.strip_prefix("data:") {
                data.push_str(more.strip_prefix(' ').unwrap_or(more));
            } else if line.is_empty() && !event.is_empty() {
                let value: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
                if event == "complete" {
                    return Ok(result(Some(value), std::mem::take(&mut data)));
                }
                if let (Some((peer, token)), Some(message)) = (&progress, progress_message(&event, &value)) {
                    step += 1.0;
                    let note = ProgressNotificationParam::new(token.clone(), step).with_message(message);
                    // A client that went away stops nothing: the turn is the server's.
                    let _ = peer.notify_progress(note).await;
                }
                event.clear();
                data.clear();
            }
        }
        if buffer.len() > MAX_LINE || data.len() > MAX_LINE {
            return Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "The chat stream sent an oversized event.", None));
        }
    }
    Err(ErrorData::new(ErrorCode::INTERNAL_ERROR, "The chat stream ended before the turn was complete.", None))
}

/// What a progress notification says about one event of the turn, if anything.
fn progress_message(event: &str, data: &Value) -> Option<String> {
    match event {
        "message" => data["delta"].as_str().map(str::to_owned),
        "tool" => Some(format!("tool {} {}", data["name"].as_str().unwrap_or("?"), data["phase"].as_str().unwrap_or("?"))),
        "status" => Some(format!("status {}", data["state"].as_str().unwrap_or("?"))),
        "system_notification" => data["message"].as_str().map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_errors_keep_their_code() {
        let body = json!({"error": "insufficient_scope", "message": "This key lacks the scope `exec`."});
        let error = api_error(StatusCode::FORBIDDEN, Some(&body));
        assert_eq!(error.message, "This key lacks the scope `exec`.");
        assert_eq!(error.data, Some(json!({"error": "insufficient_scope", "status": 403})));
        assert_eq!(api_error(StatusCode::NOT_FOUND, None).code, ErrorCode::RESOURCE_NOT_FOUND);
    }

    #[test]
    fn lists_are_structured_as_items() {
        let done = result(Some(json!([1, 2])), "[1,2]".into());
        assert_eq!(done.structured_content, Some(json!({"items": [1, 2]})));
        assert_eq!(result(None, String::new()).structured_content, None);
    }
}
