//! The OpenAI-compatible surface sandboxes call (`POST /v1/chat/completions`, `GET /v1/models`):
//! authenticated by the instance's broker token *and* where the call came from (`caller`),
//! forwarded to the operator's provider with the operator's key,
//! streamed back unbuffered while the usage is read on the way (`meter`). Errors are
//! OpenAI-style JSON, which the gateway understands.

use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::BrokerState;
use super::bounds::{self, BODY_GRACE, PER_INSTANCE, Refusal};
use super::caller::BrokerCaller;
use super::meter::{Metered, Recorder, Tally, usage_of};
use super::repo;
use crate::inflight::deadline::DeadlineBody;

/// Largest request body from a gateway (the real one sends about 60 KB).
const MAX_REQUEST: usize = 8 << 20;
/// Largest non-streamed answer read from the provider.
const MAX_ANSWER: usize = 8 << 20;
/// Largest provider error body passed back.
const MAX_ERROR: usize = 16 << 10;
/// How long the provider may take to answer a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) fn openai_error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": {"message": message.into(), "type": kind}}))).into_response()
}

pub async fn models(State(state): State<BrokerState>, _caller: BrokerCaller) -> Response {
    let model = &state.app.settings.instances.llm.model;
    let data: Vec<Value> = if model.is_empty() { vec![] } else { vec![json!({"id": model, "object": "model", "created": 0, "owned_by": "ocaas"})] };
    Json(json!({"object": "list", "data": data})).into_response()
}

/// Reads at most `limit` bytes of a provider's body; `None` past it.
async fn read_bounded(response: reqwest::Response, limit: usize) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.ok()?;
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body)
}

/// Where one call goes: the instance's own provider, else the operator's.
struct Upstream {
    /// The client for this provider: public addresses only for a user's own, unless allowed.
    client: reqwest::Client,
    base_url: String,
    api_key: String,
    model: String,
    /// On the operator's key without one model: the models it may be asked for.
    allowed: Option<Vec<String>>,
}

impl Upstream {
    /// A refusal when the call asks for a model the operator does not offer.
    fn refuses(&self, asked: Option<&str>) -> Option<Response> {
        let allowed = self.allowed.as_ref()?;
        if asked.is_some_and(|m| allowed.iter().any(|a| a == m)) {
            return None;
        }
        let offered = if allowed.is_empty() { "none (OCAAS_LLM_MODEL is unset)".to_owned() } else { allowed.join(", ") };
        Some(openai_error(StatusCode::FORBIDDEN, "invalid_request_error", format!("This server's provider offers these models: {offered}.")))
    }
}

async fn upstream_for(state: &BrokerState, instance_id: uuid::Uuid) -> Result<Upstream, Response> {
    let unavailable = || openai_error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "The broker cannot read the instance's model right now.");
    let settings = &state.app.settings;
    match repo::custom_model(&state.app.db, instance_id).await.map_err(|_| unavailable())? {
        Some(custom) => {
            let key = settings.secret_key.open(&custom.api_key_sealed).and_then(|k| String::from_utf8(k).ok()).ok_or_else(|| {
                openai_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_request_error",
                    "The instance's own provider key cannot be read with this server's secret key; set it again.",
                )
            })?;
            // A name is resolved and checked by `public_http` as it connects, to the very
            // addresses checked; a literal address is never resolved, so it is checked here.
            let private = !settings.instances.model_allow_private;
            if private && crate::runtime::outbound::private_literal(&custom.base_url).is_some() {
                return Err(openai_error(StatusCode::BAD_GATEWAY, "upstream_error", "The instance's own provider is not on a public address."));
            }
            let client = if private { state.public_http.clone() } else { state.http.clone() };
            Ok(Upstream { client, base_url: custom.base_url, api_key: key, model: custom.model, allowed: None })
        }
        None if settings.instances.llm.base_url.is_empty() => {
            Err(openai_error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "No model provider is configured on this server (OCAAS_LLM_BASE_URL)."))
        }
        None => {
            let llm = &settings.instances.llm;
            Ok(Upstream {
                client: state.http.clone(),
                base_url: llm.base_url.clone(),
                api_key: llm.api_key.expose_secret().to_owned(),
                model: llm.model.clone(),
                allowed: llm.model.is_empty().then(|| llm.allowed_models.clone()),
            })
        }
    }
}

/// The body's declared size, if it is within `MAX_REQUEST` (unknown: `MAX_REQUEST`).
fn declared_size(headers: &axum::http::HeaderMap) -> Option<usize> {
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(size) if size > MAX_REQUEST => None,
        Some(size) => Some(size),
        None => Some(MAX_REQUEST),
    }
}

fn too_large() -> Response {
    openai_error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", format!("Request bodies are limited to {MAX_REQUEST} bytes."))
}

/// A reservation of a call that never settled (its process died) stops counting after this.
const RESERVATION_TTL: Duration = Duration::from_secs(30 * 60);

pub async fn chat_completions(State(state): State<BrokerState>, BrokerCaller(owner): BrokerCaller, request: axum::extract::Request) -> Response {
    let started = Instant::now();
    let Some(size) = declared_size(request.headers()) else { return too_large() };
    // Admitted before anything is read: one sandbox cannot take the broker's memory.
    let _admitted = match state.bounds.admit(owner.instance_id, size) {
        Ok(admitted) => admitted,
        Err(Refusal::InstanceBusy) => {
            let message = format!("This instance has {PER_INSTANCE} model calls in flight already; retry when one ends.");
            return openai_error(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message);
        }
        Err(Refusal::BrokerBusy) => return openai_error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "The broker is busy; retry shortly."),
    };
    let llm = match upstream_for(&state, owner.instance_id).await {
        Ok(upstream) => upstream,
        Err(refusal) => return refusal,
    };
    let body = Body::new(DeadlineBody::new(request.into_body(), BODY_GRACE));
    let raw = match axum::body::to_bytes(body, MAX_REQUEST).await {
        Ok(raw) => raw,
        Err(error) if crate::inflight::deadline::is_too_slow(&error) => {
            return openai_error(StatusCode::REQUEST_TIMEOUT, "invalid_request_error", "The request body arrived too slowly.");
        }
        Err(_) => return too_large(),
    };
    let Some(fields) = bounds::fields(&raw) else {
        return openai_error(StatusCode::BAD_REQUEST, "invalid_request_error", "The body must be a JSON object.");
    };
    let asked = bounds::model(&fields);
    let model = if llm.model.is_empty() { asked.clone() } else { Some(llm.model.clone()) };
    if let Some(refusal) = llm.refuses(asked.as_deref()) {
        return refusal;
    }
    let streaming = bounds::streaming(&fields);
    let forced_model = (!llm.model.is_empty()).then(|| serde_json::value::to_raw_value(&llm.model).ok()).flatten();
    // Metering needs the usage chunk, whatever the gateway asked for.
    let usage_option = RawValue::from_string(r#"{"include_usage":true}"#.to_owned()).expect("valid JSON");
    let mut replace: Vec<(&str, &RawValue)> = Vec::new();
    if let Some(forced) = &forced_model {
        replace.push(("model", forced));
    }
    if streaming {
        replace.push(("stream_options", &usage_option));
    }
    let request_bytes = raw.len();
    // What the call may use is set aside first (within what the allowances leave), so calls
    // in flight together cannot all pass one check; the usage row replaces it at the end.
    let wanted = bounds::tokens_wanted(&fields, request_bytes);
    let reservation = match repo::reserve(&state.app.db, &owner, wanted, RESERVATION_TTL.as_secs_f64()).await {
        Ok(Ok(reservation)) => reservation,
        Ok(Err(room)) => return openai_error(StatusCode::TOO_MANY_REQUESTS, "insufficient_quota", super::limits::no_room(&room)),
        Err(_) => return openai_error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "The broker cannot check the spend limits right now."),
    };
    let outgoing = bounds::rewrite(fields, &replace);
    drop(raw);
    let model = model.unwrap_or_else(|| "unknown".into());
    let recorder = Recorder { db: state.app.db.clone(), owner: owner.clone(), model, request_bytes, started, reservation };
    let url = format!("{}/chat/completions", llm.base_url.trim_end_matches('/'));
    let sent = llm.client.post(url).bearer_auth(&llm.api_key).header(header::CONTENT_TYPE, "application/json").body(outgoing).send();
    let response = match tokio::time::timeout(HEAD_TIMEOUT, sent).await {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            recorder.record(&Tally::default(), false);
            let cause = if error.is_timeout() { "timed out" } else { "could not be reached" };
            return openai_error(StatusCode::BAD_GATEWAY, "upstream_error", format!("The model provider {cause}."));
        }
        Err(_) => {
            recorder.record(&Tally::default(), false);
            return openai_error(StatusCode::GATEWAY_TIMEOUT, "upstream_error", "The model provider did not answer in time.");
        }
    };
    if response.status().is_redirection() {
        recorder.record(&Tally::default(), false);
        return openai_error(
            StatusCode::BAD_GATEWAY,
            "upstream_error",
            "The model provider answered with a redirect, which the broker does not follow.",
        );
    }
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let content_type = response.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok());
    if !status.is_success() {
        let body = read_bounded(response, MAX_ERROR).await.unwrap_or_default();
        recorder.record(&Tally { saw_error: true, ..Tally::default() }, false);
        let mut answer = (status, body).into_response();
        answer.headers_mut().insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("application/json")));
        return answer;
    }
    if streaming {
        let metered = Metered::new(response.bytes_stream().boxed(), recorder);
        let mut answer = Response::new(Body::from_stream(metered));
        answer.headers_mut().insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("text/event-stream")));
        answer.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        return answer;
    }
    let Some(body) = read_bounded(response, MAX_ANSWER).await else {
        recorder.record(&Tally::default(), false);
        return openai_error(StatusCode::BAD_GATEWAY, "upstream_error", "The model provider's answer was cut off or too large.");
    };
    let usage = serde_json::from_slice::<Value>(&body).ok().as_ref().and_then(usage_of);
    recorder.record(&Tally { usage, saw_done: true, ..Tally::default() }, true);
    let mut answer = (StatusCode::OK, body).into_response();
    answer.headers_mut().insert(header::CONTENT_TYPE, content_type.unwrap_or(HeaderValue::from_static("application/json")));
    answer
}

#[cfg(test)]
mod tests {
    use super::Upstream;

    fn operator(allowed: Option<Vec<&str>>) -> Upstream {
        let client = reqwest::Client::new();
        let allowed = allowed.map(|a| a.into_iter().map(str::to_owned).collect());
        Upstream { client, base_url: "http://provider.invalid/v1".into(), api_key: String::new(), model: String::new(), allowed }
    }

    #[test]
    fn without_one_operator_model_only_allowed_models_may_be_asked_for() {
        let listed = operator(Some(vec!["small", "large"]));
        assert!(listed.refuses(Some("large")).is_none());
        for asked in [Some("gpt-expensive"), None] {
            let refused = listed.refuses(asked).expect("a model not offered is refused");
            assert_eq!(refused.status(), axum::http::StatusCode::FORBIDDEN);
        }
        assert!(operator(Some(vec![])).refuses(Some("anything")).is_some(), "none listed: every call refused");
        assert!(operator(None).refuses(Some("anything")).is_none(), "the user's own provider, or one operator model");
    }
}
