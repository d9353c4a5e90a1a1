//! Who opens a websocket to an instance. In order: a `ticket` query parameter (browsers, from
//! `vnc-url`; good for the desktop only, `DesktopCaller`), `Authorization: Bearer` (curl,
//! websocat, agents), or the `/account` session cookie — the last only when the handshake's
//! `Origin` is this server's public origin, since a browser sends cookies on cross-site
//! websocket handshakes and CORS does not apply to them.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use uuid::Uuid;

use super::extractor::{AuthUser, Credential, SESSION_COOKIE, authenticate, check_grant, cookie};
use super::tickets;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::extract::{InstanceId, origin_for};
use crate::state::AppState;

/// The caller of a websocket handshake on `/api/instances/{instanceId}/…`.
pub struct WsCaller {
    pub user: AuthUser,
    pub instance_id: Uuid,
}

/// The caller of the desktop's websocket (`vnc/ws`), which a `vnc-url` ticket may open.
pub struct DesktopCaller(pub WsCaller);

async fn caller(parts: &mut Parts, state: &AppState, tickets_open_it: bool) -> AppResult<WsCaller> {
    let InstanceId(instance_id) = InstanceId::from_request_parts(parts, state).await?;
    let ticket = parts.uri.query().and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "ticket").map(|(_, v)| v.into_owned()));
    let user = match ticket {
        // A ticket is for the one purpose it was issued for; it is not spent elsewhere.
        Some(_) if !tickets_open_it => return Err(AppError::unauthorized("A vnc-url ticket opens the desktop (vnc/ws) only; use an API key.")),
        Some(ticket) => {
            let user_id = tickets::redeem(&state.db, &ticket, instance_id).await?;
            AuthUser { user_id, credential: Credential::Ticket }
        }
        None => {
            if has_session_cookie_only(&parts.headers) {
                check_origin(&parts.headers, &origin_for(&state.settings, &parts.headers))?;
            }
            let user = authenticate(state, &Method::GET, &parts.headers).await?;
            // A scoped key opens only the websockets of its scopes and instance.
            if let Some(grant) = user.grant() {
                check_grant(grant, parts)?;
            }
            user
        }
    };
    Ok(WsCaller { user, instance_id })
}

impl<S> FromRequestParts<S> for WsCaller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        caller(parts, &AppState::from_ref(state), false).await
    }
}

impl<S> FromRequestParts<S> for DesktopCaller
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        caller(parts, &AppState::from_ref(state), true).await.map(DesktopCaller)
    }
}

fn has_session_cookie_only(headers: &HeaderMap) -> bool {
    !headers.contains_key(header::AUTHORIZATION) && cookie(headers, SESSION_COOKIE).is_some()
}

/// Refuses cookie-authenticated handshakes started by pages of another origin.
fn check_origin(headers: &HeaderMap, public_origin: &str) -> AppResult<()> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("");
    if origin.eq_ignore_ascii_case(public_origin) {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::OriginMismatch,
            format!("Websockets authenticated by the session cookie must come from a page of {public_origin}."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_handshakes_need_the_public_origin() {
        let mut headers = HeaderMap::new();
        assert!(check_origin(&headers, "https://claw.example.test").is_err());
        headers.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
        assert!(check_origin(&headers, "https://claw.example.test").is_err());
        headers.insert(header::ORIGIN, "https://claw.example.test".parse().unwrap());
        assert!(check_origin(&headers, "https://claw.example.test").is_ok());
    }
}
