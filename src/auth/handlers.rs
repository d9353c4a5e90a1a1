//! HTTP handlers of the account API (`/api/account…`): thin wrappers over `service`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use uuid::Uuid;

use super::extractor::{AuthUser, Credential, SESSION_COOKIE};
use super::models::{AccountView, ApiKeyView, CreateKeyRequest, CreatedApiKey, LoginRequest, RegisterRequest};
use super::scopes::Grant;
use super::{repo, service};
use crate::audit::AuditAction;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiPath};
use crate::extract::{ClientAddr, PublicOrigin};
use crate::state::AppState;

/// Register an account
///
/// Creates an account and logs it in (sets the session cookie). Whether an invite code is
/// needed depends on the server's registration mode (`OCAAS_REGISTRATION`).
#[utoipa::path(post, path = "/api/account/register", tag = "account", security(()),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created; the session cookie is set", body = AccountView),
        (status = 400, description = "Bad JSON, invalid email or weak password", body = ErrorBody),
        (status = 403, description = "`registration_closed`, `invite_required` or `invalid_invite_code`", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many attempts from this address; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    client: ClientAddr,
    origin: PublicOrigin,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> AppResult<Response> {
    state.auth_limits.check(client.as_deref(), None)?;
    let user = service::register(&state.db, state.settings.registration, &body.email, &body.password, body.invite_code.as_deref()).await?;
    crate::audit::record_action(&state.db, AuditAction::UserRegistered, user.id, client.as_deref(), None).await?;
    logged_in(&state, user.id, StatusCode::CREATED, &origin).await
}

/// Log in
///
/// Checks email and password and starts a browser session (HttpOnly, SameSite=Lax cookie).
/// The response carries the session's `csrf_token`.
#[utoipa::path(post, path = "/api/account/login", tag = "account", security(()),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in; the session cookie is set", body = AccountView),
        (status = 400, description = "Bad JSON", body = ErrorBody),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many attempts from this address or on this account; see `Retry-After`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    client: ClientAddr,
    origin: PublicOrigin,
    ApiJson(body): ApiJson<LoginRequest>,
) -> AppResult<Response> {
    state.auth_limits.check(client.as_deref(), Some(&body.email))?;
    let outcome = service::login(&state.db, &body.email, &body.password).await;
    let (action, actor) = match &outcome {
        Ok(user) => (AuditAction::LoginSucceeded, Some(user.id)),
        Err(_) => (AuditAction::LoginFailed, None),
    };
    let event = crate::audit::Event { action, actor, email: Some(body.email.trim()), client: client.as_deref(), target: None, key: None };
    crate::audit::record(&state.db, event).await?;
    logged_in(&state, outcome?.id, StatusCode::OK, &origin).await
}

async fn logged_in(state: &AppState, user_id: Uuid, status: StatusCode, origin: &PublicOrigin) -> AppResult<Response> {
    let session = service::start_session(&state.db, user_id, state.settings.session_hours).await?;
    let account = service::account_view(&state.db, user_id, Some(session.csrf_token)).await?;
    let max_age = u64::from(state.settings.session_hours) * 3600;
    let cookie = session_cookie(&session.token, max_age, origin.is_https());
    let mut response = (status, Json(account)).into_response();
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(response)
}

fn session_cookie(value: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!("{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}");
    HeaderValue::from_str(&cookie).expect("cookie values are base64url")
}

/// Log out
///
/// Ends the browser session behind the cookie and clears it. With an API key it does nothing
/// (revoke keys with `DELETE /api/account/keys/{id}`).
#[utoipa::path(post, path = "/api/account/logout", tag = "account",
    responses(
        (status = 204, description = "Logged out"),
        (status = 401, description = "Not authenticated", body = ErrorBody,
            example = json!({"error": "unauthorized", "message": "The browser session has expired; log in again."})),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
    ))]
pub async fn logout(State(state): State<AppState>, user: AuthUser, client: ClientAddr, origin: PublicOrigin) -> AppResult<Response> {
    let mut headers = HeaderMap::new();
    if let Credential::Session { token_hash, .. } = &user.credential {
        repo::delete_session(&state.db, token_hash).await?;
        crate::audit::record_action(&state.db, AuditAction::Logout, &user, client.as_deref(), None).await?;
        headers.insert(header::SET_COOKIE, session_cookie("", 0, origin.is_https()));
    }
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// Who am I
///
/// The authenticated account and its subscription.
#[utoipa::path(get, path = "/api/account", tag = "account",
    responses(
        (status = 200, description = "The account", body = AccountView),
        (status = 401, description = "Missing, unknown, revoked or expired credentials", body = ErrorBody),
    ))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> AppResult<Response> {
    // A browser session's answer carries the session's own CSRF token: read, not cached.
    if let Some(csrf) = user.csrf_token() {
        return Ok(Json(service::account_view(&state.db, user.user_id, Some(csrf)).await?).into_response());
    }
    Ok(service::account_json(&state.db, &state.accounts, user.user_id).await?.into_response())
}

/// List API keys
///
/// The account's keys that are not revoked, newest first. Secrets are never shown again.
#[utoipa::path(get, path = "/api/account/keys", tag = "account",
    responses(
        (status = 200, description = "Keys", body = [ApiKeyView]),
    ))]
pub async fn list_keys(State(state): State<AppState>, user: AuthUser) -> AppResult<Json<Vec<ApiKeyView>>> {
    let keys = repo::list_api_keys(&state.db, user.user_id).await?;
    Ok(Json(keys.into_iter().map(Into::into).collect()))
}

/// Create an API key
///
/// Returns the new key's secret once, in `key`; only its SHA-256 is stored.
#[utoipa::path(post, path = "/api/account/keys", tag = "account",
    request_body = CreateKeyRequest,
    responses(
        (status = 201, description = "Key created", body = CreatedApiKey),
        (status = 400, description = "Bad JSON, name, scope or expiry", body = ErrorBody),
        (status = 403, description = "`csrf_failed`, or `insufficient_scope`: more than the calling key has", body = ErrorBody),
        (status = 404, description = "`instance_not_found`: `instance_id` is not one of the user's instances", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Body is not JSON", body = ErrorBody),
    ))]
pub async fn create_key(
    State(state): State<AppState>,
    user: AuthUser,
    client: ClientAddr,
    ApiJson(body): ApiJson<CreateKeyRequest>,
) -> AppResult<(StatusCode, Json<CreatedApiKey>)> {
    let expires_at = match (body.expires_in_days, body.expires_at) {
        (Some(_), Some(_)) => return Err(AppError::new(ErrorCode::InvalidRequest, "Give `expires_in_days` or `expires_at`, not both.")),
        (Some(days), None) => Some(Utc::now() + service::checked_days(days, "expires_in_days")?),
        (None, at) => at,
    };
    let wanted = Grant { scopes: body.scopes, instance_id: body.instance_id };
    // A key makes no key with more than it has itself.
    if let Some(mine) = user.grant()
        && !mine.covers(&wanted)
    {
        return Err(AppError::new(ErrorCode::InsufficientScope, "A key cannot create a key with more scopes or instances than its own."));
    }
    let created = service::create_scoped_key(&state.db, user.user_id, body.name.as_deref(), expires_at, &wanted).await?;
    crate::audit::record_action(&state.db, AuditAction::KeyCreated, &user, client.as_deref(), Some(created.view.id.to_string())).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revoke an API key
///
/// The key stops working at once.
#[utoipa::path(delete, path = "/api/account/keys/{id}", tag = "account",
    params(("id" = Uuid, Path, description = "Key id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "The id is not a UUID", body = ErrorBody),
        (status = 403, description = "`csrf_failed`", body = ErrorBody),
        (status = 404, description = "`key_not_found`: no such key on this account", body = ErrorBody,
            example = json!({"error": "key_not_found", "message": "No API key with this id exists on your account."})),
    ))]
pub async fn revoke_key(State(state): State<AppState>, user: AuthUser, client: ClientAddr, ApiPath(id): ApiPath<Uuid>) -> AppResult<StatusCode> {
    if repo::revoke_api_key(&state.db, id, Some(user.user_id)).await? {
        crate::audit::record_action(&state.db, AuditAction::KeyRevoked, &user, client.as_deref(), Some(id.to_string())).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AppError::new(ErrorCode::KeyNotFound, "No API key with this id exists on your account."))
    }
}
