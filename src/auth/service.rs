//! Account logic shared by the HTTP API and the admin CLI: creating users (with invite
//! redemption), logging in, sessions, API keys, subscriptions and invites.

use chrono::{DateTime, Duration, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::models::{AccountView, ApiKeyView, CreatedApiKey};
use super::repo::{self, UserRow};
use super::scopes::Grant;
use super::{password, secrets};
use crate::config::RegistrationMode;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::state::{CachedJson, UserViews};

const MAX_EMAIL_LEN: usize = 254;
const MAX_KEY_NAME_CHARS: usize = 100;
/// Ten years: long enough for anything a person sets, small enough to stay a valid timestamp.
const MAX_DAYS: u32 = 3650;

/// Trims and checks an email address: one `@`, something on both sides, a dot in the domain.
pub fn normalize_email(raw: &str) -> AppResult<String> {
    let email = raw.trim();
    let valid = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.contains('@') && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        });
    if !valid {
        return Err(AppError::new(ErrorCode::InvalidEmail, format!("`{}` is not a valid email address.", truncate(email, 80))));
    }
    Ok(email.to_owned())
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

pub fn checked_days(days: u32, what: &str) -> AppResult<Duration> {
    if days == 0 || days > MAX_DAYS {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("`{what}` must be between 1 and {MAX_DAYS} days.")));
    }
    Ok(Duration::days(days.into()))
}

fn email_taken() -> AppError {
    AppError::new(ErrorCode::EmailTaken, "An account with this email already exists.")
}

fn invalid_invite() -> AppError {
    AppError::new(ErrorCode::InvalidInviteCode, "The invite code is unknown, used up or expired.")
}

/// Creates a user; with an invite code, redeems it and grants its subscription in the same
/// transaction, so a failed redemption leaves no user behind.
pub async fn create_user(db: &PgPool, email: &str, password: &str, invite_code: Option<&str>) -> AppResult<UserRow> {
    let email = normalize_email(email)?;
    password::check_policy(password)?;
    // Cheap refusals first: a made-up invite code or a taken email costs no hash.
    if let Some(code) = invite_code
        && !repo::invite_is_redeemable(db, &secrets::sha256(&secrets::normalize_invite_code(code))).await?
    {
        return Err(invalid_invite());
    }
    if repo::user_by_email(db, &email).await?.is_some() {
        return Err(email_taken());
    }
    let hash = password::hash(password.to_owned()).await?;
    let mut tx = db.begin().await?;
    let user = repo::insert_user(&mut *tx, &email, &hash).await?.ok_or_else(email_taken)?;
    if let Some(code) = invite_code {
        redeem_invite(&mut tx, user.id, code).await?;
    }
    tx.commit().await?;
    Ok(user)
}

/// Registration over the API, subject to the server's registration mode.
pub async fn register(db: &PgPool, mode: RegistrationMode, email: &str, password: &str, invite_code: Option<&str>) -> AppResult<UserRow> {
    let invite_code = invite_code.map(str::trim).filter(|c| !c.is_empty());
    match (mode, invite_code) {
        (RegistrationMode::Closed, _) => Err(AppError::new(ErrorCode::RegistrationClosed, "This server does not accept new registrations.")),
        (RegistrationMode::Invite, None) => {
            Err(AppError::new(ErrorCode::InviteRequired, "Registering on this server needs an invite code (`invite_code`)."))
        }
        _ => create_user(db, email, password, invite_code).await,
    }
}

/// Consumes one use of `code` and grants the subscription it carries to `user_id`.
pub async fn redeem_invite(conn: &mut PgConnection, user_id: Uuid, code: &str) -> AppResult<()> {
    let hash = secrets::sha256(&secrets::normalize_invite_code(code));
    let invite = repo::take_invite_use(&mut *conn, &hash).await?.ok_or_else(invalid_invite)?;
    let expires_at = invite.subscription_days.map(|days| Utc::now() + Duration::days(days.into()));
    repo::upsert_subscription(&mut *conn, user_id, invite.max_instances, expires_at).await?;
    repo::set_monthly_tokens(&mut *conn, user_id, invite.monthly_tokens).await?;
    Ok(())
}

pub async fn login(db: &PgPool, email: &str, password: &str) -> AppResult<UserRow> {
    let user = repo::user_by_email(db, email.trim()).await?;
    let stored = user.as_ref().map(|u| u.password_hash.clone());
    let verified = password::verify(password.to_owned(), stored).await?;
    match user {
        Some(user) if verified => Ok(user),
        _ => Err(AppError::unauthorized("The email or password is not correct.")),
    }
}

pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
}

pub async fn start_session(db: &PgPool, user_id: Uuid, hours: u32) -> AppResult<NewSession> {
    let token = secrets::new_session_token();
    let csrf_token = secrets::new_csrf_token();
    let expires_at = Utc::now() + Duration::hours(hours.into());
    repo::insert_session(db, &secrets::sha256(&token), user_id, &csrf_token, expires_at).await?;
    Ok(NewSession { token, csrf_token })
}

pub async fn create_api_key(db: &PgPool, user_id: Uuid, name: Option<&str>, expires_in_days: Option<u32>) -> AppResult<CreatedApiKey> {
    let expires_at = expires_in_days.map(|d| checked_days(d, "expires_in_days")).transpose()?.map(|d| Utc::now() + d);
    create_scoped_key(db, user_id, name, expires_at, &Grant::default()).await
}

/// A key that can do what `grant` allows (its instance is checked to be the user's), until
/// `expires_at`.
pub async fn create_scoped_key(
    db: &PgPool,
    user_id: Uuid,
    name: Option<&str>,
    expires_at: Option<DateTime<Utc>>,
    grant: &Grant,
) -> AppResult<CreatedApiKey> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("api key");
    if name.chars().count() > MAX_KEY_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(AppError::new(ErrorCode::InvalidRequest, format!("`name` must be at most {MAX_KEY_NAME_CHARS} printable characters.")));
    }
    if expires_at.is_some_and(|at| at <= Utc::now()) {
        return Err(AppError::new(ErrorCode::InvalidRequest, "`expires_at` must be in the future."));
    }
    if let Some(instance_id) = grant.instance_id
        && !repo::owns_instance(db, user_id, instance_id).await?
    {
        return Err(crate::extract::instance_not_found());
    }
    let scopes: Option<Vec<String>> = grant.scopes.as_ref().map(|s| s.iter().map(|s| s.as_str().to_owned()).collect());
    let key = secrets::new_api_key();
    let (hash, prefix) = (secrets::sha256(&key), secrets::display_prefix(&key));
    let new = repo::NewKey { user_id, name, key_hash: &hash, prefix: &prefix, expires_at, scopes: scopes.as_deref(), instance_id: grant.instance_id };
    let row = repo::insert_api_key(db, new).await?;
    Ok(CreatedApiKey { view: ApiKeyView::from(row), key })
}

pub async fn account_view(db: &PgPool, user_id: Uuid, csrf_token: Option<String>) -> AppResult<AccountView> {
    let account =
        repo::account(db, user_id).await?.ok_or_else(|| AppError::unauthorized("The account behind these credentials no longer exists."))?;
    let (expires_at, monthly_tokens) = (account.expires_at, account.monthly_tokens);
    let subscription = account.max_instances.map(|max_instances| repo::SubscriptionRow { max_instances, expires_at, monthly_tokens }.into());
    Ok(AccountView { id: account.id, email: account.email, created_at: account.created_at, subscription, csrf_token })
}

/// The account as the API answers a caller without a CSRF token (API keys), from `views` when
/// it may be trusted; kept no longer than the plan stays as shown (`active` turns false when it
/// expires).
pub async fn account_json(db: &PgPool, views: &UserViews, user_id: Uuid) -> AppResult<CachedJson> {
    views
        .answer(user_id, async {
            let view = account_view(db, user_id, None).await?;
            let expires_in = view.subscription.as_ref().and_then(|s| s.expires_at).and_then(|at| (at - Utc::now()).to_std().ok());
            Ok((view, expires_in.map(|left| std::time::Instant::now() + left)))
        })
        .await
}

pub async fn user_by_email_or_404(db: &PgPool, email: &str) -> AppResult<UserRow> {
    repo::user_by_email(db, email.trim())
        .await?
        .ok_or_else(|| AppError::new(ErrorCode::UserNotFound, format!("No user has the email `{}`.", truncate(email.trim(), 80))))
}

pub async fn grant_subscription(db: &PgPool, email: &str, max_instances: u32, days: Option<u32>) -> AppResult<UserRow> {
    let user = user_by_email_or_404(db, email).await?;
    let max_instances = i32::try_from(max_instances).map_err(|_| AppError::new(ErrorCode::InvalidRequest, "`max_instances` is too large."))?;
    let expires_at = days.map(|d| checked_days(d, "days")).transpose()?.map(|d| Utc::now() + d);
    repo::upsert_subscription(db, user.id, max_instances, expires_at).await?;
    crate::state::user_data_written();
    Ok(user)
}

pub struct InviteSpec {
    pub uses: u32,
    pub max_instances: u32,
    /// How long the code itself can be redeemed.
    pub valid_days: Option<u32>,
    /// How long the subscription it grants lasts.
    pub subscription_days: Option<u32>,
    /// Model tokens a month the subscription allows (`None`: unlimited).
    pub monthly_tokens: Option<u64>,
}

/// Creates an invite code and returns it; only its hash is stored.
pub async fn create_invite(db: &PgPool, spec: &InviteSpec) -> AppResult<String> {
    let too_large = |field: &str| AppError::new(ErrorCode::InvalidRequest, format!("`{field}` is too large."));
    if spec.uses == 0 {
        return Err(AppError::new(ErrorCode::InvalidRequest, "An invite needs at least one use."));
    }
    let uses = i32::try_from(spec.uses).map_err(|_| too_large("uses"))?;
    let max_instances = i32::try_from(spec.max_instances).map_err(|_| too_large("max_instances"))?;
    let expires_at = spec.valid_days.map(|d| checked_days(d, "days")).transpose()?.map(|d| Utc::now() + d);
    let subscription_days = spec.subscription_days.map(|d| checked_days(d, "subscription_days").map(|_| d as i32)).transpose()?;
    let code = secrets::new_invite_code();
    let monthly_tokens = spec.monthly_tokens.map(|n| i64::try_from(n).map_err(|_| too_large("monthly_tokens"))).transpose()?;
    repo::insert_invite(db, &secrets::sha256(&code), uses, max_instances, subscription_days, expires_at, monthly_tokens).await?;
    Ok(code)
}
