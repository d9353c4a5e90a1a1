//! What users see of the broker's metering: token totals per UTC day and model over a period,
//! of one instance (`GET /api/instances/{instanceId}/usage`) or of the whole account
//! (`GET /api/account/usage`), and the same for operators (`ocaas admin usage`).

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::repo::{self, Whose};
use crate::auth::extractor::AuthUser;
use crate::error::{AppError, AppResult, ErrorBody, ErrorCode};
use crate::extract::ApiQuery;
use crate::instances::extract::OwnedInstance;
use crate::orgs::extract::Membership;
use crate::state::AppState;

/// Longest period one answer covers.
const MAX_DAYS: i64 = 400;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Start (RFC 3339), inclusive. Default: the first day of the current month, 00:00 UTC.
    pub from: Option<DateTime<Utc>>,
    /// End (RFC 3339), exclusive. Default: now.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDay {
    /// UTC day.
    pub day: NaiveDate,
    /// The model the provider was asked for.
    pub model: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// Calls whose provider reported no usage: their counts are estimated (about 4 bytes a token).
    pub estimated_requests: i64,
}

#[derive(Debug, Default, Serialize, ToSchema)]
pub struct UsageTotals {
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "from": "2026-11-01T00:00:00Z", "to": "2026-11-27T12:00:00Z",
    "totals": {"requests": 42, "prompt_tokens": 251000, "completion_tokens": 9800},
    "days": [{"day": "2026-11-27", "model": "gpt-4o-mini", "requests": 42, "prompt_tokens": 251000, "completion_tokens": 9800, "estimated_requests": 0}]
}))]
pub struct UsageReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub totals: UsageTotals,
    pub days: Vec<UsageDay>,
}

fn period(query: &UsageQuery) -> AppResult<(DateTime<Utc>, DateTime<Utc>)> {
    let now = Utc::now();
    let (from, to) = (query.from.unwrap_or_else(|| super::limits::month_start(now)), query.to.unwrap_or(now));
    if to <= from || (to - from).num_days() > MAX_DAYS {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("`from` must be before `to`, and at most {MAX_DAYS} days apart.")));
    }
    Ok((from, to))
}

fn report(from: DateTime<Utc>, to: DateTime<Utc>, days: Vec<UsageDay>) -> UsageReport {
    let mut totals = UsageTotals::default();
    for day in &days {
        totals.requests += day.requests;
        totals.prompt_tokens += day.prompt_tokens;
        totals.completion_tokens += day.completion_tokens;
    }
    UsageReport { from, to, totals, days }
}

/// Instance model usage
///
/// Tokens the instance's agent used through the model broker, per UTC day and model, over
/// `from`/`to` (default: this month so far). Counts come from the provider's usage report;
/// where it sent none they are estimated and counted in `estimated_requests`.
#[utoipa::path(get, path = "/api/instances/{instanceId}/usage", tag = "instances",
    params(OwnedInstance, UsageQuery),
    responses(
        (status = 200, description = "Usage of the instance", body = UsageReport),
        (status = 400, description = "`invalid_request`: a bad period", body = ErrorBody),
        (status = 404, description = "`instance_not_found`", body = ErrorBody),
    ))]
pub async fn instance_usage(
    State(state): State<AppState>,
    OwnedInstance { instance, .. }: OwnedInstance,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> AppResult<Json<UsageReport>> {
    let (from, to) = period(&query)?;
    let rows = repo::usage_by_day(&state.db, Whose::Instance(instance.id), from, to).await?;
    Ok(Json(report(from, to, rows)))
}

/// Account model usage
///
/// Tokens all of the account's own instances used through the model broker (deleted instances
/// included; organisations' instances count for the organisation), per UTC day and model, over
/// `from`/`to` (default: this month so far).
#[utoipa::path(get, path = "/api/account/usage", tag = "account",
    params(UsageQuery),
    responses(
        (status = 200, description = "Usage of the account", body = UsageReport),
        (status = 400, description = "`invalid_request`: a bad period", body = ErrorBody),
    ))]
pub async fn account_usage(State(state): State<AppState>, user: AuthUser, ApiQuery(query): ApiQuery<UsageQuery>) -> AppResult<Json<UsageReport>> {
    let (from, to) = period(&query)?;
    let rows = repo::usage_by_day(&state.db, Whose::User(user.user_id), from, to).await?;
    Ok(Json(report(from, to, rows)))
}

/// Organisation model usage
///
/// Tokens all of the organisation's instances used through the model broker (deleted ones
/// included) — what its `monthly_tokens` counts — per UTC day and model, over `from`/`to`
/// (default: this month so far). Every member may see it.
#[utoipa::path(get, path = "/api/orgs/{orgId}/usage", tag = "orgs", operation_id = "org_usage",
    params(("orgId" = Uuid, Path, description = "Organisation id"), UsageQuery),
    responses(
        (status = 200, description = "Usage of the organisation", body = UsageReport),
        (status = 400, description = "`invalid_request`: a bad period", body = ErrorBody),
        (status = 404, description = "`org_not_found`", body = ErrorBody),
    ))]
pub async fn org_usage(
    State(state): State<AppState>,
    Membership { org, .. }: Membership,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> AppResult<Json<UsageReport>> {
    let (from, to) = period(&query)?;
    let rows = repo::usage_by_day(&state.db, Whose::Org(org.id), from, to).await?;
    Ok(Json(report(from, to, rows)))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(instance_usage)).routes(routes!(account_usage)).routes(routes!(org_usage))
}
