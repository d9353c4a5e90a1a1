//! Broker calls relayed by nodes (`runtime::node::server::relay`): a sandbox on a node calls
//! its node, which passes the call on here, to `/internal/broker/v1/…` of the public listener,
//! naming itself, its relay key and the calling sandbox. Only a call whose relay key is that
//! node's gets through to the broker's own handlers, marked `Relayed`; `caller::BrokerCaller`
//! then accepts the broker token only if it is that sandbox's, placed on that node.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::runtime::node::{NODE_HEADER, RELAY_KEY_HEADER, SANDBOX_HEADER};
use crate::secrets::SecretKey;
use crate::state::{AppState, TtlCache};

/// How long a checked relay key is believed without opening the node's credential again.
const KEY_TTL: Duration = Duration::from_secs(60);

/// A call that a node relayed: which node, and which of its sandboxes made it.
#[derive(Clone, Debug)]
pub struct Relayed {
    pub node: Uuid,
    pub sandbox: String,
}

#[derive(Clone)]
struct Check {
    db: sqlx::PgPool,
    key: SecretKey,
    /// (node, SHA-256 of the key presented) pairs that checked out lately.
    known: Arc<TtlCache<(Uuid, [u8; 32]), ()>>,
}

/// The broker's routes under `/internal/broker`, for nodes only.
pub fn router(app: AppState) -> anyhow::Result<Router> {
    let check = Check { db: app.db.clone(), key: app.settings.secret_key.clone(), known: Arc::new(TtlCache::new(KEY_TTL, 1024)) };
    Ok(Router::new()
        .nest("/internal/broker", super::router(app)?)
        .layer(middleware::from_fn_with_state(check, relayed))
        // The broker bounds its own bodies (`proxy::MAX_REQUEST`).
        .layer(axum::extract::DefaultBodyLimit::disable()))
}

/// `proxy::openai_error` with the kind its status implies.
fn refuse(status: StatusCode, message: &str) -> Response {
    let kind = if status.is_server_error() { "server_error" } else { "invalid_request_error" };
    super::proxy::openai_error(status, kind, message)
}

async fn relayed(State(check): State<Check>, mut request: Request, next: Next) -> Response {
    let claims = {
        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        (header(NODE_HEADER).and_then(|n| n.parse::<Uuid>().ok()), header(RELAY_KEY_HEADER), header(SANDBOX_HEADER))
    };
    let (Some(node), Some(key), Some(sandbox)) = claims else {
        return refuse(StatusCode::UNAUTHORIZED, "Only a node relays broker calls here.");
    };
    let presented: [u8; 32] = Sha256::digest(key.as_bytes()).into();
    if check.known.get(&(node, presented)).is_none() {
        match crate::nodes::service::relay_key_is(&check.db, &check.key, node, &key).await {
            Ok(true) => check.known.put((node, presented), ()),
            Ok(false) => return refuse(StatusCode::UNAUTHORIZED, "Not a node's relay key."),
            Err(_) => return refuse(StatusCode::SERVICE_UNAVAILABLE, "The broker cannot check nodes right now."),
        }
    }
    request.extensions_mut().insert(Relayed { node, sandbox });
    next.run(request).await
}
