//! Schedules over the gateway's `cron.*`: a schedule is a gateway cron job whose payload is an
//! agent turn (`message`) in the agent's main session, repeating (`cron`, five fields, UTC) or
//! once (`at`, RFC 3339). Its runs are the gateway's run log (`cron.runs`); each run's turn is
//! imported into chat history like any turn made on the gateway. After every change the
//! instance's next wake-up is read again, so a paused instance is woken in time.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::models::{Schedule, ScheduleInput, ScheduleRun};
use super::{Link, notices, rpc};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::repo::InstanceRow;

const MAX_NAME: usize = 200;
const MAX_MESSAGE: usize = 16 << 10;
const MAX_SCHEDULES: usize = 500;

pub async fn list(link: &Link, instance: &InstanceRow) -> AppResult<Vec<Schedule>> {
    let listed = rpc::call(link, instance, "cron.list", json!({})).await?;
    let jobs = listed.get("jobs").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Ok(jobs.iter().take(MAX_SCHEDULES).filter_map(schedule).collect())
}

pub async fn find(link: &Link, instance: &InstanceRow, id: &str) -> AppResult<Schedule> {
    list(link, instance).await?.into_iter().find(|s| s.id == id).ok_or_else(not_found)
}

pub fn not_found() -> AppError {
    AppError::new(ErrorCode::ScheduleNotFound, "The agent has no schedule with that id.")
}

/// A gateway job as a schedule; `None` for jobs that are not agent turns on cron/at times.
fn schedule(job: &Value) -> Option<Schedule> {
    let when = job.get("schedule")?;
    let (cron, at) = match when.get("kind")?.as_str()? {
        "cron" => (Some(rpc::text(when, "expr", 200)?), None),
        "at" => (None, Some(rpc::text(when, "at", 64)?)),
        _ => return None,
    };
    let state = job.get("state").unwrap_or(&Value::Null);
    Some(Schedule {
        id: rpc::text(job, "id", 128)?,
        name: rpc::text(job, "name", MAX_NAME).unwrap_or_default(),
        cron,
        at,
        message: job.get("payload").and_then(|p| rpc::text(p, "message", MAX_MESSAGE)).unwrap_or_default(),
        enabled: job.get("enabled").and_then(Value::as_bool).unwrap_or(true),
        next_run_at: rpc::time_ms(state, "nextRunAtMs"),
        last_run_at: rpc::time_ms(state, "lastRunAtMs"),
        last_status: rpc::text(state, "lastRunStatus", 16).or_else(|| rpc::text(state, "lastStatus", 16)),
    })
}

/// The gateway's fields for `input`; `creating` requires a name, a message and a time.
fn job_fields(input: &ScheduleInput, creating: bool) -> AppResult<Map<String, Value>> {
    let bad = |m: &str| AppError::new(ErrorCode::InvalidRequest, m.to_owned());
    let mut job = Map::new();
    if let Some(name) = &input.name {
        if name.trim().is_empty() || name.chars().count() > MAX_NAME {
            return Err(bad("`name` must have 1 to 200 characters."));
        }
        job.insert("name".into(), json!(name.trim()));
    }
    match (&input.cron, &input.at) {
        (Some(_), Some(_)) => return Err(bad("Give `cron` or `at`, not both.")),
        (Some(expr), None) => {
            if expr.split_whitespace().count() != 5 || expr.len() > 200 {
                return Err(bad("`cron` must be a five-field cron expression (minute hour day month weekday, UTC)."));
            }
            job.insert("schedule".into(), json!({"kind": "cron", "expr": expr, "tz": "UTC"}));
        }
        (None, Some(at)) => {
            let at: DateTime<Utc> = DateTime::parse_from_rfc3339(at).map_err(|_| bad("`at` must be an RFC 3339 time."))?.into();
            job.insert("schedule".into(), json!({"kind": "at", "at": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}));
        }
        (None, None) if creating => return Err(bad("A schedule needs `cron` or `at`.")),
        (None, None) => {}
    }
    if let Some(message) = &input.message {
        if message.is_empty() || message.len() > MAX_MESSAGE {
            return Err(bad("`message` must have 1 byte to 16 KiB."));
        }
        job.insert("payload".into(), json!({"kind": "agentTurn", "message": message}));
    }
    if let Some(enabled) = input.enabled {
        job.insert("enabled".into(), json!(enabled));
    }
    if creating && !(job.contains_key("name") && job.contains_key("payload")) {
        return Err(bad("A schedule needs `name` and `message`."));
    }
    Ok(job)
}

pub async fn create(link: &Link, instance: &InstanceRow, input: &ScheduleInput) -> AppResult<Schedule> {
    let mut job = job_fields(input, true)?;
    job.insert("sessionTarget".into(), json!("main"));
    job.insert("wakeMode".into(), json!("now"));
    let made = rpc::call(link, instance, "cron.add", Value::Object(job)).await?;
    moved(link, instance).await;
    schedule(&made).ok_or_else(|| AppError::new(ErrorCode::GatewayRejected, "The gateway answered with an unreadable schedule."))
}

pub async fn update(link: &Link, instance: &InstanceRow, id: &str, input: &ScheduleInput) -> AppResult<Schedule> {
    find(link, instance, id).await?;
    let patch = job_fields(input, false)?;
    let changed = rpc::call(link, instance, "cron.update", json!({"id": id, "patch": patch})).await?;
    moved(link, instance).await;
    schedule(&changed).ok_or_else(|| AppError::new(ErrorCode::GatewayRejected, "The gateway answered with an unreadable schedule."))
}

pub async fn remove(link: &Link, instance: &InstanceRow, id: &str) -> AppResult<()> {
    find(link, instance, id).await?;
    rpc::call(link, instance, "cron.remove", json!({"id": id})).await?;
    moved(link, instance).await;
    Ok(())
}

pub async fn run_now(link: &Link, instance: &InstanceRow, id: &str) -> AppResult<String> {
    find(link, instance, id).await?;
    let started = rpc::call(link, instance, "cron.run", json!({"id": id, "mode": "force"})).await?;
    Ok(rpc::text(&started, "runId", 128).unwrap_or_default())
}

pub async fn runs(link: &Link, instance: &InstanceRow, id: &str) -> AppResult<Vec<ScheduleRun>> {
    let log = rpc::call(link, instance, "cron.runs", json!({"id": id, "limit": 50})).await?;
    let entries = log.get("entries").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    Ok(entries
        .iter()
        .take(50)
        .filter(|e| e.get("jobId").and_then(Value::as_str) == Some(id))
        .map(|e| ScheduleRun {
            schedule_id: id.to_owned(),
            run_id: rpc::text(e, "runId", 128),
            status: if e.get("status").and_then(Value::as_str) == Some("ok") { "ok".into() } else { "error".into() },
            started_at: rpc::time_ms(e, "runAtMs").unwrap_or_default(),
            duration_ms: e.get("durationMs").and_then(Value::as_i64).unwrap_or(0).clamp(0, i64::from(i32::MAX)),
            summary: rpc::text(e, "summary", 500).or_else(|| rpc::text(e, "error", 500)).unwrap_or_default(),
        })
        .collect())
}

/// Records the instance's next wake-up after a change (best effort: the periodic read repairs).
async fn moved(link: &Link, instance: &InstanceRow) {
    let _ = notices::record_next_wake(link, instance).await;
}
