//! Per-user caps on long-lived work: commands running, terminals, desktop sockets and event
//! streams open at once. One user cannot take the server's connections, engine execs or
//! memory from the others; past a cap the request gets 429 `too_many_concurrent`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::config::SlotLimits;
use crate::error::{AppError, AppResult, ErrorCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlotKind {
    Exec,
    Terminal,
    Desktop,
    Stream,
    /// Any request being handled (until its response head), after authentication.
    Request,
}

impl SlotKind {
    fn describe(self) -> &'static str {
        match self {
            SlotKind::Exec => "commands (or listings and JSON file writes) running",
            SlotKind::Terminal => "terminals open",
            SlotKind::Desktop => "desktop connections open",
            SlotKind::Stream => "event streams open",
            SlotKind::Request => "requests in flight",
        }
    }
}

fn limit_of(limits: &SlotLimits, kind: SlotKind) -> usize {
    match kind {
        SlotKind::Exec => limits.exec,
        SlotKind::Terminal => limits.terminal,
        SlotKind::Desktop => limits.desktop,
        SlotKind::Stream => limits.stream,
        SlotKind::Request => limits.request,
    }
}

/// How many of something each key holds; a `Held` guard gives its one back when dropped.
pub struct Counts<K: Hash + Eq> {
    taken: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq> Default for Counts<K> {
    fn default() -> Self {
        Counts { taken: Arc::default() }
    }
}

/// One held count of a key, until dropped.
pub struct Held<K: Hash + Eq> {
    taken: Arc<Mutex<HashMap<K, usize>>>,
    key: Option<K>,
}

impl<K: Hash + Eq> Drop for Held<K> {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = self.key.take()
            && let Some(count) = taken.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                taken.remove(&key);
            }
        }
    }
}

impl<K: Hash + Eq + Clone> Counts<K> {
    /// One more for `key`, unless it holds `max` already.
    pub fn try_take(&self, key: K, max: usize) -> Option<Held<K>> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let count = taken.entry(key.clone()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Held { taken: self.taken.clone(), key: Some(key) })
    }
}

pub struct UserSlots {
    limits: SlotLimits,
    taken: Counts<(Uuid, SlotKind)>,
}

/// Holds one slot until dropped.
pub type Slot = Held<(Uuid, SlotKind)>;

impl UserSlots {
    pub fn new(limits: SlotLimits) -> Self {
        UserSlots { limits, taken: Counts::default() }
    }

    /// A slot of `kind` for `user`, or 429 when the user has all of them.
    pub fn acquire(&self, user: Uuid, kind: SlotKind) -> AppResult<Slot> {
        let max = limit_of(&self.limits, kind);
        self.taken.try_take((user, kind), max).ok_or_else(|| {
            let code = if kind == SlotKind::Request { ErrorCode::TooManyInFlight } else { ErrorCode::TooManyConcurrent };
            AppError::new(code, format!("You have {max} {} already, the most allowed at once; close one and try again.", kind.describe()))
                .with_retry_after(1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_user_and_kind_and_come_back_when_dropped() {
        let slots = UserSlots::new(SlotLimits { exec: 2, terminal: 1, desktop: 1, stream: 1, request: 1 });
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let first = slots.acquire(alice, SlotKind::Exec).unwrap();
        let _second = slots.acquire(alice, SlotKind::Exec).unwrap();
        assert!(slots.acquire(alice, SlotKind::Exec).is_err());
        assert!(slots.acquire(bob, SlotKind::Exec).is_ok(), "another user is not affected");
        assert!(slots.acquire(alice, SlotKind::Terminal).is_ok(), "another kind is not affected");
        drop(first);
        assert!(slots.acquire(alice, SlotKind::Exec).is_ok());
    }
}
