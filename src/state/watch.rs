//! When something cached from the database may still be trusted — the one rule the credential
//! cache and the per-user answer caches share. This process must hear the database's
//! notifications (`live`); a read is only kept if nothing was notified and this process
//! committed no change of its own while it was being read (the `Ticket` taken before the
//! query); and a kept entry goes stale as soon as this process commits a change, before that
//! change's own notification comes back (`Writes`, a process-wide counter: repo functions get a
//! pool, not the state).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Changes of one kind committed by this process (any `AppState` in it).
pub struct Writes(AtomicU64);

impl Writes {
    pub const fn new() -> Self {
        Writes(AtomicU64::new(0))
    }

    /// To be called once the change is committed.
    pub fn bump(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What had happened when something was read from the database.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    writes: u64,
    notified: u64,
}

pub struct Watch {
    writes: &'static Writes,
    /// The notification listener is connected.
    live: AtomicBool,
    /// Bumped by every notification and listener change.
    notified: AtomicU64,
}

impl Watch {
    pub const fn new(writes: &'static Writes) -> Self {
        Watch { writes, live: AtomicBool::new(false), notified: AtomicU64::new(0) }
    }

    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Taken before reading from the database.
    pub fn ticket(&self) -> Ticket {
        Ticket { writes: self.writes.count(), notified: self.notified.load(Ordering::SeqCst) }
    }

    /// What was read after `ticket` was taken may be kept: the listener is connected and
    /// nothing was written or notified since.
    pub fn may_keep(&self, ticket: Ticket) -> bool {
        self.is_live() && self.ticket() == ticket
    }

    /// An entry kept under `ticket` is still current: this process wrote nothing since.
    pub fn unwritten_since(&self, ticket: Ticket) -> bool {
        ticket.writes == self.writes.count()
    }

    /// A notification arrived: reads in flight must not be kept.
    pub fn notified(&self) {
        self.notified.fetch_add(1, Ordering::SeqCst);
    }

    /// The listener connected (`true`) or lost its connection (`false`).
    pub fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
        self.notified();
    }
}
