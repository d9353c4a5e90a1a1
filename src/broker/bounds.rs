//! What one sandbox, and all of them together, may make the broker spend. Everything a
//! gateway sends is tenant-controlled, so: calls at once per instance (`PER_INSTANCE`), request
//! bytes being held at once for all instances (`BODY_BUDGET`, weighed by each body's declared
//! or largest size), a body that must keep arriving (`inflight::deadline`), and the request
//! rewritten without building a JSON tree (`rewrite`): only the top-level keys the broker
//! changes are touched, the rest is copied as the bytes it was.

use std::collections::BTreeMap;

use serde_json::value::RawValue;
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use crate::state::{Counts, Held};

/// Model calls one instance may have in flight (until the provider's answer head).
pub const PER_INSTANCE: usize = 8;
/// Request bytes all broker calls may hold at once, in KiB.
const BODY_BUDGET_KIB: u32 = 96 << 10;
/// How long a body may take before it must arrive at the minimum rate.
pub const BODY_GRACE: std::time::Duration = std::time::Duration::from_secs(30);

pub struct Bounds {
    per_instance: Counts<Uuid>,
    body_budget: Semaphore,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { per_instance: Counts::default(), body_budget: Semaphore::new(BODY_BUDGET_KIB as usize) }
    }
}

/// Why a call was not taken.
pub enum Refusal {
    InstanceBusy,
    BrokerBusy,
}

/// What a call holds while it runs.
pub struct Admitted<'a> {
    _slot: Held<Uuid>,
    _bytes: SemaphorePermit<'a>,
}

impl Bounds {
    /// Admits a call from `instance` whose body is at most `size` bytes.
    pub fn admit(&self, instance: Uuid, size: usize) -> Result<Admitted<'_>, Refusal> {
        let slot = self.per_instance.try_take(instance, PER_INSTANCE).ok_or(Refusal::InstanceBusy)?;
        let kib = u32::try_from(size.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let bytes = self.body_budget.try_acquire_many(kib).map_err(|_| Refusal::BrokerBusy)?;
        Ok(Admitted { _slot: slot, _bytes: bytes })
    }
}

/// The request's top-level keys, each value as the raw JSON text it was sent as.
pub type Fields<'a> = BTreeMap<String, &'a RawValue>;

/// The top-level object of a request body, without parsing its values; `None` if it is not one.
pub fn fields(raw: &[u8]) -> Option<Fields<'_>> {
    serde_json::from_slice(raw).ok()
}

/// Whether the request asks for a stream (`"stream": true`).
pub fn streaming(fields: &Fields<'_>) -> bool {
    fields.get("stream").is_some_and(|v| v.get() == "true")
}

/// Completion tokens a call is assumed to use when it does not say (`max_tokens`).
const DEFAULT_COMPLETION_TOKENS: i64 = 4096;

/// Tokens to reserve for a call: its prompt at about four bytes a token, plus the completion
/// it allows itself (`max_completion_tokens` or `max_tokens`) or a default.
pub fn tokens_wanted(fields: &Fields<'_>, request_bytes: usize) -> i64 {
    let completion = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|key| fields.get(*key).and_then(|v| v.get().parse::<i64>().ok()))
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_COMPLETION_TOKENS);
    i64::try_from(request_bytes / 4).unwrap_or(i64::MAX).saturating_add(completion)
}

/// The request's model name, if it is a string.
pub fn model(fields: &Fields<'_>) -> Option<String> {
    fields.get("model").and_then(|v| serde_json::from_str::<String>(v.get()).ok())
}

/// The body to send on: `fields` with `replace`'s keys set to its values.
pub fn rewrite<'a>(mut fields: Fields<'a>, replace: &[(&str, &'a RawValue)]) -> Vec<u8> {
    for (key, value) in replace {
        fields.insert((*key).to_owned(), value);
    }
    serde_json::to_vec(&fields).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_rewritten_key_by_key_and_the_rest_kept_as_sent() {
        let raw = br#"{"model":"theirs","stream":true,"messages":[{"role":"user","content":"h\u00e9 \"x\""}],"n":1.50}"#;
        let fields = fields(raw).unwrap();
        assert!(streaming(&fields));
        assert_eq!(model(&fields).as_deref(), Some("theirs"));
        let ours = serde_json::value::to_raw_value("operator-model").unwrap();
        let out: serde_json::Value = serde_json::from_slice(&rewrite(fields, &[("model", &ours)])).unwrap();
        assert_eq!(out["model"], "operator-model");
        assert_eq!(out["messages"][0]["content"], "hé \"x\"");
        assert!(fields_text(raw).contains("1.50"), "numbers are copied as written");
        assert!(super::fields(b"[1,2]").is_none() && super::fields(b"{\"a\":").is_none());
    }

    fn fields_text(raw: &[u8]) -> String {
        String::from_utf8(rewrite(fields(raw).unwrap(), &[])).unwrap()
    }

    #[test]
    fn an_instance_gets_its_share_and_the_budget_bounds_everyone() {
        let bounds = Bounds::default();
        let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
        let held: Vec<_> = (0..PER_INSTANCE).map(|_| bounds.admit(one, 1024).ok().unwrap()).collect();
        assert!(matches!(bounds.admit(one, 1024), Err(Refusal::InstanceBusy)));
        assert!(bounds.admit(two, 1024).is_ok(), "another instance is not affected");
        assert!(matches!(bounds.admit(two, (BODY_BUDGET_KIB as usize + 1) << 10), Err(Refusal::BrokerBusy)));
        drop(held);
        assert!(bounds.admit(one, 1024).is_ok());
    }
}
