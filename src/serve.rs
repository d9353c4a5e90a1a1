//! Running the server: background tasks, serving the router until a shutdown signal, and
//! draining connections.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::state::AppState;

/// Starts the background work: the reconciler (which also resumes unfinished operations
/// and closes abandoned chat turns) and the chat event listener.
pub fn start_background_tasks(state: &AppState) {
    crate::instances::reconciler::spawn(state.clone(), state.settings.instances.reconcile_interval);
    crate::chat::events::spawn_listener(state);
}

/// Serves until `shutdown` resolves, then cancels background work and drains connections.
pub async fn serve(listener: TcpListener, state: AppState, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let token = state.shutdown.clone();
    let app = crate::router::router(state);
    let drain_started = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    // The make-service shares the router between connections (and records each peer's
    // address for the audit log); serving the `Router` itself
    // would rebuild every route (and copy what handlers captured) for each connection.
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(drain_started.cancelled_owned())
        .await?;
    // Give background tasks a moment to observe the cancellation.
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
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
