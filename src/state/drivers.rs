//! Which instances have lifecycle work running in this process. One driver per instance at a
//! time: beginning a new one cancels the previous one; a finished driver only unregisters
//! itself if no newer one replaced it (generations tell them apart). Engine work on an
//! instance (a driver, a pause, a resume, a reconciler fix) holds the instance's lock, so a
//! newer driver waits until the cancelled one has let go and two never act on one sandbox.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::OwnedMutexGuard;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[derive(Default)]
pub struct Drivers {
    running: Mutex<HashMap<Uuid, (u64, CancellationToken)>>,
    next_generation: AtomicU64,
    locks: super::KeyedLocks<Uuid>,
}

impl Drivers {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, (u64, CancellationToken)>> {
        // A panic while holding the lock leaves a consistent map: keep using it.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new driver for `id` (cancelling the running one) and returns its
    /// generation and a token cancelled with `parent` or by a newer driver.
    pub fn begin(&self, id: Uuid, parent: &CancellationToken) -> (u64, CancellationToken) {
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let token = parent.child_token();
        if let Some((_, previous)) = self.lock().insert(id, (generation, token.clone())) {
            previous.cancel();
        }
        (generation, token)
    }

    pub fn end(&self, id: Uuid, generation: u64) {
        let mut running = self.lock();
        if running.get(&id).is_some_and(|(current, _)| *current == generation) {
            running.remove(&id);
        }
    }

    pub fn cancel(&self, id: Uuid) {
        if let Some((_, token)) = self.lock().remove(&id) {
            token.cancel();
        }
    }

    pub fn is_driving(&self, id: Uuid) -> bool {
        self.lock().contains_key(&id)
    }

    /// Waits for, then holds, the right to do engine work on the instance.
    pub async fn hold(&self, id: Uuid) -> OwnedMutexGuard<()> {
        self.locks.lock(id).await
    }

    /// The instance's lock if nobody holds it now.
    pub fn try_hold(&self, id: Uuid) -> Option<OwnedMutexGuard<()>> {
        self.locks.try_lock(id)
    }

    /// Drops the lock of a deleted instance (whoever still holds it keeps a valid one).
    pub fn forget(&self, id: Uuid) {
        self.locks.forget(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_driver_cancels_the_older_and_survives_its_end() {
        let drivers = Drivers::default();
        let root = CancellationToken::new();
        let id = Uuid::new_v4();
        let (first, first_token) = drivers.begin(id, &root);
        let (second, second_token) = drivers.begin(id, &root);
        assert!(first_token.is_cancelled());
        drivers.end(id, first);
        assert!(drivers.is_driving(id), "the older driver's end must not unregister the newer one");
        drivers.end(id, second);
        assert!(!drivers.is_driving(id));
        assert!(!second_token.is_cancelled());
    }

    #[tokio::test]
    async fn engine_work_on_one_instance_waits_for_the_previous_and_others_do_not() {
        let drivers = Drivers::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let held = drivers.hold(a).await;
        assert!(drivers.try_hold(a).is_none());
        assert!(drivers.try_hold(b).is_some(), "another instance is not blocked");
        drop(held);
        assert!(drivers.try_hold(a).is_some());
    }
}
