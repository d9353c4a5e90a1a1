//! Per-user answers remembered as their JSON, so a hot read costs no database round trip: each
//! user's instance list (`GET /api/instances`) and account (`GET /api/account` with a key). An
//! answer may keep what it was made from (its `source`, e.g. the instance rows), so the domain
//! that owns it can serve other reads from it (the instance behind `/api/instances/{id}/…`)
//! under the same rules.
//! Each cache is trusted only while this process hears its notification channel (triggers send
//! the user's id on every change of the rows behind the answer, whichever process or admin
//! command made it): each notification forgets that user's answer, and while the listening
//! connection is down nothing is cached. A change made by another process is therefore seen as
//! soon as its notification arrives (milliseconds), and never later than `FRESH_FOR` even if
//! one were lost.
//!
//! A change made by this process must be seen by the very next request, even before its own
//! notification comes back: every write in this process to rows a cached answer shows calls
//! [`user_data_written`] once it is committed, which makes every answer cached before it stale.
//! An answer read from the database is only kept if nothing was written or notified while it
//! was being read (the rule of `watch`, shared with the credential cache).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;
use uuid::Uuid;

use super::watch::{Ticket, Watch, Writes};
use crate::db::notify::Listeners;
use crate::error::AppResult;

/// Upper bound on how long a cached answer is trusted.
pub const FRESH_FOR: Duration = Duration::from_secs(10);
/// How many users' answers each cache keeps; past it the cache starts over (an answer is a few
/// KiB at most: a list is bounded by the per-user instance limit).
const MAX_ENTRIES: usize = 10_000;

/// Writes to cached rows (instances, users, subscriptions) committed by this process (any
/// `AppState` in it).
static WRITES: Writes = Writes::new();

/// To be called after this process committed a change to rows a cached answer shows.
pub fn user_data_written() {
    WRITES.bump();
}

/// What an answer was made from, for the domain that made it (the state layer cannot name
/// domain types, so it keeps it type-erased).
type Source = Arc<dyn Any + Send + Sync>;

struct Entry {
    body: Bytes,
    source: Source,
    /// What had happened when it was read.
    read: Ticket,
    until: Instant,
}

pub struct UserViews {
    entries: Mutex<HashMap<Uuid, Entry>>,
    watch: Watch,
}

impl Default for UserViews {
    fn default() -> Self {
        UserViews { entries: Mutex::default(), watch: Watch::new(&WRITES) }
    }
}

/// A JSON answer as cached (or just read and remembered).
pub struct CachedJson(pub Bytes);

impl IntoResponse for CachedJson {
    fn into_response(self) -> Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}

impl UserViews {
    /// The user's answer: the cached one when it may be trusted, else what `read` (not started
    /// yet: the ticket is taken first) returns, serialised and remembered — until the moment it
    /// gives, if the answer stops being true sooner than `FRESH_FOR`.
    pub async fn answer<T: Serialize>(&self, user_id: Uuid, read: impl Future<Output = AppResult<(T, Option<Instant>)>>) -> AppResult<CachedJson> {
        let (body, ()) = self
            .view(user_id, async {
                let (value, until) = read.await?;
                Ok((value, until, ()))
            })
            .await?;
        Ok(CachedJson(body))
    }

    /// Like `answer`, and also what the answer was made from (`S`, returned by `read` and kept
    /// with it).
    pub async fn view<T: Serialize, S: Clone + Send + Sync + 'static>(
        &self,
        user_id: Uuid,
        read: impl Future<Output = AppResult<(T, Option<Instant>, S)>>,
    ) -> AppResult<(Bytes, S)> {
        if let Some((body, source)) = self.entry(user_id)
            && let Some(source) = source.downcast_ref::<S>()
        {
            return Ok((body, source.clone()));
        }
        let ticket = self.ticket();
        let (value, until, source) = read.await?;
        let body = Bytes::from(serde_json::to_vec(&value).map_err(anyhow::Error::from)?);
        self.put_view(user_id, ticket, body.clone(), Arc::new(source.clone()), until);
        Ok((body, source))
    }

    /// The user's answer as JSON, if one cached may be trusted now.
    pub fn get(&self, user_id: Uuid) -> Option<Bytes> {
        self.entry(user_id).map(|(body, _)| body)
    }

    fn entry(&self, user_id: Uuid) -> Option<(Bytes, Source)> {
        if !self.watch.is_live() {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = entries.get(&user_id)?;
        let fresh = self.watch.unwritten_since(entry.read) && Instant::now() < entry.until;
        fresh.then(|| (entry.body.clone(), entry.source.clone()))
    }

    /// Taken before reading an answer from the database.
    pub fn ticket(&self) -> Ticket {
        self.watch.ticket()
    }

    /// Remembers an answer read after `ticket` was taken, unless something changed meanwhile;
    /// for `FRESH_FOR`, or less if it stops being true sooner (`until`, e.g. a plan's expiry).
    pub fn put(&self, user_id: Uuid, ticket: Ticket, body: Bytes, until: Option<Instant>) {
        self.put_view(user_id, ticket, body, Arc::new(()), until);
    }

    fn put_view(&self, user_id: Uuid, ticket: Ticket, body: Bytes, source: Source, until: Option<Instant>) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.watch.may_keep(ticket) {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.clear();
        }
        let fresh_until = Instant::now() + FRESH_FOR;
        entries.insert(user_id, Entry { body, source, read: ticket, until: until.map_or(fresh_until, |at| at.min(fresh_until)) });
    }

    /// A notification: the rows behind the user's answer changed somewhere.
    pub fn forget(&self, user_id: Uuid) {
        self.watch.notified();
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).remove(&user_id);
    }

    /// The listener connected (`true`) or lost its connection (`false`): either way what was
    /// cached may be stale now.
    pub fn set_live(&self, live: bool) {
        self.watch.set_live(live);
        self.forget_all();
    }

    pub fn forget_all(&self) {
        self.watch.notified();
        self.entries.lock().unwrap_or_else(PoisonError::into_inner).clear();
    }
}

/// Keeps `views` honest for as long as the server runs: listens on `channel`, whose
/// notifications carry the id of the user whose answer changed.
pub fn follow(views: &Arc<UserViews>, listeners: &mut Listeners, channel: &'static str) {
    let (live, changed) = (views.clone(), views.clone());
    listeners.on(
        channel,
        move |on| live.set_live(on),
        move |payload| match payload.parse::<Uuid>() {
            Ok(user_id) => changed.forget(user_id),
            // Not a user's id (nothing else is sent on these channels): trust nothing cached.
            Err(_) => changed.forget_all(),
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> UserViews {
        let lists = UserViews::default();
        lists.set_live(true);
        lists
    }

    #[test]
    fn nothing_is_cached_without_the_listener() {
        let lists = UserViews::default();
        let user = Uuid::new_v4();
        lists.put(user, lists.ticket(), Bytes::from_static(b"[]"), None);
        assert_eq!(lists.get(user), None);
        let lists = live();
        lists.put(user, lists.ticket(), Bytes::from_static(b"[]"), None);
        assert_eq!(lists.get(user).as_deref(), Some(&b"[]"[..]));
        lists.set_live(false);
        assert_eq!(lists.get(user), None, "a lost listener empties and disables the cache");
    }

    #[test]
    fn a_notification_forgets_the_users_list_and_refuses_a_list_read_before_it() {
        let lists = live();
        let (user, other) = (Uuid::new_v4(), Uuid::new_v4());
        lists.put(user, lists.ticket(), Bytes::from_static(b"[1]"), None);
        lists.put(other, lists.ticket(), Bytes::from_static(b"[2]"), None);
        let ticket = lists.ticket();
        lists.forget(user);
        assert_eq!(lists.get(user), None);
        assert!(lists.get(other).is_some(), "other users' lists stay");
        lists.put(user, ticket, Bytes::from_static(b"[stale]"), None);
        assert_eq!(lists.get(user), None, "read while the change was notified: not kept");
    }

    #[test]
    fn a_write_by_this_process_makes_every_cached_answer_stale_at_once() {
        let lists = live();
        let user = Uuid::new_v4();
        lists.put(user, lists.ticket(), Bytes::from_static(b"[1]"), None);
        let ticket = lists.ticket();
        user_data_written();
        assert_eq!(lists.get(user), None);
        lists.put(user, ticket, Bytes::from_static(b"[stale]"), None);
        assert_eq!(lists.get(user), None, "read before the write committed: not kept");
        lists.put(user, lists.ticket(), Bytes::from_static(b"[2]"), None);
        assert_eq!(lists.get(user).as_deref(), Some(&b"[2]"[..]));
    }

    #[test]
    fn an_answer_is_not_served_past_the_moment_it_stops_being_true() {
        let views = UserViews::default();
        views.set_live(true);
        let user = Uuid::new_v4();
        views.put(user, views.ticket(), Bytes::from_static(b"{}"), Some(Instant::now()));
        assert_eq!(views.get(user), None, "already past its `until`");
        views.put(user, views.ticket(), Bytes::from_static(b"{}"), Some(Instant::now() + Duration::from_secs(60)));
        assert!(views.get(user).is_some());
    }
}
