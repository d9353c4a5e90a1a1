//! The instance lifecycle state machine: every status change is an `Op`, and `apply` is the one
//! guarded update that makes it (`UPDATE … WHERE status = ANY(from)`), so two concurrent calls
//! on one instance cannot both win: the loser sees `None` and answers 409 `invalid_state`.
//! The engine work an op calls for runs after the update, under the instance's lock in
//! `Drivers`, so it is never interleaved with another op's engine work. (A warm pool sandbox
//! is claimed by its own query, `pool::repo::claim`, which picks the row: `pooled → ready`.)
//!
//! ```text
//!  provisioning ──Provisioned──▶ ready ◀──Resume/Wake── paused ◀──Pause/IdlePause── ready
//!       │        └─Warmed─▶ pooled ─(claim)─▶ ready
//!  ready/error/paused ──Reboot──▶ rebooting ──Rebooted──▶ ready
//!  ready/error/paused/provisioning/rebooting ──Shutdown/IdleStop──▶ stopping ──Stopped──▶ stopped
//!  stopped/error ──Start/Wake──▶ provisioning
//!  any but deleting ──Delete──▶ deleting ──(row removed)
//!  ready/paused/stopped/error ──Restore──▶ restoring ──Restored──▶ ready
//!  ready/paused/stopped/error ──Upgrade──▶ upgrading ──Upgraded──▶ ready
//!                                         upgrading ──RollBack──▶ rolling_back ──RolledBack──▶ ready
//!  provisioning/rebooting/stopping/restoring/upgrading/rolling_back ──Failed──▶ error
//!  ready/paused/pooled ──Died──▶ error
//! ```

use sqlx::PgPool;
use uuid::Uuid;

use super::models::{InstanceStatus, StopReason};
use super::repo::{self, Change, Guard, InstanceRow};
use crate::error::{AppError, ErrorCode};

use InstanceStatus::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The gateway answered: a user's instance is `ready`…
    Provisioned,
    /// …a pool sandbox is `pooled`.
    Warmed,
    Rebooted,
    Stopped,
    /// The driver working on the instance in this status failed.
    Failed(InstanceStatus),
    /// The engine says the sandbox of a running or paused instance is gone or dead.
    Died,
    Reboot,
    Shutdown,
    Start,
    Pause,
    Resume,
    /// The idle policy's pause and stop.
    IdlePause,
    IdleStop,
    /// A call on a paused instance resumes it (`paused → ready`).
    WakePaused,
    /// Chat or a websocket on a stopped instance starts it (`stopped → provisioning`).
    WakeStopped,
    Delete,
    /// Put a snapshot back (`Extra::pending_snapshot`), and done.
    Restore,
    Restored,
    /// Move to another image (`Extra::image`, the old one in `upgrade_from`), done, or going
    /// back to the old image and the snapshot taken before.
    Upgrade,
    Upgraded,
    RollBack,
    RolledBack,
}

impl Op {
    /// The statuses the op moves from, and the one it moves to.
    pub fn rule(self) -> (&'static [InstanceStatus], InstanceStatus) {
        match self {
            Op::Provisioned => (&[Provisioning], Ready),
            Op::Warmed => (&[Provisioning], Pooled),
            Op::Rebooted => (&[Rebooting], Ready),
            Op::Stopped => (&[Stopping], Stopped),
            Op::Failed(Provisioning) => (&[Provisioning], Error),
            Op::Failed(Rebooting) => (&[Rebooting], Error),
            Op::Failed(Stopping) => (&[Stopping], Error),
            Op::Failed(Restoring) => (&[Restoring], Error),
            Op::Failed(Upgrading) => (&[Upgrading], Error),
            Op::Failed(RollingBack) => (&[RollingBack], Error),
            Op::Failed(_) => (&[], Error),
            Op::Died => (&[Ready, Paused, Pooled], Error),
            Op::Reboot => (&[Ready, Error, Paused], Rebooting),
            Op::Shutdown => (&[Ready, Error, Provisioning, Rebooting, Paused], Stopping),
            Op::Start | Op::WakeStopped => (&[Stopped, Error], Provisioning),
            Op::Pause | Op::IdlePause => (&[Ready], Paused),
            Op::Resume | Op::WakePaused => (&[Paused], Ready),
            Op::IdleStop => (&[Ready, Paused], Stopping),
            Op::Delete => (&[Provisioning, Ready, Rebooting, Stopping, Stopped, Error, Paused, Pooled, Restoring, Upgrading, RollingBack], Deleting),
            Op::Restore => (&[Ready, Paused, Stopped, Error], Restoring),
            Op::Restored => (&[Restoring], Ready),
            Op::Upgrade => (&[Ready, Paused, Stopped, Error], Upgrading),
            Op::Upgraded => (&[Upgrading], Ready),
            Op::RollBack => (&[Upgrading], RollingBack),
            Op::RolledBack => (&[RollingBack], Ready),
        }
    }

    /// What becomes of `stop_reason`: set by the idle policy, carried through `stopping →
    /// stopped` and failures, cleared by everything a user does.
    fn stop_reason(self) -> (Option<StopReason>, bool) {
        match self {
            Op::IdlePause | Op::IdleStop => (Some(StopReason::Idle), false),
            Op::Stopped | Op::Failed(_) => (None, true),
            _ => (None, false),
        }
    }

    /// How the op is named in messages.
    pub fn verb(self) -> &'static str {
        match self {
            Op::Reboot => "reboot",
            Op::Shutdown | Op::IdleStop => "shutdown",
            Op::Start | Op::WakeStopped => "start",
            Op::Pause | Op::IdlePause => "pause",
            Op::Resume | Op::WakePaused => "resume",
            Op::Delete => "delete",
            Op::Restore => "restore",
            Op::Upgrade => "upgrade",
            _ => "this change",
        }
    }
}

/// Makes the op's status change if the instance is in one of its `from` statuses right now;
/// `None` when it is not (another call won the race, or the op does not apply).
pub async fn apply(db: &PgPool, id: Uuid, op: Op) -> sqlx::Result<Option<InstanceRow>> {
    apply_with_error(db, id, op, None).await
}

/// `apply`, only if the row is still what the decision was made on (`repo::Guard`).
pub async fn apply_guarded(db: &PgPool, id: Uuid, op: Op, guard: Guard) -> sqlx::Result<Option<InstanceRow>> {
    apply_with(db, id, op, Extra { guard, ..Extra::default() }).await
}

/// `apply`, recording why the instance is in `error`.
pub async fn apply_with_error(db: &PgPool, id: Uuid, op: Op, last_error: Option<&str>) -> sqlx::Result<Option<InstanceRow>> {
    apply_with(db, id, op, Extra { last_error, ..Extra::default() }).await
}

/// What some ops carry besides the status change.
#[derive(Default)]
pub struct Extra<'a> {
    pub last_error: Option<&'a str>,
    pub pending_snapshot: Option<Uuid>,
    pub image: Option<&'a str>,
    /// What else the row must still be (`repo::Guard`).
    pub guard: Guard,
}

/// `apply` with what the op carries. An op that ends an operation clears the pending snapshot
/// (and an upgrade's bookkeeping); `Restore` sets it (`begin_upgrade` does for `Upgrade`).
pub async fn apply_with(db: &PgPool, id: Uuid, op: Op, extra: Extra<'_>) -> sqlx::Result<Option<InstanceRow>> {
    let (from, to) = op.rule();
    let (stop_reason, keep_reason) = op.stop_reason();
    let last_error = extra.last_error.filter(|_| to == Error || op == Op::RolledBack);
    let mut change = Change { last_error, stop_reason, keep_reason, guard: extra.guard, ..Change::default() };
    match op {
        Op::Restore => change.pending_snapshot = Some(extra.pending_snapshot),
        // `Op::Upgrade` is made by `begin_upgrade`, which also records the old image.
        Op::RollBack => change.image = extra.image,
        Op::Provisioned | Op::Restored => change.pending_snapshot = Some(None),
        Op::Upgraded | Op::RolledBack => {
            change.pending_snapshot = Some(None);
            change.upgrade_from = Some(None);
        }
        _ => {}
    }
    let row = repo::transition(db, id, from, to, &change).await?;
    Ok(row)
}

/// Begins an upgrade from the instance's current image to `to_image` (its old image is kept
/// for a rollback, `snapshot` is the rollback point).
pub async fn begin_upgrade(db: &PgPool, instance: &InstanceRow, to_image: &str, snapshot: Uuid) -> sqlx::Result<Option<InstanceRow>> {
    let (from, to) = Op::Upgrade.rule();
    let change =
        Change { pending_snapshot: Some(Some(snapshot)), image: Some(to_image), upgrade_from: Some(Some(&instance.image)), ..Change::default() };
    repo::transition(db, instance.id, from, to, &change).await
}

/// The instance as stored now, if `op` may start from its status (else 404 or 409). For ops
/// whose engine work begins before the status changes (a snapshot first): call it holding the
/// instance's lock, so the status cannot move in between.
pub async fn allowing(db: &PgPool, id: Uuid, op: Op) -> crate::error::AppResult<InstanceRow> {
    let current = repo::get(db, id).await?.ok_or_else(crate::extract::instance_not_found)?;
    if op.rule().0.contains(&current.status) { Ok(current) } else { Err(refusal(&current, op)) }
}

/// The 409 for an op the instance's status does not allow.
pub fn refusal(instance: &InstanceRow, op: Op) -> AppError {
    let (from, _) = op.rule();
    let allowed: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    AppError::new(ErrorCode::InvalidState, format!("The instance is {}; {} needs it to be {}.", instance.status, op.verb(), allowed.join(" or ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_but_deleting_can_be_deleted_and_nothing_leaves_deleting() {
        let (from, to) = Op::Delete.rule();
        assert_eq!(to, Deleting);
        for status in InstanceStatus::ALL {
            assert_eq!(from.contains(status), *status != Deleting, "{status:?}");
        }
        let ops = [Op::Reboot, Op::Shutdown, Op::Start, Op::Pause, Op::Resume, Op::IdlePause, Op::IdleStop, Op::WakePaused, Op::WakeStopped];
        assert!(ops.iter().all(|op| !op.rule().0.contains(&Deleting)));
    }

    #[test]
    fn only_the_idle_policy_sets_a_stop_reason_and_a_user_op_clears_it() {
        assert_eq!(Op::IdlePause.stop_reason(), (Some(StopReason::Idle), false));
        assert_eq!(Op::IdleStop.stop_reason(), (Some(StopReason::Idle), false));
        assert_eq!(Op::Stopped.stop_reason(), (None, true), "an idle stop stays idle once stopped");
        for op in [Op::Pause, Op::Shutdown, Op::Resume, Op::Start, Op::WakePaused] {
            assert_eq!(op.stop_reason(), (None, false), "{op:?}");
        }
    }

    #[test]
    fn paused_instances_can_be_rebooted_shut_down_and_deleted_but_not_paused_again() {
        for op in [Op::Reboot, Op::Shutdown, Op::Delete, Op::Resume, Op::IdleStop] {
            assert!(op.rule().0.contains(&Paused), "{op:?}");
        }
        assert!(!Op::Pause.rule().0.contains(&Paused));
        assert!(!Op::Start.rule().0.contains(&Paused), "a paused instance resumes, it is not started");
    }
}
