//! `AuthUser`: who is calling. A bearer API key (`Authorization: Bearer ocaas_…`) or the
//! `/account` browser session cookie; cookie-authenticated requests that change state must
//! also carry the session's CSRF token in `X-CSRF-Token` (a cross-site form or `fetch` can
//! send the cookie but can neither read the token nor set that header without CORS, which
//! ocaas never grants).

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use uuid::Uuid;

use super::scopes::{self, Grant};
use super::{repo, secrets};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::{AppState, Cached};

pub const SESSION_COOKIE: &str = "ocaas_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

#[derive(Debug, Clone)]
pub enum Credential {
    ApiKey {
        key_id: Uuid,
        /// What the key may do (scopes, instance).
        grant: Grant,
    },
    Session {
        token_hash: Vec<u8>,
        csrf_token: String,
    },
    /// A single-use websocket ticket (see `tickets`).
    Ticket,
}

#[derive(Debug, Clone)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub credential: Credential,
}

impl AuthUser {
    /// A scoped or instance-bound key's grant; `None` for full credentials.
    pub fn grant(&self) -> Option<&Grant> {
        match &self.credential {
            Credential::ApiKey { grant, .. } if !grant.is_full() => Some(grant),
            _ => None,
        }
    }

    /// The CSRF token to hand back to a browser session (none for API keys).
    pub fn csrf_token(&self) -> Option<String> {
        match &self.credential {
            Credential::Session { csrf_token, .. } => Some(csrf_token.clone()),
            Credential::ApiKey { .. } | Credential::Ticket => None,
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let user = authenticate(&state, &parts.method, &parts.headers).await?;
        if let Some(grant) = user.grant() {
            check_grant(grant, parts)?;
        }
        // Counted against the user while the request is handled (`inflight`).
        if let Some(held) = parts.extensions.get::<crate::inflight::HeldSlot>() {
            held.hold_with(|| state.user_slots.acquire(user.user_id, crate::state::SlotKind::Request))?;
        }
        Ok(user)
    }
}

pub async fn authenticate(state: &AppState, method: &Method, headers: &HeaderMap) -> AppResult<AuthUser> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let key = bearer_token(value.to_str().unwrap_or(""))
            .ok_or_else(|| AppError::unauthorized("The Authorization header must be `Bearer <API key>`."))?;
        return authenticate_key(state, key).await;
    }
    if let Some(token) = cookie(headers, SESSION_COOKIE) {
        let user = authenticate_session(state, &token).await?;
        if !is_safe(method) {
            check_csrf(&user, headers)?;
        }
        return Ok(user);
    }
    Err(AppError::unauthorized("This endpoint needs an API key: send `Authorization: Bearer <API key>` (create keys at /account)."))
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

pub async fn authenticate_key(state: &AppState, key: &str) -> AppResult<AuthUser> {
    let invalid = || AppError::unauthorized("The API key is not valid: it is unknown, revoked or expired.");
    if !secrets::looks_like_api_key(key) {
        return Err(invalid());
    }
    let hash = secrets::sha256(key);
    if let Some(Cached { user_id, key_id: Some(key_id), scopes, instance_id, .. }) = state.credentials.get(&hash) {
        return Ok(AuthUser { user_id, credential: Credential::ApiKey { key_id, grant: Grant::stored(scopes, instance_id) } });
    }
    let ticket = state.credentials.ticket();
    let owner = repo::authenticate_api_key(&state.db, &hash).await?.ok_or_else(invalid)?;
    let grant = Grant::stored(owner.scopes.clone(), owner.instance_id);
    let cached = Cached {
        user_id: owner.user_id,
        key_id: Some(owner.id),
        csrf_token: None,
        expires_at: owner.expires_at,
        scopes: owner.scopes,
        instance_id: owner.instance_id,
    };
    state.credentials.put(hash, ticket, cached);
    Ok(AuthUser { user_id: owner.user_id, credential: Credential::ApiKey { key_id: owner.id, grant } })
}

async fn authenticate_session(state: &AppState, token: &str) -> AppResult<AuthUser> {
    let token_hash = secrets::sha256(token);
    if let Some(Cached { user_id, key_id: None, csrf_token: Some(csrf_token), .. }) = state.credentials.get(&token_hash) {
        return Ok(AuthUser { user_id, credential: Credential::Session { token_hash, csrf_token } });
    }
    let ticket = state.credentials.ticket();
    let session =
        repo::session(&state.db, &token_hash).await?.ok_or_else(|| AppError::unauthorized("The browser session has expired; log in again."))?;
    let cached = Cached {
        user_id: session.user_id,
        key_id: None,
        csrf_token: Some(session.csrf_token.clone()),
        expires_at: Some(session.expires_at),
        scopes: None,
        instance_id: None,
    };
    state.credentials.put(token_hash.clone(), ticket, cached);
    Ok(AuthUser { user_id: session.user_id, credential: Credential::Session { token_hash, csrf_token: session.csrf_token } })
}

/// A scoped key reaches only its scopes' operations, and an instance-bound key only its
/// instance's (see `scopes`).
pub fn check_grant(grant: &Grant, parts: &Parts) -> AppResult<()> {
    let template = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or("");
    if let Some(bound) = grant.instance_id
        && scopes::instance_in(template, parts.uri.path()) != Some(bound)
    {
        return Err(AppError::new(ErrorCode::InsufficientScope, format!("This key works only on instance {bound}.")));
    }
    let Some(scopes) = &grant.scopes else { return Ok(()) };
    match scopes::required(&parts.method, template) {
        Some(needed) if scopes.contains(&needed) => Ok(()),
        Some(needed) => Err(AppError::new(ErrorCode::InsufficientScope, format!("This key lacks the scope `{needed}`."))),
        None => Err(AppError::new(ErrorCode::InsufficientScope, "This operation needs a key without scopes.")),
    }
}

fn check_csrf(user: &AuthUser, headers: &HeaderMap) -> AppResult<()> {
    let Credential::Session { csrf_token, .. } = &user.credential else { return Ok(()) };
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
    if secrets::constant_time_eq(sent, csrf_token) {
        Ok(())
    } else {
        Err(AppError::new(
            ErrorCode::CsrfFailed,
            "Requests authenticated by the session cookie must send the session's CSRF token in `X-CSRF-Token`.",
        ))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The value of cookie `name` from the request's `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; ocaas_session=tok; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE).as_deref(), Some("tok"));
        assert_eq!(cookie(&headers, "missing"), None);
    }
}
