//! Requests in flight, and how long their bodies may take. In front of every route:
//! - `/healthz` and `/readyz` are answered whatever else is going on (probes must see a
//!   busy server as alive);
//! - all other requests share `OCAAS_MAX_INFLIGHT` (503 `server_busy` past it);
//! - requests without credentials, and sign-ins and registrations, also count against their
//!   client address (`OCAAS_ADDR_MAX_INFLIGHT`), and authenticated ones against their user
//!   (`OCAAS_USER_MAX_INFLIGHT`, taken by the `AuthUser` extractor into the `HeldSlot` this
//!   layer holds until the response head), both 429 `too_many_in_flight`: one client cannot
//!   take the whole server's permits;
//! - every body must keep arriving (`deadline`), uploads with a longer grace period.
//!
//! A request with a made-up credential is not counted per address, but it is refused by the
//! extractor before its body is read, so it holds nothing for long.

pub mod deadline;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::config::Settings;
use crate::error::{AppError, ErrorCode};
use crate::state::{Counts, Held, Slot};

/// Uploads may take this many times the grace period before their rate counts.
const UPLOAD_GRACE_FACTOR: u32 = 3;

/// The in-flight counters of one server.
pub struct InFlight {
    global: Semaphore,
    per_address: Counts<IpAddr>,
    settings: Arc<Settings>,
}

impl InFlight {
    pub fn new(settings: Arc<Settings>) -> Arc<Self> {
        Arc::new(InFlight { global: Semaphore::new(settings.limits.max_inflight), per_address: Counts::default(), settings })
    }
}

/// Where the authenticated user's request slot is kept while the request is handled.
#[derive(Clone, Default)]
pub struct HeldSlot(Arc<Mutex<Option<Slot>>>);

impl HeldSlot {
    /// Keeps `take()`'s slot for this request, unless it holds one already.
    pub fn hold_with(&self, take: impl FnOnce() -> crate::error::AppResult<Slot>) -> crate::error::AppResult<()> {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if held.is_none() {
            *held = Some(take()?);
        }
        Ok(())
    }
}

fn has_credentials(request: &Request) -> bool {
    let headers = request.headers();
    headers.contains_key(header::AUTHORIZATION)
        || headers.get_all(header::COOKIE).iter().any(|v| v.to_str().is_ok_and(|c| c.contains(crate::auth::extractor::SESSION_COOKIE)))
}

fn is_probe(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz")
}

/// Routes anyone may call with a body, and so the ones an address could flood.
fn is_sign_in(path: &str) -> bool {
    matches!(path, "/api/account/login" | "/api/account/register")
}

fn is_upload(path: &str) -> bool {
    path.ends_with("/files/upload")
}

pub async fn limit(State(inflight): State<Arc<InFlight>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    if is_probe(&path) {
        return next.run(request).await;
    }
    let Ok(_permit) = inflight.global.try_acquire() else {
        return AppError::new(ErrorCode::ServerBusy, "The server is handling as many requests as it takes; retry shortly.")
            .with_retry_after(1)
            .into_response();
    };
    let mut _address: Option<Held<IpAddr>> = None;
    if !has_credentials(&request) || is_sign_in(&path) {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        if let Some(client) = crate::extract::client_ip(&inflight.settings, request.headers(), peer) {
            let max = inflight.settings.limits.addr_max_inflight;
            let Some(held) = inflight.per_address.try_take(client, max) else {
                let message = format!("Your address has {max} requests being handled already; retry shortly.");
                return AppError::new(ErrorCode::TooManyInFlight, message).with_retry_after(1).into_response();
            };
            _address = Some(held);
        }
    }
    let grace = inflight.settings.limits.body_timeout * if is_upload(&path) { UPLOAD_GRACE_FACTOR } else { 1 };
    let held = HeldSlot::default();
    request.extensions_mut().insert(held.clone());
    let request = request.map(|body| axum::body::Body::new(deadline::DeadlineBody::new(body, grace)));
    let response = next.run(request).await;
    // Given back with the response head, whoever still holds a clone of the extensions.
    held.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    response
}
