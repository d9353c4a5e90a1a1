//! Who a broker call comes from (`BrokerCaller`): the instance whose broker token it carries,
//! checked against where it came from — the sandbox's own address on this host's sandbox
//! network, or, for a call a node relayed (`relay::Relayed`), that node and the sandbox it
//! named. A token copied into another sandbox, or onto another host, is refused.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::Response;

use super::BrokerState;
use super::proxy::openai_error;
use super::repo::{self, TokenOwner};
use crate::auth::extractor::bearer_token;

/// The instance a broker call comes from.
pub struct BrokerCaller(pub TokenOwner);

impl FromRequestParts<BrokerState> for BrokerCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &BrokerState) -> Result<Self, Response> {
        let refuse = |message: &str| openai_error(StatusCode::UNAUTHORIZED, "invalid_request_error", message);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| refuse("Missing bearer token: use the instance's broker token."))?;
        let hash = crate::auth::secrets::sha256(token);
        let (owner, own) = match state.callers.get(&hash) {
            Some(known) => known,
            None => {
                let owner = repo::owner_of(&state.app.db, &hash)
                    .await
                    .map_err(|_| openai_error(StatusCode::SERVICE_UNAVAILABLE, "server_error", "The broker cannot check tokens right now."))?
                    .ok_or_else(|| refuse("Unknown broker token."))?;
                (owner, None)
            }
        };
        let other = || refuse("This broker token belongs to another sandbox.");
        match parts.extensions.get::<super::relay::Relayed>() {
            // Relayed by a node: the node named the calling sandbox by its address there.
            Some(relayed) => {
                if owner.node_id != Some(relayed.node) || owner.sandbox_id != relayed.sandbox {
                    return Err(other());
                }
                state.callers.put(hash, (owner.clone(), own));
            }
            // On this host's sandbox network: the token is only good from its own sandbox's address.
            None => {
                // A sandbox on a node calls through its node's relay, never here: sandbox
                // addresses repeat from host to host.
                if owner.node_id.is_some() {
                    return Err(other());
                }
                let own = match own {
                    Some(own) => own,
                    None => state
                        .app
                        .runtime
                        .inspect(&owner.sandbox_id)
                        .await
                        .ok()
                        .and_then(|info| info.ip)
                        .ok_or_else(|| refuse("This broker token's sandbox is not running."))?,
                };
                state.callers.put(hash, (owner.clone(), Some(own)));
                let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
                if peer != Some(own) {
                    return Err(other());
                }
            }
        }
        // The agent's own work keeps its instance awake.
        state.app.activity.touch(owner.instance_id);
        Ok(BrokerCaller(owner))
    }
}
