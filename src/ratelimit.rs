//! Per-key rate limits for authentication (GCRA, from `governor`): by client address for
//! logins and registrations, and by account for logins, so neither one address nor many
//! addresses aimed at one account can guess passwords at speed. Over the limit: 429
//! `rate_limited` with `Retry-After`. Keys that have been quiet are forgotten periodically, so
//! the tables stay small however many addresses show up.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::{AppError, AppResult, ErrorCode};

pub struct AuthLimits {
    per_address: DefaultKeyedRateLimiter<String>,
    per_account: DefaultKeyedRateLimiter<String>,
}

impl AuthLimits {
    /// `per_address` attempts a minute from one client address (logins and registrations
    /// together) and `per_account` login attempts a minute against one email.
    pub fn new(per_address: NonZeroU32, per_account: NonZeroU32) -> Self {
        AuthLimits {
            per_address: RateLimiter::keyed(Quota::per_minute(per_address)),
            per_account: RateLimiter::keyed(Quota::per_minute(per_account)),
        }
    }

    /// Counts one attempt from `address` (and on `account`, for logins); refuses it when
    /// either is over its limit.
    pub fn check(&self, address: Option<&str>, account: Option<&str>) -> AppResult<()> {
        if let Some(address) = address {
            check(&self.per_address, address.to_owned(), "from your address")?;
        }
        if let Some(account) = account {
            // Emails are at most 254 characters; whatever a client sends, a key stays small.
            let key: String = account.trim().chars().take(254).collect::<String>().to_lowercase();
            check(&self.per_account, key, "for this account")?;
        }
        Ok(())
    }

    /// Forgets keys whose limits have fully recovered.
    pub fn forget_quiet_keys(&self) {
        self.per_address.retain_recent();
        self.per_account.retain_recent();
    }
}

fn check(limiter: &DefaultKeyedRateLimiter<String>, key: String, whose: &str) -> AppResult<()> {
    limiter.check_key(&key).map_err(|not_until| {
        let wait: Duration = not_until.wait_time_from(DefaultClock::default().now());
        let secs = wait.as_secs() + 1;
        AppError::new(ErrorCode::RateLimited, format!("Too many sign-in attempts {whose}; try again in {secs} s.")).with_retry_after(secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_apply_per_address_and_per_account() {
        let limits = AuthLimits::new(NonZeroU32::new(3).unwrap(), NonZeroU32::new(2).unwrap());
        assert!(limits.check(Some("10.0.0.1"), Some("a@example.com")).is_ok());
        assert!(limits.check(Some("10.0.0.2"), Some("A@example.com")).is_ok());
        // The account is over its limit whatever the address.
        assert!(limits.check(Some("10.0.0.3"), Some("a@example.com")).is_err());
        assert!(limits.check(Some("10.0.0.1"), None).is_ok());
        assert!(limits.check(Some("10.0.0.1"), None).is_ok());
        // The fourth attempt from 10.0.0.1 this minute.
        let refused = limits.check(Some("10.0.0.1"), Some("b@example.com")).unwrap_err();
        assert!(refused.to_string().contains("rate_limited"), "{refused}");
    }
}
