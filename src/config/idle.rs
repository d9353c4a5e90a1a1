//! Flags and settings of the idle policy, wake on use and the warm pool: what an instance
//! costs while nobody uses it, and how fast it is back.

use std::time::Duration;

use clap::Args;

/// Flags about idle instances.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Pause an instance (its processes frozen, memory kept) after this long without activity;
    /// plans may say otherwise. `0`: never. Seconds, or with an s/m/h/d suffix.
    #[arg(long, env = "OCAAS_IDLE_PAUSE_AFTER", default_value = "15m", value_parser = parse_duration)]
    pub idle_pause_after: Duration,
    /// Stop an instance (its memory freed, storage kept) after this long without activity.
    /// `0`: never.
    #[arg(long, env = "OCAAS_IDLE_STOP_AFTER", default_value = "24h", value_parser = parse_duration)]
    pub idle_stop_after: Duration,
    /// How often idle instances are looked for.
    #[arg(long, env = "OCAAS_IDLE_CHECK", default_value = "30s", value_parser = parse_positive_duration)]
    pub idle_check: Duration,
    /// Instances a user may pin awake (`keep_awake`) when their plan does not say.
    #[arg(long, env = "OCAAS_KEEP_AWAKE_MAX", default_value_t = 1)]
    pub keep_awake_max: u32,
    /// Calls on a paused instance resume it, and chat and the websockets start a stopped one;
    /// `false`: they answer 409 and the user resumes or starts it.
    #[arg(long, env = "OCAAS_WAKE_ON_USE", default_value_t = true, action = clap::ArgAction::Set)]
    pub wake_on_use: bool,
    /// Sandboxes kept started and ready for the next create, owned by nobody. They count
    /// against `OCAAS_MAX_INSTANCES`.
    #[arg(long, env = "OCAAS_WARM_POOL", default_value_t = 0)]
    pub warm_pool: u32,
    /// An instance whose agent has a messaging channel connected (Telegram, Discord, Slack,
    /// WhatsApp: they listen on a socket) is not paused or stopped by the idle policy; `false`:
    /// channels go deaf when it pauses.
    #[arg(long, env = "OCAAS_IDLE_CHANNELS_AWAKE", default_value_t = true, action = clap::ArgAction::Set)]
    pub idle_channels_awake: bool,
    /// A paused instance is resumed this long before its agent's next schedule runs, and left
    /// awake until two minutes after a run.
    #[arg(long, env = "OCAAS_SCHEDULE_WAKE_LEAD", default_value = "45s", value_parser = parse_positive_duration)]
    pub schedule_wake_lead: Duration,
}

/// The idle policy and its neighbours, as handlers and background tasks read them.
#[derive(Debug, Clone, Copy)]
pub struct IdleSettings {
    /// Zero: never.
    pub pause_after: Duration,
    /// Zero: never.
    pub stop_after: Duration,
    pub check_interval: Duration,
    pub keep_awake_max: u32,
    pub wake_on_use: bool,
    pub warm_pool: u32,
    pub channels_awake: bool,
    pub schedule_lead: Duration,
}

impl From<&IdleArgs> for IdleSettings {
    fn from(args: &IdleArgs) -> Self {
        IdleSettings {
            pause_after: args.idle_pause_after,
            stop_after: args.idle_stop_after,
            check_interval: args.idle_check,
            keep_awake_max: args.keep_awake_max,
            wake_on_use: args.wake_on_use,
            warm_pool: args.warm_pool,
            channels_awake: args.idle_channels_awake,
            schedule_lead: args.schedule_wake_lead,
        }
    }
}

/// `90`, `90s`, `15m`, `24h`, `7d`; `0` is allowed (it turns a policy off).
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim().to_ascii_lowercase();
    let bad = || format!("`{raw}` is not a duration (use e.g. 90s, 15m, 24h or 7d)");
    let (digits, unit) = raw.split_at(raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len()));
    let unit_secs: u64 = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    digits.parse::<u64>().ok().and_then(|n| n.checked_mul(unit_secs)).map(Duration::from_secs).ok_or_else(bad)
}

fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    parse_duration(raw).and_then(|d| if d.is_zero() { Err(format!("`{raw}` must be longer than 0")) } else { Ok(d) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_zero_turns_off() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5w").is_err());
        assert!(parse_positive_duration("0").is_err());
    }
}
