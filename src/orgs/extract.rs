//! The `Membership` extractor for routes under `/api/orgs/{orgId}`: it authenticates the
//! caller and loads the organisation with the caller's role — or answers 404 `org_not_found`
//! (also to non-members, whose view of it is nothing) — before any handler code runs.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use uuid::Uuid;

use super::models::OrgView;
use super::{repo, service};
use crate::auth::AuthUser;
use crate::error::AppError;
use crate::state::AppState;

/// The caller and the organisation `{orgId}` they belong to, with their role.
pub struct Membership {
    pub user: AuthUser,
    pub org: OrgView,
}

impl<S> FromRequestParts<S> for Membership
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        let params = axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state).await;
        let id = params.ok().and_then(|p| p.get("orgId").and_then(|raw| raw.parse::<Uuid>().ok())).ok_or_else(service::org_not_found)?;
        let app = AppState::from_ref(state);
        let org = repo::get_for_member(&app.db, id, user.user_id).await?.ok_or_else(service::org_not_found)?;
        Ok(Membership { user, org })
    }
}
