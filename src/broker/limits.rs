//! Spend limits, enforced by the broker on every model call — chat turns and the agent's own
//! background work alike: the subscription's monthly token allowance (`ocaas admin
//! subscription grant … --monthly-tokens N`) and the user's optional cap per instance
//! (`PATCH /api/instances/{id}` `monthly_token_limit`). At 100 % the broker refuses with an
//! OpenAI-style 429 (the running turn ends with that message); crossing 80 % posts one
//! `system` message a month on the instance's chat feed and a `usage.threshold` webhook event.
//! Months are calendar months in UTC.

use chrono::{DateTime, Datelike, Months, TimeZone, Utc};
use uuid::Uuid;

use super::repo::{self, Budget, TokenOwner};
use crate::chat::models::{MessageStatus, Role};
use crate::webhooks::models::{EventType, UsageSubject, UsageThresholdData};
use sqlx::PgPool;

/// Share of an allowance after which users are warned.
const WARN_AT: f64 = 0.8;

/// 00:00 UTC on the first day of `now`'s month: where the month's usage starts counting.
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().unwrap_or(now)
}

/// The day the limits start over (`YYYY-MM-DD`, UTC).
fn next_month() -> String {
    month_start(Utc::now()).checked_add_months(Months::new(1)).map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default()
}

/// Why a call must be refused, naming the limit; `None` while there is room.
pub fn exhausted(budget: &Budget) -> Option<String> {
    if let Some(limit) = budget.instance_limit
        && budget.instance_used >= limit
    {
        return Some(format!(
            "This instance's monthly token limit ({limit} tokens, set by its owner) is used up; it resets on {} (UTC) or when the limit is raised.",
            next_month()
        ));
    }
    if let Some(allowance) = budget.account_allowance
        && budget.account_used >= allowance
    {
        return Some(format!("The account's monthly token allowance ({allowance} tokens) is used up; it resets on {} (UTC).", next_month()));
    }
    None
}

/// Why a call finds no room: an allowance used up, or what is left of it taken by calls in flight.
pub fn no_room(room: &super::repo::Room) -> String {
    let used = Budget {
        account_allowance: room.account_allowance,
        account_used: room.account_used,
        instance_limit: room.instance_limit,
        instance_used: room.instance_used,
    };
    exhausted(&used)
        .unwrap_or_else(|| "What is left of the monthly token allowance is reserved by model calls in flight; retry when they end.".to_owned())
}

/// An allowance at or past 80 % (and not yet used up).
struct Near {
    subject: Uuid,
    kind: UsageSubject,
    used: i64,
    limit: i64,
}

impl Near {
    fn message(&self) -> String {
        match self.kind {
            UsageSubject::Instance => format!("This instance has used {} of its {} monthly tokens.", self.used, self.limit),
            UsageSubject::Account => format!("The account has used {} of its {} monthly tokens.", self.used, self.limit),
        }
    }
}

fn near(budget: &Budget, owner: &TokenOwner) -> Vec<Near> {
    let mut warnings = Vec::new();
    if let Some(limit) = budget.instance_limit
        && budget.instance_used as f64 >= limit as f64 * WARN_AT
    {
        warnings.push(Near { subject: owner.instance_id, kind: UsageSubject::Instance, used: budget.instance_used, limit });
    }
    if let Some(allowance) = budget.account_allowance
        && budget.account_used as f64 >= allowance as f64 * WARN_AT
    {
        warnings.push(Near { subject: owner.user_id, kind: UsageSubject::Account, used: budget.account_used, limit: allowance });
    }
    warnings
}

/// After a call: warns once a month per allowance past 80 %, on the instance's latest chat
/// session (a `system` message, which the event feed carries) and as a `usage.threshold`
/// webhook event.
pub async fn warn_if_near(db: &PgPool, owner: &TokenOwner) -> sqlx::Result<()> {
    let budget = repo::budget(db, owner.user_id, owner.instance_id).await?;
    for warning in near(&budget, owner) {
        if !repo::first_warning_this_month(db, warning.subject).await? {
            continue;
        }
        let data = UsageThresholdData {
            subject: warning.kind,
            instance_id: owner.instance_id,
            used_tokens: warning.used,
            limit_tokens: warning.limit,
            percent: (WARN_AT * 100.0) as u8,
        };
        let data = serde_json::to_value(&data).unwrap_or_default();
        crate::webhooks::repo::emit(db, owner.user_id, EventType::UsageThreshold, &data).await?;
        let Some(session) = crate::chat::repo::latest_session(db, owner.instance_id).await? else { continue };
        let text = format!("Warning: {} Past the limit the model stops answering until {} (UTC).", warning.message(), next_month());
        crate::chat::repo::insert_message(db, Uuid::now_v7(), session.id, Role::System, &text, MessageStatus::Complete).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(account: (Option<i64>, i64), instance: (Option<i64>, i64)) -> Budget {
        Budget { account_allowance: account.0, account_used: account.1, instance_limit: instance.0, instance_used: instance.1 }
    }

    #[test]
    fn calls_are_refused_at_either_limit_naming_it() {
        assert_eq!(exhausted(&budget((None, 10_000), (None, 10_000))), None, "no limits");
        assert_eq!(exhausted(&budget((Some(100), 99), (Some(50), 49))), None);
        assert!(exhausted(&budget((Some(100), 100), (None, 0))).unwrap().contains("account's monthly token allowance (100 tokens)"));
        assert!(exhausted(&budget((Some(1000), 10), (Some(50), 50))).unwrap().contains("instance's monthly token limit (50 tokens"));
    }

    #[test]
    fn warnings_start_at_eighty_percent() {
        let owner = TokenOwner { instance_id: Uuid::new_v4(), user_id: Uuid::new_v4(), sandbox_id: "s".into(), node_id: None };
        assert!(near(&budget((Some(100), 79), (Some(10), 7)), &owner).is_empty());
        let both = near(&budget((Some(100), 80), (Some(10), 9)), &owner);
        assert_eq!(both.iter().map(|n| n.subject).collect::<Vec<_>>(), [owner.instance_id, owner.user_id]);
    }
}

/// The instance's cap and the account's allowance, with what was used this month.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"monthly_token_limit": 200000, "used_this_month": 51234, "account_allowance": 1000000, "account_used_this_month": 90211, "resets_on": "2026-12-01"}))]
pub struct LimitsView {
    /// The owner's cap for this instance (`null`: none).
    pub monthly_token_limit: Option<i64>,
    pub used_this_month: i64,
    /// The plan's monthly tokens for the whole account (`null`: unlimited).
    pub account_allowance: Option<i64>,
    pub account_used_this_month: i64,
    /// First day of the next month (UTC), when usage starts from zero.
    pub resets_on: String,
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsUpdate {
    /// Tokens (prompt + completion) a month for this instance; `null` removes the cap.
    pub monthly_token_limit: Option<i64>,
}

fn view(budget: Budget) -> LimitsView {
    LimitsView {
        monthly_token_limit: budget.instance_limit,
        used_this_month: budget.instance_used,
        account_allowance: budget.account_allowance,
        account_used_this_month: budget.account_used,
        resets_on: next_month(),
    }
}

/// Instance spend limits
///
/// The instance's monthly token cap (set by its owner) and the account's monthly allowance (set
/// by the plan), with what was used this month. Past either, the model broker answers 429 and
/// the agent's turn ends with a message naming the limit; at 80 % a `system` message says so on
/// the chat feed (once a month).
#[utoipa::path(get, path = "/api/instances/{instanceId}/limits", tag = "instances",
    params(crate::instances::extract::OwnedInstance),
    responses(
        (status = 200, description = "Limits and use", body = LimitsView),
        (status = 404, description = "`instance_not_found`", body = crate::error::ErrorBody),
    ))]
pub async fn get_limits(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    crate::instances::extract::OwnedInstance { user, instance }: crate::instances::extract::OwnedInstance,
) -> crate::error::AppResult<axum::Json<LimitsView>> {
    Ok(axum::Json(view(repo::budget(&state.db, user.user_id, instance.id).await?)))
}

/// Set the instance's token cap
///
/// `{"monthly_token_limit": N}` caps the instance's model use at N tokens a month; `null`
/// removes the cap. The account's allowance applies either way.
#[utoipa::path(put, path = "/api/instances/{instanceId}/limits", tag = "instances",
    params(crate::instances::extract::OwnedInstance),
    request_body = LimitsUpdate,
    responses(
        (status = 200, description = "Limits and use now", body = LimitsView),
        (status = 400, description = "`invalid_request`: a negative limit", body = crate::error::ErrorBody),
        (status = 404, description = "`instance_not_found`", body = crate::error::ErrorBody),
    ))]
pub async fn put_limits(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    crate::instances::extract::OwnedInstance { user, instance }: crate::instances::extract::OwnedInstance,
    crate::extract::ApiJson(update): crate::extract::ApiJson<LimitsUpdate>,
) -> crate::error::AppResult<axum::Json<LimitsView>> {
    if update.monthly_token_limit.is_some_and(|n| n < 0) {
        return Err(crate::error::AppError::new(crate::error::ErrorCode::InvalidRequest, "`monthly_token_limit` must be 0 or more, or null."));
    }
    repo::set_instance_limit(&state.db, instance.id, update.monthly_token_limit).await?;
    Ok(axum::Json(view(repo::budget(&state.db, user.user_id, instance.id).await?)))
}
