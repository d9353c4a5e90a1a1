//! One `LISTEN` connection per channel and process, kept open (reconnecting every second after
//! a loss) until shutdown. `on_live(true)` once listening, `on_live(false)` when the connection
//! is lost (notifications may have been missed meanwhile); `on_payload` per notification.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

pub fn spawn_listener(
    db: PgPool,
    shutdown: CancellationToken,
    channel: &'static str,
    on_live: impl Fn(bool) + Send + Sync + 'static,
    on_payload: impl Fn(&str) + Send + Sync + 'static,
) {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            if let Err(error) = listen(&db, &shutdown, channel, &on_live, &on_payload).await {
                tracing::warn!(%error, channel, "notification listener lost its connection; reconnecting");
            }
            on_live(false);
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    });
}

async fn listen(db: &PgPool, shutdown: &CancellationToken, channel: &str, on_live: &impl Fn(bool), on_payload: &impl Fn(&str)) -> sqlx::Result<()> {
    let mut listener = PgListener::connect_with(db).await?;
    listener.listen(channel).await?;
    on_live(true);
    loop {
        let notification = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            n = listener.recv() => n?,
        };
        on_payload(notification.payload());
    }
}
