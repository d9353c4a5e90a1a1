//! In-process fan-out of feed notifications `(subject id, event id)` (a chat session's or an
//! instance's agent feed): the process's one LISTEN connection publishes, every subscriber of
//! the feed receives.

use tokio::sync::broadcast;
use uuid::Uuid;

pub struct EventHub {
    sender: broadcast::Sender<(Uuid, i64)>,
}

impl Default for EventHub {
    fn default() -> Self {
        // A subscriber that lags behind this many notifications rescans the database instead.
        EventHub { sender: broadcast::channel(4096).0 }
    }
}

impl EventHub {
    pub fn subscribe(&self) -> broadcast::Receiver<(Uuid, i64)> {
        self.sender.subscribe()
    }

    pub fn publish(&self, session_id: Uuid, event_id: i64) {
        // No subscriber is not an error.
        let _ = self.sender.send((session_id, event_id));
    }

    /// Publishes the notifications of `channel` (payload `"<uuid> <event id>"`) into `hub`.
    pub fn listen(hub: &std::sync::Arc<EventHub>, channel: &'static str, listeners: &mut crate::db::notify::Listeners) {
        let hub = hub.clone();
        listeners.on(
            channel,
            |_| {},
            move |payload| {
                let mut parts = payload.split(' ');
                if let (Some(Ok(subject)), Some(Ok(event))) = (parts.next().map(str::parse::<Uuid>), parts.next().map(str::parse::<i64>)) {
                    hub.publish(subject, event);
                }
            },
        );
    }
}
