//! Wire types of the account API.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::repo::{ApiKeyRow, SubscriptionRow};
use super::scopes::Scope;

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "password": "a long passphrase", "invite_code": "ABCD-EFGH-JKLM-NPQR"}))]
pub struct RegisterRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// At least 10 characters.
    #[schema(min_length = 10, max_length = 1024)]
    pub password: String,
    /// Required when the server's registration mode is `invite`; optional otherwise
    /// (when given it is redeemed and grants its subscription).
    #[serde(default)]
    pub invite_code: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"email": "ada@example.com", "password": "a long passphrase"}))]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    /// How many instances the plan allows at once.
    pub max_instances: i32,
    #[serde(with = "crate::timefmt::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// False once `expires_at` has passed.
    pub active: bool,
    /// Model tokens (prompt + completion) a month for all the account's instances; `null`: unlimited.
    pub monthly_tokens: Option<i64>,
}

impl From<SubscriptionRow> for SubscriptionView {
    fn from(row: SubscriptionRow) -> Self {
        let active = row.expires_at.is_none_or(|at| at > Utc::now());
        SubscriptionView { max_instances: row.max_instances, expires_at: row.expires_at, active, monthly_tokens: row.monthly_tokens }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3a", "email": "ada@example.com",
    "created_at": "2026-03-20T18:22:54.000Z",
    "subscription": {"max_instances": 1, "expires_at": null, "active": true, "monthly_tokens": 1000000}
}))]
pub struct AccountView {
    pub id: Uuid,
    pub email: String,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    pub subscription: Option<SubscriptionView>,
    /// Present when authenticated by the browser session cookie: send it back as
    /// `X-CSRF-Token` on every state-changing request made with that cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csrf_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"name": "ci bot", "scopes": ["chat", "files:read"], "instance_id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3a", "expires_in_days": 90}))]
pub struct CreateKeyRequest {
    /// A label to tell keys apart (default `api key`).
    #[serde(default)]
    #[schema(max_length = 100)]
    pub name: Option<String>,
    /// Days until the key stops working; never when absent (or use `expires_at`).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 3650)]
    pub expires_in_days: Option<u32>,
    /// When the key stops working (RFC 3339); not with `expires_in_days`.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
    /// What the key may do; everything its user can when absent. A key with scopes cannot make
    /// a key with more.
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
    /// The one instance the key works on; any of the user's when absent.
    #[serde(default)]
    pub instance_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3b", "name": "laptop", "prefix": "ocaas_q9XnT2",
    "created_at": "2026-03-20T18:22:54.000Z", "last_used_at": "2026-03-21T09:01:12.000Z", "expires_at": null
}))]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to recognise it; the rest is never stored.
    pub prefix: String,
    #[serde(with = "crate::timefmt")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "crate::timefmt::option")]
    pub last_used_at: Option<DateTime<Utc>>,
    #[serde(with = "crate::timefmt::option")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The key's scopes; `null`: everything its user can do.
    pub scopes: Option<Vec<Scope>>,
    /// The one instance it works on; `null`: any.
    pub instance_id: Option<Uuid>,
}

impl From<ApiKeyRow> for ApiKeyView {
    fn from(row: ApiKeyRow) -> Self {
        ApiKeyView {
            id: row.id,
            name: row.name,
            prefix: row.prefix,
            created_at: row.created_at,
            last_used_at: row.last_used_at,
            expires_at: row.expires_at,
            scopes: row.scopes.map(|s| s.iter().filter_map(|w| Scope::parse(w)).collect()),
            instance_id: row.instance_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "0193a0f4-3c2e-7b61-9d1e-6a0b5d1f2c3a", "name": "laptop", "prefix": "ocaas_Q2x9fA",
    "key": "ocaas_Q2x9fA…", "created_at": "2026-03-20T18:22:54.000Z", "last_used_at": null, "expires_at": null
}))]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub view: ApiKeyView,
    /// The secret itself. Shown only in this response; store it now.
    pub key: String,
}
