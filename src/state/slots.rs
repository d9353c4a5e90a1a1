//! Per-user caps on long-lived work: commands running, terminals, desktop sockets and event
//! streams open at once. One user cannot take the server's connections, engine execs or
//! memory from the others; past a cap the request gets 429 `too_many_concurrent`.

use std::hash::Hash;

use uuid::Uuid;

use crate::config::SlotLimits;
use crate::error::{AppError, AppResult, ErrorCode};
use crate::ratelimit::{Counts, Held};

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
