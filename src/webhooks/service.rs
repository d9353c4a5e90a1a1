//! What a webhook change checks: the URL (public addresses only unless the operator allows
//! private ones, like a bring-your-own-key model URL), the events, the description; and the
//! secrets (`whsec_` + 32 random bytes in base64, sealed at rest).

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;

use super::models::{EventType, WebhookView};
use super::repo::EndpointRow;
use crate::auth::scopes::Grant;
use crate::error::{AppError, AppResult, ErrorCode};

const MAX_URL: usize = 2048;
const MAX_DESCRIPTION: usize = 500;
/// Endpoints an account may have.
pub const MAX_ENDPOINTS: i64 = 20;

/// Adds the endpoint unless the account has `MAX_ENDPOINTS` already (counted under the user's
/// lock, so creates sent at once through any replicas cannot pass the limit together).
pub async fn insert_within_limit(db: &sqlx::PgPool, new: &super::repo::NewEndpoint<'_>) -> AppResult<EndpointRow> {
    let mut tx = db.begin().await?;
    crate::db::lock_user(&mut tx, new.user_id).await?;
    if super::repo::count_for_user(&mut *tx, new.user_id).await? >= MAX_ENDPOINTS {
        let message = format!("An account may have {MAX_ENDPOINTS} webhook endpoints; delete one first.");
        return Err(AppError::new(ErrorCode::WebhookLimitReached, message));
    }
    let row = super::repo::insert(&mut *tx, new).await?;
    tx.commit().await?;
    Ok(row)
}
/// Deliveries pending past which an endpoint takes no test send.
pub const MAX_PENDING_FOR_TEST: i64 = 100;
/// How long the previous secret still signs after a rotation.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

fn invalid(message: impl Into<String>) -> AppError {
    AppError::new(ErrorCode::InvalidRequest, message)
}

/// The URL as stored, if its form is right and its host may be called.
pub async fn check_url(raw: &str, allow_private: bool) -> AppResult<String> {
    crate::runtime::outbound::check_url(raw, MAX_URL, allow_private)
        .await
        .map(|url| url.to_string())
        .map_err(|why| invalid(format!("`url`: {why}; webhooks go only to receivers on the public internet.")))
}

/// The events as stored: every event when left out; never none, never the test event.
pub fn check_events(events: Option<Vec<EventType>>) -> AppResult<Vec<EventType>> {
    let mut events = events.unwrap_or_else(|| EventType::ALL.iter().copied().filter(|e| *e != EventType::WebhookTest).collect());
    events.sort_by_key(|e| e.as_str());
    events.dedup();
    if events.is_empty() || events.contains(&EventType::WebhookTest) {
        return Err(invalid("`events` must name at least one event; `webhook.test` is sent by the test route only."));
    }
    Ok(events)
}

/// A key may subscribe only to events it could read through the API: the scope of each, and on
/// every instance (events come from all of the account's instances).
pub fn check_grant(grant: Option<&Grant>, events: &[EventType]) -> AppResult<()> {
    let Some(grant) = grant else { return Ok(()) };
    if let Some(bound) = grant.instance_id {
        return Err(AppError::new(
            ErrorCode::InsufficientScope,
            format!("This key works only on instance {bound}; webhooks carry every instance's events."),
        ));
    }
    let Some(scopes) = &grant.scopes else { return Ok(()) };
    match events.iter().map(|e| e.scope()).find(|needed| !scopes.contains(needed)) {
        Some(needed) => Err(AppError::new(ErrorCode::InsufficientScope, format!("This key lacks the scope `{needed}` that these events need."))),
        None => Ok(()),
    }
}

pub fn check_description(raw: Option<&str>) -> AppResult<Option<&str>> {
    Ok(raw.map(|d| crate::extract::printable_label(d, "description", MAX_DESCRIPTION)).transpose()?.flatten())
}

pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

pub fn view(row: EndpointRow, now: DateTime<Utc>) -> WebhookView {
    WebhookView {
        id: row.id,
        url: row.url,
        events: row.events,
        description: row.description,
        disabled: row.disabled,
        created_at: row.created_at,
        previous_secret_until: row.previous_until.filter(|until| *until > now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_must_be_public_unless_allowed() {
        assert!(check_url("https://93.184.216.34/hook", false).await.is_ok());
        for refused in
            ["http://127.0.0.1:9/x", "http://10.0.0.1/", "http://[::1]/", "http://169.254.169.254/latest", "ftp://93.184.216.34/", "not a url"]
        {
            assert!(check_url(refused, false).await.is_err(), "{refused}");
        }
        assert!(check_url("http://127.0.0.1:9/x", true).await.is_ok());
    }

    #[test]
    fn events_default_to_all_but_the_test() {
        let all = check_events(None).unwrap();
        assert_eq!(all.len(), EventType::ALL.len() - 1);
        assert!(check_events(Some(vec![])).is_err());
        assert!(check_events(Some(vec![EventType::WebhookTest])).is_err());
        let twice = check_events(Some(vec![EventType::SnapshotReady, EventType::SnapshotReady])).unwrap();
        assert_eq!(twice, [EventType::SnapshotReady]);
    }

    #[test]
    fn secrets_are_standard_webhooks_secrets() {
        let secret = new_secret();
        assert!(secret.starts_with("whsec_"));
        assert!(standardwebhooks::Webhook::new(&secret).is_ok());
        assert_ne!(secret, new_secret());
    }
}
