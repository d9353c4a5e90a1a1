//! Each user's instance list, remembered as its JSON answer so `GET /api/instances` costs no
//! database round trip. Trusted only while this process hears the database's
//! `ocaas_instances` notifications (a trigger sends the owner's id on every insert, update and
//! delete of an instance row, whichever process or admin command made it): each one forgets
//! that user's list, and while the listening connection is down nothing is cached. A change
//! made by another process is therefore seen as soon as its notification arrives
//! (milliseconds), and never later than `FRESH_FOR` even if one were lost.
//!
//! A change made by this process must be seen by the very next request, even before its own
//! notification comes back: every write to `instances` in this process calls
//! [`instances_written`] once it is committed, which makes every list cached before it stale.
//! A list read from the database is only kept if nothing was written or notified while it was
//! being read (the `Ticket` taken before the query says what "nothing" was).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use uuid::Uuid;

/// Upper bound on how long a cached list is trusted.
pub const FRESH_FOR: Duration = Duration::from_secs(10);
/// How many users' lists are kept; past it the cache starts over (a list is a few KiB at most:
/// it is bounded by the per-user instance limit).
const MAX_ENTRIES: usize = 10_000;

/// Writes to `instances` committed by this process (any `AppState` in it).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// To be called after this process committed a change to an `instances` row.
pub fn instances_written() {
    WRITES.fetch_add(1, Ordering::SeqCst);
}

struct Entry {
    body: Bytes,
    writes: u64,
    at: Instant,
}

/// What had happened when a list was read from the database.
#[derive(Clone, Copy)]
pub struct Ticket {
    writes: u64,
    notified: u64,
}

#[derive(Default)]
pub struct InstanceLists {
    entries: Mutex<HashMap<Uuid, Entry>>,
    /// The notification listener is connected.
    live: AtomicBool,
    /// Bumped by every notification and listener change.
    notified: AtomicU64,
}

impl InstanceLists {
    /// The user's list as JSON, if one cached may be trusted now.
    pub fn get(&self, user_id: Uuid) -> Option<Bytes> {
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(&user_id)?;
        let fresh = entry.writes == WRITES.load(Ordering::SeqCst) && entry.at.elapsed() < FRESH_FOR;
        fresh.then(|| entry.body.clone())
    }

    /// Taken before reading a list from the database.
    pub fn ticket(&self) -> Ticket {
        Ticket { writes: WRITES.load(Ordering::SeqCst), notified: self.notified.load(Ordering::SeqCst) }
    }

    /// Remembers a list read after `ticket` was taken, unless something changed meanwhile.
    pub fn put(&self, user_id: Uuid, ticket: Ticket, body: Bytes) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let unchanged = ticket.notified == self.notified.load(Ordering::SeqCst) && ticket.writes == WRITES.load(Ordering::SeqCst);
        if !self.live.load(Ordering::SeqCst) || !unchanged {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(user_id, Entry { body, writes: ticket.writes, at: Instant::now() });
    }

    /// A notification: the user's instances changed somewhere.
    pub fn forget(&self, user_id: Uuid) {
        self.notified.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(&user_id);
    }

    /// The listener connected (`true`) or lost its connection (`false`): either way what was
    /// cached may be stale now.
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
        self.forget_all();
    }

    pub fn forget_all(&self) {
        self.notified.fetch_add(1, Ordering::SeqCst);
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> InstanceLists {
        let lists = InstanceLists::default();
        lists.set_live(true);
        lists
    }

    #[test]
    fn nothing_is_cached_without_the_listener() {
        let lists = InstanceLists::default();
        let user = Uuid::new_v4();
        lists.put(user, lists.ticket(), Bytes::from_static(b"[]"));
        assert_eq!(lists.get(user), None);
        let lists = live();
        lists.put(user, lists.ticket(), Bytes::from_static(b"[]"));
        assert_eq!(lists.get(user).as_deref(), Some(&b"[]"[..]));
        lists.set_live(false);
        assert_eq!(lists.get(user), None, "a lost listener empties and disables the cache");
    }

    #[test]
    fn a_notification_forgets_the_users_list_and_refuses_a_list_read_before_it() {
        let lists = live();
        let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
        lists.put(user, lists.ticket(), Bytes::from_static(b"[1]"));
        lists.put(other, lists.ticket(), Bytes::from_static(b"[2]"));
        let ticket = lists.ticket();
        lists.forget(user);
        assert_eq!(lists.get(user), None);
        assert!(lists.get(other).is_some(), "other users' lists stay");
        lists.put(user, ticket, Bytes::from_static(b"[stale]"));
        assert_eq!(lists.get(user), None, "read while the change was notified: not kept");
    }

    #[test]
    fn a_write_by_this_process_makes_every_cached_list_stale_at_once() {
        let lists = live();
        let user = Uuid::new_v4();
        lists.put(user, lists.ticket(), Bytes::from_static(b"[1]"));
        let ticket = lists.ticket();
        instances_written();
        assert_eq!(lists.get(user), None);
        lists.put(user, ticket, Bytes::from_static(b"[stale]"));
        assert_eq!(lists.get(user), None, "read before the write committed: not kept");
        lists.put(user, lists.ticket(), Bytes::from_static(b"[2]"));
        assert_eq!(lists.get(user).as_deref(), Some(&b"[2]"[..]));
    }
}
