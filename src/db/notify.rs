//! The process's one `LISTEN` connection, for every channel the server follows, kept open
//! (reconnecting every second after a loss) until shutdown. One connection, not one per
//! channel: PostgreSQL before 19 (15 here) wakes every listening backend of the database on each commit
//! that notifies, whatever channels it listens to, so each chat message would otherwise wake
//! one backend per channel and process. Each channel's `on_live(true)` once listening,
//! `on_live(false)` when the connection is lost (notifications may have been missed
//! meanwhile); its `on_payload` per notification on it.

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

struct Channel {
    name: &'static str,
    on_live: Box<dyn Fn(bool) + Send + Sync>,
    on_payload: Box<dyn Fn(&str) + Send + Sync>,
}

/// The channels to follow, gathered before the connection is opened.
#[derive(Default)]
pub struct Listeners {
    channels: Vec<Channel>,
}

impl Listeners {
    pub fn on(&mut self, name: &'static str, on_live: impl Fn(bool) + Send + Sync + 'static, on_payload: impl Fn(&str) + Send + Sync + 'static) {
        self.channels.push(Channel { name, on_live: Box::new(on_live), on_payload: Box::new(on_payload) });
    }

    /// Listens on every channel given so far until `shutdown`.
    pub fn spawn(self, db: PgPool, shutdown: CancellationToken) {
        let channels = self.channels;
        tokio::spawn(async move {
            while !shutdown.is_cancelled() {
                if let Err(error) = listen(&db, &shutdown, &channels).await {
                    tracing::warn!(%error, "notification listener lost its connection; reconnecting");
                }
                channels.iter().for_each(|channel| (channel.on_live)(false));
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
    }
}

async fn listen(db: &PgPool, shutdown: &CancellationToken, channels: &[Channel]) -> sqlx::Result<()> {
    let mut listener = PgListener::connect_with(db).await?;
    listener.listen_all(channels.iter().map(|channel| channel.name)).await?;
    channels.iter().for_each(|channel| (channel.on_live)(true));
    loop {
        let notification = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            n = listener.recv() => n?,
        };
        for channel in channels.iter().filter(|channel| channel.name == notification.channel()) {
            (channel.on_payload)(notification.payload());
        }
    }
}
