//! What this process has seen of each instance's use: the last moment anything used it, and
//! how much holds it busy right now (open terminals, desktops, event streams, turns in
//! progress). The idle policy never touches a busy instance; `last_active_at` in the database
//! is written from here in batches (`take_dirty`), never on the request path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use uuid::Uuid;

#[derive(Default)]
struct Entry {
    last: Option<DateTime<Utc>>,
    busy: usize,
    /// Requests running commands or file operations in the sandbox right now.
    calls: usize,
    /// The engine is freezing or frozen for ocaas (pause, snapshot): no call may start. (An
    /// exec that starts while the engine freezes a container can hang the engine itself.)
    freezing: bool,
    /// Used since the last batch write.
    dirty: bool,
}

#[derive(Default)]
pub struct Activity {
    entries: Mutex<HashMap<Uuid, Entry>>,
}

/// Keeps its instance busy until dropped (then counts as a last use).
pub struct Busy {
    activity: Arc<Activity>,
    id: Uuid,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut entries = self.activity.lock();
        let entry = entries.entry(self.id).or_default();
        entry.busy = entry.busy.saturating_sub(1);
        entry.last = Some(Utc::now());
        entry.dirty = true;
    }
}

/// A request working in the sandbox (a command, a file operation): the instance is busy, and
/// a pause waits for it rather than freezing the sandbox under it.
pub struct Call {
    /// Also names the instance; dropped (no longer busy) right after the call count goes down.
    busy: Busy,
}

impl Drop for Call {
    fn drop(&mut self) {
        let mut entries = self.busy.activity.lock();
        let entry = entries.entry(self.busy.id).or_default();
        entry.calls = entry.calls.saturating_sub(1);
    }
}

impl Activity {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The instance was used just now.
    pub fn touch(&self, id: Uuid) {
        let mut entries = self.lock();
        let entry = entries.entry(id).or_default();
        entry.last = Some(Utc::now());
        entry.dirty = true;
    }

    /// Marks the instance busy for as long as the returned guard lives.
    pub fn hold(self: &Arc<Self>, id: Uuid) -> Busy {
        let mut entries = self.lock();
        let entry = entries.entry(id).or_default();
        entry.busy += 1;
        entry.last = Some(Utc::now());
        entry.dirty = true;
        Busy { activity: self.clone(), id }
    }

    /// Marks a request working in the sandbox until the guard is dropped; waits while ocaas
    /// freezes the sandbox.
    pub async fn call(self: &Arc<Self>, id: Uuid) -> Call {
        loop {
            {
                let mut entries = self.lock();
                let entry = entries.entry(id).or_default();
                if !entry.freezing {
                    entry.calls += 1;
                    break;
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        Call { busy: self.hold(id) }
    }

    /// Claims the right to freeze the sandbox: only when no call works in it (new calls then
    /// wait for `thaw`). Gives up after `patience`.
    pub async fn freeze(&self, id: Uuid, patience: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + patience;
        loop {
            {
                let mut entries = self.lock();
                let entry = entries.entry(id).or_default();
                if entry.calls == 0 && !entry.freezing {
                    entry.freezing = true;
                    return true;
                }
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn thaw(&self, id: Uuid) {
        if let Some(entry) = self.lock().get_mut(&id) {
            entry.freezing = false;
        }
    }

    pub fn is_busy(&self, id: Uuid) -> bool {
        self.lock().get(&id).is_some_and(|e| e.busy > 0)
    }

    /// The last use this process saw.
    pub fn last(&self, id: Uuid) -> Option<DateTime<Utc>> {
        self.lock().get(&id).and_then(|e| e.last)
    }

    /// Instances used since the last call, and those busy now (a long turn or an open
    /// terminal keeps its instance fresh in the database for other processes too).
    pub fn take_dirty(&self) -> Vec<Uuid> {
        let mut entries = self.lock();
        // Idle entries are dropped once written: the map stays as large as what is in use.
        entries.retain(|_, e| e.busy > 0 || e.dirty || e.calls > 0 || e.freezing);
        entries
            .iter_mut()
            .filter(|(_, e)| e.dirty || e.busy > 0)
            .map(|(id, e)| {
                e.dirty = false;
                *id
            })
            .collect()
    }

    /// Forgets a deleted instance.
    pub fn forget(&self, id: Uuid) {
        self.lock().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guard_keeps_its_instance_busy_and_counts_as_use_when_dropped() {
        let activity = Arc::new(Activity::default());
        let id = Uuid::new_v4();
        assert!(!activity.is_busy(id));
        let first = activity.hold(id);
        let second = activity.hold(id);
        drop(first);
        assert!(activity.is_busy(id), "one guard is still open");
        drop(second);
        assert!(!activity.is_busy(id));
        assert!(activity.last(id).is_some());
    }

    #[tokio::test]
    async fn a_sandbox_is_never_frozen_under_a_call_and_calls_wait_for_the_thaw() {
        let activity = Arc::new(Activity::default());
        let id = Uuid::new_v4();
        let call = activity.call(id).await;
        assert!(!activity.freeze(id, std::time::Duration::from_millis(30)).await, "a call is working in it");
        drop(call);
        assert!(activity.freeze(id, std::time::Duration::ZERO).await);
        let waiting = tokio::spawn({
            let activity = activity.clone();
            async move { activity.call(id).await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no call starts while frozen");
        activity.thaw(id);
        let _call = tokio::time::timeout(std::time::Duration::from_secs(1), waiting).await.unwrap().unwrap();
    }

    #[test]
    fn dirty_instances_are_written_once_and_busy_ones_every_time() {
        let activity = Arc::new(Activity::default());
        let (used, busy) = (Uuid::new_v4(), Uuid::new_v4());
        activity.touch(used);
        let _guard = activity.hold(busy);
        let mut first = activity.take_dirty();
        first.sort();
        let mut expected = vec![used, busy];
        expected.sort();
        assert_eq!(first, expected);
        assert_eq!(activity.take_dirty(), vec![busy]);
        assert!(activity.last(used).is_none(), "written entries are dropped; the database has them");
    }
}
