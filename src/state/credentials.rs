//! Who an API key or browser session belongs to, remembered so an authenticated request costs
//! no database round trip. Trusted only while this process hears the database's `ocaas_auth`
//! notifications (sent by triggers on every revocation, expiry change and deletion, from any
//! process or admin command): each one empties the cache, and while the listening connection
//! is down the cache is not used at all. A revoked key is therefore refused as soon as the
//! notification arrives (milliseconds), and never later than `FRESH_FOR` even if a
//! notification were lost. `last_used_at` of keys used from the cache is written in batches.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::TtlCache;

/// Upper bound on how long a cached credential is trusted.
pub const FRESH_FOR: Duration = Duration::from_secs(30);
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone)]
pub struct Cached {
    pub user_id: Uuid,
    /// An API key's id; `None` for a session.
    pub key_id: Option<Uuid>,
    /// A session's CSRF token.
    pub csrf_token: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

pub struct Credentials {
    /// Keyed by the SHA-256 of the secret.
    cache: TtlCache<Vec<u8>, Cached>,
    /// The notification listener is connected.
    live: AtomicBool,
    used_keys: Mutex<HashSet<Uuid>>,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials { cache: TtlCache::new(FRESH_FOR, MAX_ENTRIES), live: AtomicBool::new(false), used_keys: Mutex::default() }
    }
}

impl Credentials {
    /// The cached credential, if the cache may be trusted now and it has not expired.
    pub fn get(&self, hash: &[u8]) -> Option<Cached> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let cached = self.cache.get(&hash.to_vec())?;
        if cached.expires_at.is_some_and(|at| at <= Utc::now()) {
            self.cache.forget(&hash.to_vec());
            return None;
        }
        if let Some(key_id) = cached.key_id {
            self.used_keys.lock().unwrap_or_else(|e| e.into_inner()).insert(key_id);
        }
        Some(cached)
    }

    pub fn put(&self, hash: Vec<u8>, cached: Cached) {
        if self.live.load(Ordering::Acquire) {
            self.cache.put(hash, cached);
        }
    }

    /// The listener connected (`true`) or lost its connection (`false`): either way what was
    /// cached may be stale now.
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::Release);
        self.cache.clear();
    }

    /// A revocation somewhere: forget everything.
    pub fn invalidate(&self) {
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
        Cached { user_id: Uuid::new_v4(), key_id: Some(Uuid::new_v4()), csrf_token: None, expires_at }
    }

    #[test]
    fn nothing_is_trusted_without_the_listener_and_an_invalidation_forgets_everything() {
        let credentials = Credentials::default();
        credentials.put(b"a".to_vec(), entry(None));
        assert!(credentials.get(b"a").is_none(), "not live: not cached");
        credentials.set_live(true);
        credentials.put(b"a".to_vec(), entry(None));
        let key_id = credentials.get(b"a").unwrap().key_id.unwrap();
        assert_eq!(credentials.take_used(), vec![key_id]);
        credentials.invalidate();
        assert!(credentials.get(b"a").is_none());
        credentials.put(b"a".to_vec(), entry(None));
        credentials.set_live(false);
        assert!(credentials.get(b"a").is_none(), "a lost listener empties and disables the cache");
    }

    #[test]
    fn an_expired_credential_is_not_served_from_the_cache() {
        let credentials = Credentials::default();
        credentials.set_live(true);
        credentials.put(b"old".to_vec(), entry(Some(Utc::now() - chrono::Duration::seconds(1))));
        assert!(credentials.get(b"old").is_none());
    }
}
