//! Extractors for the routes under `/api/instances/{instanceId}`: they authenticate the
//! caller, parse the id and load the caller's instance — or answer 404 `instance_not_found`
//! (also for other users' instances, whose existence is not revealed) — before any handler
//! code or body byte is read. `RunningInstance` also requires the instance `ready`, waking a
//! paused one (see `power`), and counts as use of it. Each carries its own OpenAPI path
//! parameter, so handlers only name it in `params(…)`.

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use axum::http::Method;
use axum::http::request::Parts;
use sqlx::PgPool;
use utoipa::IntoParams;
use utoipa::openapi::path::{Parameter, ParameterIn};
use uuid::Uuid;

use super::power::{self, Wake};
use super::repo::InstanceRow;
use crate::auth::AuthUser;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::extract::{InstanceId, instance_not_found};
use crate::state::{AppState, Call, UserViews};

/// The caller's instance, whatever its status.
pub struct OwnedInstance {
    pub user: AuthUser,
    pub instance: InstanceRow,
}

/// The caller's instance, `ready` to run commands, file operations, chat and terminals. Marks
/// a call in progress until the handler returns (a pause waits for it).
pub struct RunningInstance {
    pub user: AuthUser,
    pub instance: InstanceRow,
    pub call: Call,
}

/// What the caller is about to do with the instance: the operation's method and route
/// template. On an organisation's instance the caller's role must allow it (`orgs::roles`).
#[derive(Clone, Copy)]
pub struct Intent<'a> {
    pub method: &'a Method,
    pub template: &'a str,
}

impl<'a> Intent<'a> {
    /// The operation a request is routed to.
    pub fn of(parts: &'a Parts) -> Self {
        Intent { method: &parts.method, template: parts.extensions.get::<MatchedPath>().map_or("", MatchedPath::as_str) }
    }
}

/// The instance if it is `user_id`'s — their own, or an organisation's they are a member of
/// whose role allows `intent` (403 `role_insufficient` otherwise) — else 404: found in the
/// user's instance rows as remembered for `GET /api/instances` (kept honest as that list is),
/// or read.
pub async fn owned(db: &PgPool, lists: &UserViews, user_id: Uuid, id: Uuid, intent: Intent<'_>) -> AppResult<InstanceRow> {
    let row = super::lists::find(db, lists, user_id, id).await?.ok_or_else(instance_not_found)?;
    if let Some(org_id) = row.org_id {
        crate::orgs::roles::check(db, org_id, user_id, intent.method, intent.template).await?;
    }
    Ok(row)
}

/// The instance if `user_id` may do `intent` with it, woken up as `wake` allows; else 404, 403 or 409.
pub async fn running(state: &AppState, user_id: Uuid, id: Uuid, intent: Intent<'_>, wake: Wake) -> AppResult<InstanceRow> {
    let instance = owned(&state.db, &state.instance_lists, user_id, id, intent).await?;
    power::awake(state, instance, wake).await
}

/// 409 `instance_not_running` for an instance that is neither ready nor can be woken.
pub fn not_ready(instance: &InstanceRow) -> AppError {
    AppError::new(
        ErrorCode::InstanceNotRunning,
        format!("The instance is {}; it must be ready (start it with POST /api/instances/{}/start).", instance.status.as_str(), instance.id),
    )
}

async fn caller_and_instance<S>(parts: &mut Parts, state: &S) -> AppResult<(AuthUser, InstanceRow)>
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    let user = AuthUser::from_request_parts(parts, state).await?;
    let InstanceId(id) = InstanceId::from_request_parts(parts, state).await?;
    let app = AppState::from_ref(state);
    let instance = owned(&app.db, &app.instance_lists, user.user_id, id, Intent::of(parts)).await?;
    Ok((user, instance))
}

impl<S> FromRequestParts<S> for OwnedInstance
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (user, instance) = caller_and_instance(parts, state).await?;
        Ok(OwnedInstance { user, instance })
    }
}

impl<S> FromRequestParts<S> for RunningInstance
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = AppState::from_ref(state);
        let user = AuthUser::from_request_parts(parts, state).await?;
        let InstanceId(id) = InstanceId::from_request_parts(parts, state).await?;
        // Ownership first: a stranger's request registers no call (which would keep the
        // instance awake or wait on its freeze). Then the call is registered before the status
        // is read: a pause either sees it, or made its change before this read, which then
        // wakes the instance.
        owned(&app.db, &app.instance_lists, user.user_id, id, Intent::of(parts)).await?;
        let call = app.activity.call(id).await;
        let instance = owned(&app.db, &app.instance_lists, user.user_id, id, Intent::of(parts)).await?;
        let instance = power::awake(&app, instance, Wake::Resume).await?;
        Ok(RunningInstance { user, instance, call })
    }
}

/// The `{instanceId}` path parameter as documented.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(non_snake_case, dead_code)]
struct InstancePath {
    /// Instance id
    instanceId: Uuid,
}

impl IntoParams for OwnedInstance {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        InstancePath::into_params(parameter_in)
    }
}

impl IntoParams for RunningInstance {
    fn into_params(parameter_in: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        InstancePath::into_params(parameter_in)
    }
}
