//! Which instances have lifecycle work running in this process, and the right to do engine
//! work on one. One driver per instance at a time: beginning a new one cancels the previous
//! one; a finished driver only unregisters itself if no newer one replaced it (generations
//! tell them apart). Engine work on an instance (a driver, a pause, a resume, a snapshot's
//! freeze, a reconciler fix) holds the instance: first its lock in this process, then its
//! lease in PostgreSQL (`db::leases`), so two never act on one sandbox — not in one process,
//! not across server replicas and admin commands. The lease is renewed every third of its
//! lifetime while held; a holder that dies loses it when it expires, and then others may act.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::OwnedMutexGuard;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::leases::{self, Attempt};

/// How long to wait between attempts at a lease someone else holds (doubling up to this).
const RETRY_MAX: Duration = Duration::from_millis(500);

#[derive(Default)]
pub struct Drivers {
    running: Mutex<HashMap<Uuid, (u64, CancellationToken)>>,
    next_generation: AtomicU64,
    locks: super::KeyedLocks<Uuid>,
    /// Where the leases live; `None` only in unit tests of the in-process part.
    leases: Option<(PgPool, Duration)>,
    /// This process, in cancel requests (`cancel_everywhere`).
    process: Uuid,
}

/// The right to do engine work on an instance: the process's lock and the database's lease,
/// both let go when dropped (the lease's release runs in the background; were it lost, the
/// lease simply expires).
pub struct DriverHold {
    _local: OwnedMutexGuard<()>,
    _lease: Option<Lease>,
}

struct Lease {
    db: PgPool,
    instance_id: Uuid,
    token: Uuid,
    renewer: tokio::task::JoinHandle<()>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewer.abort();
        let (db, id, token) = (self.db.clone(), self.instance_id, self.token);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = leases::release(&db, id, token).await {
                    tracing::warn!(%id, %error, "releasing a driver lease failed; it expires by itself");
                }
            });
        }
    }
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

    /// This process's id (it holds leases under it).
    pub fn process(&self) -> Uuid {
        self.process
    }

    pub fn is_driving(&self, id: Uuid) -> bool {
        self.lock().contains_key(&id)
    }

    pub fn new(db: PgPool, lease: Duration) -> Self {
        Drivers { leases: Some((db, lease)), process: Uuid::new_v4(), ..Default::default() }
    }

    /// Cancels the instance's driver in this process and asks every other process to cancel
    /// theirs (a delete through one replica must not wait for another's provision to end).
    pub async fn cancel_everywhere(&self, id: Uuid) {
        self.cancel(id);
        if let Some((db, _)) = &self.leases
            && let Err(error) = leases::ask_to_cancel(db, id, self.process).await
        {
            tracing::warn!(%id, %error, "asking other processes to cancel a driver failed; their lease expires by itself");
        }
    }

    /// Cancels what another process asks to (`<instance id> <asking process>`), not our own.
    pub fn on_cancel_request(&self, payload: &str) {
        let mut parts = payload.split(' ');
        if let (Some(Ok(id)), Some(Ok(asker))) = (parts.next().map(str::parse::<Uuid>), parts.next().map(str::parse::<Uuid>))
            && asker != self.process
        {
            self.cancel(id);
        }
    }

    /// Waits for, then holds, the right to do engine work on the instance (however long
    /// another process's driver takes, or until its lease expires).
    pub async fn hold(&self, id: Uuid) -> DriverHold {
        let local = self.locks.lock(id).await;
        let mut pause = Duration::from_millis(25);
        loop {
            match self.take_lease(id).await {
                Ok(Some(lease)) => return DriverHold { _local: local, _lease: lease },
                Ok(None) => {}
                Err(error) => tracing::warn!(%id, %error, "taking a driver lease failed; trying again"),
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RETRY_MAX);
        }
    }

    /// The right to work on the instance if nobody, in this process or another, holds it now.
    pub async fn try_hold(&self, id: Uuid) -> Option<DriverHold> {
        let local = self.locks.try_lock(id)?;
        match self.take_lease(id).await {
            Ok(Some(lease)) => Some(DriverHold { _local: local, _lease: lease }),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%id, %error, "taking a driver lease failed");
                None
            }
        }
    }

    /// `Some(lease)` once taken (`Some(None)`: nothing to take, as without a database or for
    /// a deleted instance); `None` while another holder has it.
    async fn take_lease(&self, id: Uuid) -> sqlx::Result<Option<Option<Lease>>> {
        let Some((db, ttl)) = &self.leases else { return Ok(Some(None)) };
        let token = Uuid::new_v4();
        Ok(match leases::try_take(db, id, token, *ttl).await? {
            Attempt::Taken => Some(Some(Lease { db: db.clone(), instance_id: id, token, renewer: renew(db.clone(), id, token, *ttl) })),
            Attempt::NoInstance => Some(None),
            Attempt::Held => None,
        })
    }

    /// Drops the lock of a deleted instance (whoever still holds it keeps a valid one).
    pub fn forget(&self, id: Uuid) {
        self.locks.forget(&id);
    }
}

/// Keeps the lease alive while it is held: renewed every third of its lifetime.
fn renew(db: PgPool, id: Uuid, token: Uuid, ttl: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(ttl / 3).await;
            match leases::renew(&db, id, token, ttl).await {
                Ok(true) => {}
                // Gone with its instance, or expired and taken over (this process stalled
                // longer than the lease): nothing more to keep.
                Ok(false) => {
                    tracing::warn!(%id, "a driver lease was lost before its work ended");
                    return;
                }
                Err(error) => tracing::warn!(%id, %error, "renewing a driver lease failed; trying again"),
            }
        }
    })
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
        assert!(drivers.try_hold(a).await.is_none());
        assert!(drivers.try_hold(b).await.is_some(), "another instance is not blocked");
        drop(held);
        assert!(drivers.try_hold(a).await.is_some());
    }
}
