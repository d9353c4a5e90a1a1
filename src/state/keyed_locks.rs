//! One async lock per key (an instance, a user), made on first use and forgotten once nobody
//! holds or waits for it, so the map stays as small as the work in progress.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::OwnedMutexGuard;

pub struct KeyedLocks<K> {
    locks: Mutex<HashMap<K, Weak<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for KeyedLocks<K> {
    fn default() -> Self {
        KeyedLocks { locks: Mutex::new(HashMap::new()) }
    }
}

impl<K: Hash + Eq> KeyedLocks<K> {
    fn of(&self, key: K) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = locks.get(&key).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(key, Arc::downgrade(&lock));
        lock
    }

    /// Waits for, then holds, the key's lock.
    pub async fn lock(&self, key: K) -> OwnedMutexGuard<()> {
        self.of(key).lock_owned().await
    }

    /// The key's lock if nobody holds it now.
    pub fn try_lock(&self, key: K) -> Option<OwnedMutexGuard<()>> {
        self.of(key).try_lock_owned().ok()
    }

    /// Drops the key's entry (whoever still holds its lock keeps a valid one).
    pub fn forget(&self, key: &K) {
        self.locks.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}
