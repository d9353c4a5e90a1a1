//! Request extractors shared by every domain: JSON, path and query extractors whose
//! rejections use the API's error shape, and the public origin used to build absolute URLs.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{AppError, ErrorCode};
use crate::state::AppState;

/// `axum::Json` whose rejections become `invalid_request` (400), `payload_too_large` (413)
/// or `unsupported_media_type` (415) JSON errors.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_json_body(req, state, false).await.map(|v| ApiJson(v.expect("a body is required")))
    }
}

/// Like `ApiJson`, but a request without a body (no `Content-Type`, zero length) means
/// `T::default()`: for endpoints whose fields are all optional, such as creating an instance.
pub struct ApiJsonOrEmpty<T>(pub T);

impl<S, T> FromRequest<S> for ApiJsonOrEmpty<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        parse_json_body(req, state, true).await.map(|v| ApiJsonOrEmpty(v.unwrap_or_default()))
    }
}

/// `Ok(None)` only when `allow_empty` and the request has no body at all.
async fn parse_json_body<S: Send + Sync, T: DeserializeOwned>(req: Request, state: &S, allow_empty: bool) -> Result<Option<T>, AppError> {
    let has_content_type = req.headers().contains_key(axum::http::header::CONTENT_TYPE);
    if has_content_type && !has_json_content_type(req.headers()) || !has_content_type && !allow_empty {
        return Err(unsupported_media_type());
    }
    let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::new(ErrorCode::PayloadTooLarge, "The request body is larger than this endpoint accepts.")
        } else if crate::inflight::deadline::is_too_slow(&rejection) {
            body_too_slow()
        } else {
            AppError::new(ErrorCode::InvalidRequest, format!("The request body could not be read: {}", rejection.body_text()))
        }
    })?;
    if !has_content_type {
        return if bytes.is_empty() { Ok(None) } else { Err(unsupported_media_type()) };
    }
    // Every request body of this API is an object; serde would also accept an array for a struct.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AppError::new(ErrorCode::InvalidRequest, "The body must be a JSON object."));
    }
    axum::Json::<T>::from_bytes(&bytes).map(|axum::Json(value)| Some(value)).map_err(json_rejection)
}

fn has_json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// 408 for a body that stalled (`inflight::deadline`).
pub fn body_too_slow() -> AppError {
    AppError::new(ErrorCode::BodyTooSlow, "The request body arrived too slowly; send it at once.")
}

fn unsupported_media_type() -> AppError {
    AppError::new(ErrorCode::UnsupportedMediaType, "Send the body as JSON with `Content-Type: application/json`.")
}

fn json_rejection(rejection: JsonRejection) -> AppError {
    let detail = match &rejection {
        JsonRejection::JsonDataError(e) => format!("The JSON body does not fit: {}", inner_text(&e.body_text())),
        JsonRejection::JsonSyntaxError(e) => format!("The body is not valid JSON: {}", inner_text(&e.body_text())),
        other => other.body_text(),
    };
    AppError::new(ErrorCode::InvalidRequest, detail)
}

/// axum prefixes serde's message with a generic sentence; keep only serde's part, which names the field.
fn inner_text(text: &str) -> String {
    text.split_once(": ").map(|(_, rest)| rest.to_owned()).unwrap_or_else(|| text.to_owned())
}

/// 404 for an instance id that is malformed, unknown or someone else's (never revealed).
/// A label from a request as stored: trimmed, `None` when empty; 400 naming `field` when longer
/// than `max` characters or not printable.
pub fn printable_label<'a>(raw: &'a str, field: &str, max: usize) -> Result<Option<&'a str>, AppError> {
    let text = Some(raw.trim()).filter(|t| !t.is_empty());
    if text.is_some_and(|t| t.chars().count() > max || t.chars().any(char::is_control)) {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("`{field}` must be at most {max} printable characters.")));
    }
    Ok(text)
}

pub fn instance_not_found() -> AppError {
    AppError::new(ErrorCode::InstanceNotFound, "No instance with this id exists on your account.")
}

/// The `{instanceId}` path segment; anything that is not a UUID is simply not found.
pub struct InstanceId(pub uuid::Uuid);

impl<S: Send + Sync> FromRequestParts<S> for InstanceId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // By name: routes under an instance may have more parameters (`{snapshotId}`).
        let axum::extract::Path(params) = axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| instance_not_found())?;
        params.get("instanceId").and_then(|raw| raw.parse().ok()).map(InstanceId).ok_or_else(instance_not_found)
    }
}

/// `axum::extract::Path` with a 400 `invalid_request` JSON rejection.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| ApiPath(value))
            .map_err(|rejection: PathRejection| AppError::new(ErrorCode::InvalidRequest, format!("Bad path parameter: {}", rejection.body_text())))
    }
}

/// `axum::extract::Query` with a 400 `invalid_request` JSON rejection.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state).await.map(|axum::extract::Query(value)| ApiQuery(value)).map_err(
            |rejection: QueryRejection| AppError::new(ErrorCode::InvalidRequest, format!("Bad query string: {}", inner_text(&rejection.body_text()))),
        )
    }
}

/// The origin (`scheme://host[:port]`, no trailing slash) clients use to reach this server:
/// `OCAAS_PUBLIC_URL`, else `X-Forwarded-Proto`/`X-Forwarded-Host` when the proxy is trusted,
/// else the request's `Host`.
pub struct PublicOrigin(pub String);

impl PublicOrigin {
    /// Cookies get `Secure` when the origin clients use is https (`OCAAS_PUBLIC_URL`, or a
    /// trusted proxy's `X-Forwarded-Proto`).
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.0, path)
    }
}

/// The websocket origin of an http(s) origin: `http` → `ws`, `https` → `wss`.
pub fn ws_origin(origin: &str) -> String {
    origin.replacen("http", "ws", 1)
}

impl<S> FromRequestParts<S> for PublicOrigin
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        Ok(PublicOrigin(origin_for(&state.settings, &parts.headers)))
    }
}

pub fn origin_for(settings: &crate::config::Settings, headers: &axum::http::HeaderMap) -> String {
    if let Some(public) = &settings.public_url {
        return public.clone();
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
            .filter(|v| !v.is_empty() && is_safe_host(v))
    };
    let host = if settings.trust_proxy { header("x-forwarded-host") } else { None };
    let host = host.or_else(|| header("host")).unwrap_or_else(|| settings.bind.to_string());
    let scheme = if settings.trust_proxy { header("x-forwarded-proto").filter(|p| p == "https" || p == "http") } else { None };
    format!("{}://{}", scheme.as_deref().unwrap_or("http"), host)
}

/// A host header value that can be pasted into a URL without changing its meaning.
fn is_safe_host(value: &str) -> bool {
    value.len() <= 255 && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']' | '_'))
}

/// The client's address: with `OCAAS_TRUST_PROXY` and a peer among `OCAAS_TRUSTED_PROXIES`,
/// the right-most `X-Forwarded-For` hop that is not a trusted proxy (hops left of it are
/// whatever the client wrote, so they are never believed); else the TCP peer.
pub fn client_ip(settings: &crate::config::Settings, headers: &axum::http::HeaderMap, peer: Option<std::net::IpAddr>) -> Option<std::net::IpAddr> {
    let trusted = |ip: &std::net::IpAddr| settings.trusted_proxies.iter().any(|net| net.contains(*ip));
    if !settings.trust_proxy || !peer.as_ref().is_some_and(trusted) {
        return peer;
    }
    let hops = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim);
    for hop in hops.rev() {
        match hop.parse::<std::net::IpAddr>() {
            Ok(ip) if trusted(&ip) => continue,
            Ok(ip) => return Some(ip),
            // A hop that is not an address: nothing left of it can be believed.
            Err(_) => return peer,
        }
    }
    peer
}

/// The client's address, for the audit log and rate limits (`client_ip`).
pub struct ClientAddr(pub Option<String>);

impl ClientAddr {
    pub fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<S> FromRequestParts<S> for ClientAddr
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
        Ok(ClientAddr(client_ip(&state.settings, &parts.headers, peer).map(|ip| ip.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderMap;

    fn ip(text: &str) -> Option<std::net::IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn the_client_is_the_right_most_hop_that_is_not_a_trusted_proxy() {
        let mut settings = crate::config::Settings::defaults("");
        let forwarded = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("x-forwarded-for", value.parse().unwrap());
            headers
        };
        // Not trusting proxies: the peer, whatever the header says.
        assert_eq!(super::client_ip(&settings, &forwarded("203.0.113.9"), ip("127.0.0.1")), ip("127.0.0.1"));
        settings.trust_proxy = true;
        // A forged left-most hop is never believed; the hop the proxy added is.
        assert_eq!(super::client_ip(&settings, &forwarded("6.6.6.6, 203.0.113.9"), ip("127.0.0.1")), ip("203.0.113.9"));
        assert_eq!(super::client_ip(&settings, &forwarded("6.6.6.6, 203.0.113.9, 127.0.0.2"), ip("127.0.0.1")), ip("203.0.113.9"));
        assert_eq!(super::client_ip(&settings, &forwarded("garbage, 127.0.0.2"), ip("127.0.0.1")), ip("127.0.0.1"));
        // A peer that is not a trusted proxy is the client itself.
        assert_eq!(super::client_ip(&settings, &forwarded("203.0.113.9"), ip("198.51.100.4")), ip("198.51.100.4"));
    }
}
