//! The node's listener: TLS, then HTTP/2 with keep-alive pings (a vanished replica's
//! streams end), many streams per connection and small windows per stream.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use tokio_util::sync::CancellationToken;

/// Streams one replica may hold open on one connection (links, terminals, desktops, logs).
pub const MAX_STREAMS: u32 = 10_000;
/// HTTP/2 flow-control windows: per stream, and for a whole connection.
pub const STREAM_WINDOW: u32 = 256 << 10;
pub const CONNECTION_WINDOW: u32 = 64 << 20;

/// Serves `app` over TLS on `listener` until `shutdown`; each connection is HTTP/2 with
/// keep-alive pings, so a vanished API replica's streams end.
pub async fn serve(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>, app: axum::Router, shutdown: CancellationToken) {
    use tower::ServiceExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => { tokio::time::sleep(Duration::from_millis(100)).await; continue }
            },
            () = shutdown.cancelled() => return,
        };
        let (acceptor, app, shutdown) = (acceptor.clone(), app.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await else { return };
            let service =
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| app.clone().oneshot(request.map(Body::new)));
            let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            // Every terminal, desktop and gateway link is a stream for as long as it lasts.
            // Small per-stream windows: a sandbox that stops reading holds back its own stream
            // only (the replicas also keep calls and streams on separate connections).
            builder
                .http2()
                .timer(hyper_util::rt::TokioTimer::new())
                .keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .max_concurrent_streams(MAX_STREAMS)
                .initial_stream_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW);
            let connection = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = connection => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}
