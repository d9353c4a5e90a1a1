//! Outbound webhooks in the Standard Webhooks format: endpoints per account
//! (`/api/account/webhooks`), events queued by the database where they happen, and a
//! deliverer in every server process that claims, signs, sends and retries them.

pub mod deliver;
pub mod handlers;
pub mod models;
pub mod repo;
pub mod service;

use std::time::Duration;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// The channel the queue's trigger function notifies on.
pub const CHANNEL: &str = "ocaas_webhooks";

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::list, handlers::create))
        .routes(routes!(handlers::get, handlers::update, handlers::delete))
        .routes(routes!(handlers::rotate))
        .routes(routes!(handlers::deliveries))
        .routes(routes!(handlers::test))
}

/// Starts this process's deliverer, woken by `CHANNEL`.
pub fn spawn(state: &AppState, listeners: &mut crate::db::notify::Listeners) -> anyhow::Result<()> {
    let wake = state.webhook_wake.clone();
    listeners.on(CHANNEL, |_| {}, move |_| wake.notify_one());
    let allow_private = state.settings.webhook_allow_private;
    // Receivers are tenant-chosen: no redirect, and public addresses only unless allowed.
    let public_only = (!allow_private).then(crate::runtime::outbound::PublicOnly::default);
    let client = crate::runtime::outbound::client(Duration::from_secs(5), Some(deliver::ATTEMPT_TIMEOUT), public_only)?;
    let deliverer = deliver::Deliverer { db: state.db.clone(), secret_key: state.settings.secret_key.clone(), client, allow_private };
    deliver::spawn(deliverer, state.webhook_wake.clone(), state.shutdown.clone());
    Ok(())
}
