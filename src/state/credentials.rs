//! Who an API key or browser session belongs to, remembered so an authenticated request costs
//! no database round trip. Trusted only while this process hears the database's `ocaas_auth`
//! notifications (sent by triggers on every revocation, expiry change and deletion, from any
//! process or admin command): each one empties the cache, and while the listening connection
//! is down the cache is not used at all. A revoked key is therefore refused as soon as the
//! notification arrives (milliseconds), and never later than `FRESH_FOR` even if a
//! notification were lost. `last_used_at` of keys used from the cache is written in batches.
//!
//! A revocation made by this process (a key revoked, a session logged out) must be refused by
//! the very next request, before its own notification comes back: the repo calls
//! [`credentials_revoked`] once it is committed, which makes everything cached before it stale.
//! A credential read from the database is only kept if nothing was revoked or notified while
//! it was being read (the `Ticket` taken before the query), so a lookup that raced a revocation
//! cannot put the revoked credential back.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::TtlCache;
use super::watch::{Ticket, Watch, Writes};

/// Upper bound on how long a cached credential is trusted.
pub const FRESH_FOR: Duration = Duration::from_secs(30);
const MAX_ENTRIES: usize = 100_000;

/// Revocations committed by this process (any `AppState` in it).
static REVOKED: Writes = Writes::new();

/// To be called after this process committed a revocation, expiry change or deletion of a key
/// or session.
pub fn credentials_revoked() {
    REVOKED.bump();
}

#[derive(Debug, Clone)]
pub struct Cached {
    pub user_id: Uuid,
    /// An API key's id; `None` for a session.
    pub key_id: Option<Uuid>,
    /// A session's CSRF token.
    pub csrf_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// A key's scopes as stored (`None`: all) and the instance it is bound to.
    pub scopes: Option<Vec<String>>,
    pub instance_id: Option<Uuid>,
}

pub struct Credentials {
    /// Keyed by the SHA-256 of the secret; each entry with the ticket it was read under.
    cache: TtlCache<Vec<u8>, (Cached, Ticket)>,
    watch: Watch,
    used_keys: Mutex<HashSet<Uuid>>,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials { cache: TtlCache::new(FRESH_FOR, MAX_ENTRIES), watch: Watch::new(&REVOKED), used_keys: Mutex::default() }
    }
}

impl Credentials {
    /// The cached credential, if the cache may be trusted now and it has not expired.
    pub fn get(&self, hash: &[u8]) -> Option<Cached> {
        if !self.watch.is_live() {
            return None;
        }
        let (cached, read) = self.cache.get(&hash.to_vec())?;
        if !self.watch.unwritten_since(read) || cached.expires_at.is_some_and(|at| at <= Utc::now()) {
            self.cache.forget(&hash.to_vec());
            return None;
        }
        if let Some(key_id) = cached.key_id {
            self.used_keys.lock().unwrap_or_else(|e| e.into_inner()).insert(key_id);
        }
        Some(cached)
    }

    /// Taken before reading a credential from the database.
    pub fn ticket(&self) -> Ticket {
        self.watch.ticket()
    }

    /// Remembers a credential read after `ticket` was taken, unless something was revoked or
    /// notified meanwhile.
    pub fn put(&self, hash: Vec<u8>, ticket: Ticket, cached: Cached) {
        if self.watch.may_keep(ticket) {
            self.cache.put(hash, (cached, ticket));
        }
    }

    /// The listener connected (`true`) or lost its connection (`false`): either way what was
    /// cached may be stale now.
    pub fn set_live(&self, live: bool) {
        self.watch.set_live(live);
        self.cache.clear();
    }

    /// A revocation somewhere: forget everything.
    pub fn invalidate(&self) {
        self.watch.notified();
        self.cache.clear();
    }

    /// Keys used from the cache since the last call (for the batched `last_used_at`).
    pub fn take_used(&self) -> Vec<Uuid> {
        self.used_keys.lock().unwrap_or_else(|e| e.into_inner()).drain().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(expires_at: Option<DateTime<Utc>>) -> Cached {
        Cached { user_id: Uuid::new_v4(), key_id: Some(Uuid::new_v4()), csrf_token: None, expires_at, scopes: None, instance_id: None }
    }

    fn put(credentials: &Credentials, hash: &[u8], cached: Cached) {
        credentials.put(hash.to_vec(), credentials.ticket(), cached);
    }

    #[test]
    fn nothing_is_trusted_without_the_listener_and_an_invalidation_forgets_everything() {
        let credentials = Credentials::default();
        put(&credentials, b"a", entry(None));
        assert!(credentials.get(b"a").is_none(), "not live: not cached");
        credentials.set_live(true);
        put(&credentials, b"a", entry(None));
        let key_id = credentials.get(b"a").unwrap().key_id.unwrap();
        assert_eq!(credentials.take_used(), vec![key_id]);
        credentials.invalidate();
        assert!(credentials.get(b"a").is_none());
        put(&credentials, b"a", entry(None));
        credentials.set_live(false);
        assert!(credentials.get(b"a").is_none(), "a lost listener empties and disables the cache");
    }

    #[test]
    fn an_expired_credential_is_not_served_from_the_cache() {
        let credentials = Credentials::default();
        credentials.set_live(true);
        put(&credentials, b"old", entry(Some(Utc::now() - chrono::Duration::seconds(1))));
        assert!(credentials.get(b"old").is_none());
    }

    #[test]
    fn a_lookup_that_raced_a_revocation_is_not_kept() {
        let credentials = Credentials::default();
        credentials.set_live(true);
        let ticket = credentials.ticket();
        credentials.invalidate();
        credentials.put(b"a".to_vec(), ticket, entry(None));
        assert!(credentials.get(b"a").is_none(), "read while a revocation was notified");
        let ticket = credentials.ticket();
        credentials_revoked();
        credentials.put(b"a".to_vec(), ticket, entry(None));
        assert!(credentials.get(b"a").is_none(), "read while this process revoked something");
    }

    #[test]
    fn a_revocation_by_this_process_is_refused_at_once() {
        let credentials = Credentials::default();
        credentials.set_live(true);
        put(&credentials, b"a", entry(None));
        assert!(credentials.get(b"a").is_some());
        credentials_revoked();
        assert!(credentials.get(b"a").is_none(), "stale before any notification arrives");
    }
}
