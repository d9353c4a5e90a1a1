//! In-process fan-out of chat notifications `(session id, event id)`: the chat domain's one
//! LISTEN connection publishes, every event-feed subscriber receives.

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
}
