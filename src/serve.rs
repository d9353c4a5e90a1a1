//! Running the server: background tasks, serving the router until a shutdown signal, and
//! draining connections.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::state::AppState;

/// Starts the background work: the reconciler (which also resumes unfinished operations
/// and closes abandoned chat turns), the chat event listener and the rate limiters' cleanup.
pub fn start_background_tasks(state: &AppState) {
    let limits = (state.auth_limits.clone(), state.shutdown.clone());
    tokio::spawn(async move {
        let (auth_limits, shutdown) = limits;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(60)) => auth_limits.forget_quiet_keys(),
            }
        }
    });
    crate::instances::reconciler::spawn(state.clone(), state.settings.instances.reconcile_interval);
    crate::chat::events::spawn_listener(state);
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
