//! Work that can be stopped by id from any process: this process's registry of tokens (a chat
//! turn registers its assistant message id), and the `NOTIFY` every process listens to, so a
//! stop asked of one replica reaches the replica doing the work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The channel stop requests travel on (payload: the id).
pub const ABORT_CHANNEL: &str = "ocaas_chat_abort";

#[derive(Default)]
pub struct Cancels {
    tokens: Mutex<HashMap<Uuid, CancellationToken>>,
}

/// Unregisters its id when dropped.
pub struct Registered {
    cancels: Arc<Cancels>,
    id: Uuid,
    pub token: CancellationToken,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.cancels.tokens.lock().expect("cancel registry").remove(&self.id);
    }
}

impl Cancels {
    pub fn register(self: &Arc<Self>, id: Uuid) -> Registered {
        let token = CancellationToken::new();
        self.tokens.lock().expect("cancel registry").insert(id, token.clone());
        Registered { cancels: self.clone(), id, token }
    }

    /// Stops the work if it runs in this process; whether it did.
    pub fn cancel(&self, id: Uuid) -> bool {
        match self.tokens.lock().expect("cancel registry").get(&id) {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops it here, or asks every process to.
    pub async fn cancel_everywhere(&self, db: &sqlx::PgPool, id: Uuid) -> sqlx::Result<()> {
        if !self.cancel(id) {
            sqlx::query_scalar!(r#"SELECT pg_notify($1, $2)::text AS "sent""#, ABORT_CHANNEL, id.to_string()).fetch_one(db).await?;
        }
        Ok(())
    }

    /// A stop request from another process.
    pub fn on_request(&self, payload: &str) {
        if let Ok(id) = payload.trim().parse() {
            self.cancel(id);
        }
    }
}
