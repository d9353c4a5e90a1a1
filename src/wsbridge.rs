//! Websockets bridged to a byte pipe inside a sandbox (a PTY exec, the VNC port): the JSON
//! rejection of a handshake that is not one, and the pump both ways with keep-alive pings,
//! backpressure and a clean close.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::FromRequestParts;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::http::request::Parts;
use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::error::{AppError, ErrorCode};
use crate::runtime::ByteStream;

/// Pings go out this often while a websocket is open, so proxies keep it alive …
const PING_EVERY: Duration = Duration::from_secs(20);
/// … and a client silent (not even a pong) for this long is gone.
const CLIENT_GONE_AFTER: Duration = Duration::from_secs(65);
/// Bytes of upstream output sent in one write at most when more is ready at once.
const COALESCE_BYTES: usize = 1 << 20;
/// Largest message accepted from a client.
pub const MAX_MESSAGE: usize = 1 << 20;

/// `WebSocketUpgrade` capped at `MAX_MESSAGE`, rejecting plain HTTP requests with the API's
/// JSON error (426).
pub struct WsUpgrade(pub WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for WsUpgrade {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let upgrade = WebSocketUpgrade::from_request_parts(parts, state).await;
        upgrade.map(|upgrade| WsUpgrade(upgrade.max_message_size(MAX_MESSAGE))).map_err(|rejection| {
            AppError::new(
                ErrorCode::WebsocketRequired,
                format!("This endpoint speaks WebSocket: connect with a websocket client ({}).", rejection.body_text()),
            )
        })
    }
}

/// What one side of a bridge does beyond moving bytes.
#[async_trait]
pub trait Upstream: Send {
    /// A text frame from the client; returns bytes to forward, if any.
    async fn on_text(&mut self, _text: &str) -> Option<Bytes> {
        None
    }
    /// A text frame for the client once the upstream has ended (before the close).
    async fn farewell(&mut self) -> Option<String> {
        None
    }
}

/// Who ended the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Upstream,
    Client,
    /// The server is shutting down.
    Server,
}

/// Moves bytes both ways until one side ends. Binary frames go upstream as they are; text
/// frames go to `upstream.on_text`. Each direction waits for the other end to take what it
/// sent, so a slow reader slows the writer instead of filling memory.
pub async fn bridge(
    socket: WebSocket,
    mut from_upstream: ByteStream,
    mut to_upstream: Pin<Box<dyn AsyncWrite + Send>>,
    upstream: &mut dyn Upstream,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Ended {
    let (mut sink, mut stream) = socket.split();
    let opened = Instant::now();
    // Milliseconds after `opened` when the client was last heard from.
    let last_heard = AtomicU64::new(0);
    let silent_for = || opened.elapsed().saturating_sub(Duration::from_millis(last_heard.load(Ordering::Relaxed)));
    let outbound = async {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                chunk = from_upstream.next() => match chunk {
                    Some(Ok(bytes)) => {
                        // What the upstream has already produced goes out in the same write;
                        // the flush comes as soon as nothing more is ready, so an echo is
                        // never held back.
                        let mut ended = None;
                        let mut next = Some(bytes);
                        let mut queued = 0;
                        while let Some(bytes) = next.take() {
                            queued += bytes.len();
                            if sink.feed(Message::Binary(bytes)).await.is_err() {
                                return Ended::Client;
                            }
                            if queued < COALESCE_BYTES {
                                match from_upstream.next().now_or_never() {
                                    Some(Some(Ok(more))) => next = Some(more),
                                    Some(_) => ended = Some(Ended::Upstream),
                                    None => {}
                                }
                            }
                        }
                        if sink.flush().await.is_err() {
                            return Ended::Client;
                        }
                        if let Some(ended) = ended {
                            return ended;
                        }
                    }
                    _ => return Ended::Upstream,
                },
                _ = ping.tick() => {
                    if silent_for() > CLIENT_GONE_AFTER || sink.send(Message::Ping(Bytes::new())).await.is_err() {
                        return Ended::Client;
                    }
                }
            }
        }
    };
    let inbound = async {
        while let Some(Ok(message)) = stream.next().await {
            last_heard.store(opened.elapsed().as_millis() as u64, Ordering::Relaxed);
            let bytes = match message {
                Message::Binary(bytes) => Some(bytes),
                Message::Text(text) => upstream.on_text(text.as_str()).await,
                Message::Close(_) => break,
                Message::Ping(_) | Message::Pong(_) => None,
            };
            if let Some(bytes) = bytes.filter(|b| !b.is_empty())
                && (to_upstream.write_all(&bytes).await.is_err() || to_upstream.flush().await.is_err())
            {
                return Ended::Upstream;
            }
        }
        Ended::Client
    };
    let ended = tokio::select! {
        ended = outbound => ended,
        ended = inbound => ended,
        () = shutdown.cancelled() => Ended::Server,
    };
    let _ = to_upstream.shutdown().await;
    let code = match ended {
        Ended::Client => {
            // Sends the reply to the client's close frame, if it is still there to read it.
            let _ = tokio::time::timeout(Duration::from_secs(5), sink.close()).await;
            return ended;
        }
        Ended::Upstream => {
            if let Some(text) = upstream.farewell().await {
                let _ = sink.send(Message::Text(text.into())).await;
            }
            close_code::NORMAL
        }
        Ended::Server => close_code::AWAY,
    };
    let _ = sink.send(Message::Close(Some(CloseFrame { code, reason: "".into() }))).await;
    ended
}
