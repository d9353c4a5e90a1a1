//! The model broker: provider keys stay on the server. Each sandbox's gateway is configured
//! with the broker's URL (on the sandbox network's gateway address, a listener of its own that
//! the public listener never serves) and the instance's own broker token; the broker forwards to
//! the operator's provider and meters every call (`proxy`, `meter`). Users see their usage at
//! `GET /api/instances/{id}/usage` and `GET /api/account/usage` (`usage`).

pub mod bounds;
pub mod caller;
pub mod limits;
pub mod meter;
pub mod model;
pub mod proxy;
pub mod relay;
pub mod repo;
pub mod usage;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use uuid::Uuid;

use crate::auth::secrets;
use crate::runtime::outbound;
use crate::state::{AppState, TtlCache};

/// The user-facing routes of the public API: usage and the instance's model.
pub fn api_router() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    usage::router().routes(routes!(model::get_model, model::put_model)).routes(routes!(limits::get_limits, limits::put_limits))
}

const CALLER_TTL: Duration = Duration::from_secs(30);
/// Callers remembered at most (a flood of made-up tokens is not remembered at all).
const CALLER_CACHE_MAX: usize = 10_000;

/// A token's owner, with its sandbox's address on this host once it called here directly.
pub type Caller = (repo::TokenOwner, Option<std::net::IpAddr>);

/// What the broker's handlers use: the app's state, a client for the provider, and the
/// tokens recently seen.
#[derive(Clone)]
pub struct BrokerState {
    pub app: AppState,
    /// For the operator's provider and, when the operator allows private addresses, users' own.
    pub http: reqwest::Client,
    /// For users' own providers: public addresses only, resolved once per connection.
    pub public_http: reqwest::Client,
    /// Token hash → (owner, its sandbox's address on this host if it called here directly), for `CALLER_TTL`: a model call then costs
    /// no database or engine round trip to authenticate. Safe to keep that long because a
    /// token only changes with a new container (the old one, and its address, are gone with it).
    /// What sandboxes may make the broker hold at once (`bounds`).
    pub bounds: std::sync::Arc<bounds::Bounds>,
    pub callers: std::sync::Arc<TtlCache<Vec<u8>, Caller>>,
}

/// The routes of the broker's own listener; everything else is an OpenAI-style 404.
pub fn router(app: AppState) -> anyhow::Result<Router> {
    // No overall timeout (answers stream for minutes); a provider silent for 2 minutes is gone.
    // Neither follows redirects (`runtime::outbound`).
    let (connect, read) = (Duration::from_secs(10), Some(Duration::from_secs(120)));
    let http = outbound::client(connect, read, None)?;
    let public_http = outbound::client(connect, read, Some(outbound::PublicOnly::default()))?;
    Ok(Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/models", get(proxy::models))
        .fallback(|| async {
            let body = serde_json::json!({"error": {"message": "Not found: the broker serves /v1/chat/completions and /v1/models.", "type": "invalid_request_error"}});
            (axum::http::StatusCode::NOT_FOUND, axum::Json(body))
        })
        .with_state(BrokerState { app, http, public_http, bounds: Default::default(), callers: std::sync::Arc::new(TtlCache::new(CALLER_TTL, CALLER_CACHE_MAX)) }))
}

/// Binds the broker on the sandbox network's gateway address, on the first free port of
/// `OCAAS_BROKER_PORT`, and publishes the address for new sandboxes.
pub async fn bind(state: &AppState) -> anyhow::Result<TcpListener> {
    state.runtime.ensure_network(&state.settings.instances.egress).await?;
    let gateway = state.runtime.sandbox_gateway().await?;
    let (first, last) = state.settings.instances.broker_ports;
    for port in first..=last {
        if let Ok(listener) = TcpListener::bind(SocketAddr::new(gateway, port)).await {
            let address = listener.local_addr()?;
            state.broker_address.send_replace(Some(address));
            tracing::info!(%address, "model broker listening for sandboxes");
            return Ok(listener);
        }
    }
    anyhow::bail!("no free port for the model broker in {first}-{last} on {gateway}")
}

/// The broker's URL for a sandbox's provider entry, waiting a while for it to be bound.
pub async fn url(state: &AppState) -> Option<String> {
    let mut address = state.broker_address.subscribe();
    let bound = tokio::time::timeout(Duration::from_secs(30), address.wait_for(Option::is_some)).await.ok()?.ok()?;
    bound.map(|a| format!("http://{a}/v1"))
}

/// A new broker token for the instance; its hash replaces the old one (the old token, in a
/// container about to be replaced, stops working).
pub async fn rotate_token(db: &sqlx::PgPool, instance_id: Uuid) -> sqlx::Result<String> {
    let token = format!("ocb_{}", secrets::random_token(32));
    repo::set_token_hash(db, instance_id, &secrets::sha256(&token)).await?;
    Ok(token)
}
