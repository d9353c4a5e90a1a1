//! Running the server: background tasks, the accept loop with its limits (connections at
//! once, header-read and idle timeout, requests in flight), serving the router until a
//! shutdown signal, and draining connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

use crate::state::AppState;

/// How long connections get to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(20);

/// Starts the background work: the reconciler (which also resumes unfinished operations
/// and closes abandoned chat turns), the chat event listener and the rate limiters' cleanup.
pub fn start_background_tasks(state: &AppState) {
    let (auth_limits, shutdown) = (state.auth_limits.clone(), state.shutdown.clone());
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(60)) => auth_limits.forget_quiet_keys(),
            }
        }
    });
    crate::instances::reconciler::spawn(state.clone(), state.settings.instances.reconcile_interval);
    crate::instances::idle::spawn(state.clone());
    crate::instances::pool::spawn(state.clone());
    crate::snapshots::schedule::spawn(state.clone());
    let mut listeners = crate::db::notify::Listeners::default();
    crate::chat::events::listen(state, &mut listeners);
    crate::gateway::feed::listen(state, &mut listeners);
    crate::auth::cache::spawn(state, &mut listeners);
    crate::instances::lists::listen(state, &mut listeners);
    let drivers = state.drivers.clone();
    listeners.on(crate::db::leases::CANCEL_CHANNEL, |_| {}, move |payload| drivers.on_cancel_request(payload));
    let turns = state.turns.clone();
    listeners.on(crate::state::ABORT_CHANNEL, |_| {}, move |payload| turns.on_request(payload));
    crate::chat::import::spawn(state);
    crate::gateway::spawn(state);
    if let Err(error) = crate::webhooks::spawn(state, &mut listeners) {
        tracing::error!(error = format!("{error:#}"), "the webhook deliverer could not start");
    }
    listeners.spawn(state.db.clone(), state.shutdown.clone());
    spawn_broker(state);
}

/// Process-wide settings a server needs before it takes requests.
fn tune_process(state: &AppState) {
    crate::auth::password::set_concurrency(state.settings.hash_concurrency);
    // glibc raises its mmap threshold after freeing a large block, after which big buffers
    // (argon2's 19 MiB, tar and body buffers) come from per-thread arenas that never shrink:
    // a burst of sign-ins would leave hundreds of MiB behind. A fixed threshold keeps blocks of
    // 128 KiB and more in their own mappings, returned to the system when freed.
    // SAFETY: mallopt only sets an allocator parameter; it is called before serving.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
    }
}

/// Serves until `shutdown` resolves, then cancels background work and drains connections.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    tune_process(&state);
    let settings = state.settings.clone();
    let token = state.shutdown.clone();
    let inflight = crate::inflight::InFlight::new(settings.clone());
    // One router for every connection: cloning it per connection is cheap (shared routes).
    let app = crate::router::router(state).layer(axum::middleware::from_fn_with_state(inflight, crate::inflight::limit));
    let stop = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    accept_loop(listener, app, &settings.limits, None, token).await;
    // Give background tasks a moment to observe the cancellation.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

/// Connections one sandbox may hold open to the broker (the rest are for the others).
const BROKER_CONNECTIONS_PER_SANDBOX: usize = 64;

/// A node's model broker relay (`runtime::node::server::relay`) on its sandbox network, with
/// the broker's own connection limits.
pub async fn serve_sandboxes(listener: TcpListener, app: axum::Router, token: tokio_util::sync::CancellationToken) {
    let limits = crate::config::ServerLimits {
        max_connections: 4096,
        max_inflight: 1024,
        addr_max_inflight: BROKER_CONNECTIONS_PER_SANDBOX,
        body_timeout: Duration::from_secs(60),
        header_timeout: Duration::from_secs(10),
    };
    accept_loop(listener, app, &limits, Some(BROKER_CONNECTIONS_PER_SANDBOX), token).await;
}

/// Serves `app` on `listener` until `token` is cancelled, then drains: at most
/// `max_connections` at once (and `per_peer` from one address), slow headers and idle keep-alive connections closed after the
/// header timeout, each request carrying its peer's address.
async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    limits: &crate::config::ServerLimits,
    per_peer: Option<usize>,
    token: tokio_util::sync::CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let peers = crate::state::Counts::default();
    let mut builder = Builder::new(TokioExecutor::new());
    // The header-read timer runs whenever a connection waits for a request head: it closes
    // slow-header clients and idle keep-alive connections alike.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(Duration::from_secs(20)).keep_alive_timeout(Duration::from_secs(20));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(%error, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // Over the connection cap: closed at once rather than kept waiting.
            drop(stream);
            continue;
        };
        let peer_held = match per_peer {
            Some(max) => match peers.try_take(peer.ip(), max) {
                Some(held) => Some(held),
                None => continue, // this address has its share open already: closed at once
            },
            None => None,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        // The router as a hyper service, with the peer's address for the audit log.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let watched = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = watched.await;
            drop((permit, peer_held));
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("connections still open after {} s; closing", DRAIN.as_secs()),
    }
}

/// The model broker's listener on the sandbox network, retried until the engine lets it bind.
fn spawn_broker(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let router = match crate::broker::router(state.clone()) {
            Ok(router) => router,
            Err(error) => return tracing::error!(error = format!("{error:#}"), "model broker: cannot build its client"),
        };
        loop {
            match crate::broker::bind(&state).await {
                Ok(listener) => {
                    return accept_loop(listener, router, &state.settings.limits, Some(BROKER_CONNECTIONS_PER_SANDBOX), state.shutdown.clone()).await;
                }
                Err(error) => tracing::warn!(error = format!("{error:#}"), "model broker: not listening yet"),
            }
            tokio::select! {
                () = state.shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(10)) => {}
            }
        }
    });
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; draining connections");
}
