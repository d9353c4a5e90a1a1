//! Per-key rate limits for authentication (GCRA, from `governor`): by client address for
//! logins and registrations, and by account for logins, so neither one address nor many
//! addresses aimed at one account can guess passwords at speed. Over the limit: 429
//! `rate_limited` with `Retry-After`. Keys that have been quiet are forgotten periodically, so
//! the tables stay small however many addresses show up. And `Counts`: how many of
//! something each key holds at once (connections per address, calls per instance, slots per
//! user), each given back when its guard drops.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
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

/// How many of something each key holds; a `Held` guard gives its one back when dropped.
pub struct Counts<K: Hash + Eq> {
    taken: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Hash + Eq> Default for Counts<K> {
    fn default() -> Self {
        Counts { taken: Arc::default() }
    }
}

/// One held count of a key, until dropped.
pub struct Held<K: Hash + Eq> {
    taken: Arc<Mutex<HashMap<K, usize>>>,
    key: Option<K>,
}

impl<K: Hash + Eq> Drop for Held<K> {
    fn drop(&mut self) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(key) = self.key.take()
            && let Some(count) = taken.get_mut(&key)
        {
            *count -= 1;
            if *count == 0 {
                taken.remove(&key);
            }
        }
    }
}

impl<K: Hash + Eq + Clone> Counts<K> {
    /// One more for `key`, unless it holds `max` already.
    pub fn try_take(&self, key: K, max: usize) -> Option<Held<K>> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        let count = taken.entry(key.clone()).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(Held { taken: self.taken.clone(), key: Some(key) })
    }
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
