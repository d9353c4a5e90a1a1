//! `ocaas admin audit`: everyone's audit events (or one user's), oldest first, one line each:
//! time, action, actor, client address, target.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::Args;
use sqlx::PgPool;

use crate::audit::{self, AuditAction, Event};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::timefmt::rfc3339_millis;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only events of the user with this email (also failed logins with it).
    #[arg(long)]
    email: Option<String>,
    /// From this time on: an RFC 3339 time, a date (`2026-11-01`), or an age (`7d`, `12h`).
    /// Default: the last 7 days.
    #[arg(long)]
    since: Option<String>,
    /// At most this many lines.
    #[arg(long, default_value_t = 1000)]
    limit: i64,
}

pub async fn list(db: &PgPool, args: &AuditArgs) -> AppResult<String> {
    let since = match &args.since {
        Some(raw) => parse_since(raw, Utc::now())?,
        None => Utc::now() - Duration::days(7),
    };
    let rows = audit::repo::search(db, args.email.as_deref(), since, args.limit.clamp(1, 100_000)).await?;
    let lines: Vec<String> = rows
        .into_iter()
        .map(|r| {
            let dash = || "-".to_owned();
            let actor = r.actor_email.unwrap_or_else(|| if r.action.as_str().starts_with("admin_") { "admin".into() } else { dash() });
            format!("{}  {}  {}  {}  {}", rfc3339_millis(&r.at), r.action, actor, r.client_addr.unwrap_or_else(dash), r.target.unwrap_or_else(dash))
        })
        .collect();
    Ok(if lines.is_empty() { "no events".into() } else { lines.join("\n") })
}

/// Records an admin command's action on `target`.
pub async fn admin_action(db: &PgPool, action: AuditAction, target: String) -> AppResult<()> {
    Ok(audit::record(db, Event { action, actor: None, email: None, client: None, target: Some(target), key: None }).await?)
}

fn parse_since(raw: &str, now: DateTime<Utc>) -> AppResult<DateTime<Utc>> {
    let raw = raw.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(raw) {
        return Ok(at.with_timezone(&Utc));
    }
    if let Ok(date) = NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        return Ok(date.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc());
    }
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let age = number.parse::<i64>().ok().filter(|n| (0..=36_500).contains(n)).and_then(|n| match unit {
        "d" => Some(Duration::days(n)),
        "h" => Some(Duration::hours(n)),
        "m" => Some(Duration::minutes(n)),
        _ => None,
    });
    age.map(|age| now - age).ok_or_else(|| {
        AppError::new(ErrorCode::InvalidRequest, format!("`--since {raw}`: use an RFC 3339 time, a date (2026-11-01) or an age (7d, 12h)."))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_times_dates_and_ages() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(parse_since("7d", now).unwrap(), now - Duration::days(7));
        assert_eq!(parse_since("12h", now).unwrap(), now - Duration::hours(12));
        assert_eq!(rfc3339_millis(&parse_since("2026-11-01", now).unwrap()), "2026-11-01T00:00:00.000Z");
        assert_eq!(parse_since("2026-11-20T10:00:00Z", now).unwrap().to_rfc3339(), "2026-11-20T10:00:00+00:00");
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("9999999d", now).is_err());
    }
}
