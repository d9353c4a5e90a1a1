//! HTTP handler of the audit API (`/api/account/audit`).

use axum::Json;
use axum::extract::State;

use super::models::{AuditPage, AuditQuery};
use super::repo;
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// Your audit log
///
/// Security-relevant events of the caller's account, newest first: logins (also failed ones
/// with this account's email), logouts, API keys created and revoked, instances created,
/// rebooted, shut down, started and deleted. Page with `before` = the previous `next_before`.
#[utoipa::path(get, path = "/api/account/audit", tag = "account", operation_id = "list_audit_events",
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 400, description = "`limit` out of range", body = ErrorBody),
    ))]
pub async fn list(State(state): State<AppState>, user: AuthUser, ApiQuery(q): ApiQuery<AuditQuery>) -> AppResult<Json<AuditPage>> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`limit` must be between 1 and 200."));
    }
    let rows = repo::for_user(&state.db, user.user_id, q.before.unwrap_or(i64::MAX), limit).await?;
    let next_before = (rows.len() as i64 == limit).then(|| rows.last().map(|r| r.id)).flatten();
    Ok(Json(AuditPage { events: rows.into_iter().map(Into::into).collect(), next_before }))
}
