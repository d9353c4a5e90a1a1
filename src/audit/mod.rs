//! The audit log: security-relevant events (logins, keys, instance lifecycle, admin actions)
//! with actor, client address, time and target, kept in PostgreSQL. Users read their own at
//! `GET /api/account/audit`; operators read everyone's with `ocaas admin audit`.

pub mod handlers;
pub mod models;
pub mod repo;

use sqlx::PgPool;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub use models::AuditAction;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(handlers::list))
}

/// One event to record.
pub struct Event<'a> {
    pub action: AuditAction,
    /// The acting user, when known.
    pub actor: Option<Uuid>,
    /// The email the actor gave (failed logins) or has; with no `actor`, the user with this
    /// email (if any) is recorded as the actor, so people see failed logins on their account.
    pub email: Option<&'a str>,
    /// The client's address (`None` for the admin CLI).
    pub client: Option<&'a str>,
    /// What was acted on: an instance or key id, an email.
    pub target: Option<String>,
    /// The API key the actor used, if one.
    pub key: Option<Uuid>,
}

/// Who did something: a user, and the API key they used (none for a browser session or the
/// server acting for them).
pub struct Actor {
    pub user: Uuid,
    pub key: Option<Uuid>,
}

impl From<&crate::auth::AuthUser> for Actor {
    fn from(user: &crate::auth::AuthUser) -> Self {
        let key = match &user.credential {
            crate::auth::extractor::Credential::ApiKey { key_id, .. } => Some(*key_id),
            _ => None,
        };
        Actor { user: user.user_id, key }
    }
}

impl From<Uuid> for Actor {
    fn from(user: Uuid) -> Self {
        Actor { user, key: None }
    }
}

/// Records `event`. A failure to record fails the caller: an action that cannot be audited
/// is not done silently.
pub async fn record(db: &PgPool, event: Event<'_>) -> sqlx::Result<()> {
    repo::insert(db, &event).await
}

/// Records what a signed-in user (with which key) did, from `client`, on `target`.
pub async fn record_action(
    db: &PgPool,
    action: AuditAction,
    actor: impl Into<Actor>,
    client: Option<&str>,
    target: Option<String>,
) -> sqlx::Result<()> {
    let actor = actor.into();
    record(db, Event { action, actor: Some(actor.user), email: None, client, target, key: actor.key }).await
}
