//! The agent's configuration, safely. Reading is the gateway's `config.get` (secrets redacted
//! by the gateway itself). A patch is a JSON merge patch: refused when it touches a key ocaas
//! manages, checked against the gateway's own schema (`config.schema`) before it is sent, and
//! sent with the version it was made against (`config.patch` with `baseHash`). Before it is
//! applied the file the gateway runs with now is kept, sealed, as the last good configuration;
//! the patch is then on probation (`PROBATION`): a gateway that does not come back ready in
//! that time gets the last good file back and its sandbox restarted (`guard`).

use std::time::Duration;

use chrono::Utc;
use serde_json::{Map, Value, json};

use super::models::{ConfigIssue, GatewayConfig, Rollback};
use super::{Link, repo, rpc};
use crate::error::{AppError, AppResult, ErrorCode};
use crate::instances::repo::InstanceRow;
use crate::runtime::disk::DiskSpec;

/// How long a patched gateway has to be ready again before it is rolled back.
pub const PROBATION: Duration = Duration::from_secs(45);
/// The gateway's configuration file, in the agent's state directory.
pub const FILE: &str = "openclaw.json";
/// The largest configuration ocaas keeps or puts back.
pub const MAX_FILE: u64 = 1 << 20;
/// Keys ocaas writes on every start (the sandbox contract): a patch may not touch them.
const RESERVED: [&[&str]; 4] = [&["gateway", "auth"], &["gateway", "port"], &["gateway", "mode"], &["models", "providers", "operator"]];

/// The configuration as the gateway shows it, with ocaas's probation and rollback facts.
pub async fn get(link: &Link, instance: &InstanceRow) -> AppResult<GatewayConfig> {
    let shown = rpc::call(link, instance, "config.get", json!({})).await?;
    let facts = repo::config_facts(&link.db, instance.id).await?;
    Ok(GatewayConfig {
        config: shown.get("config").cloned().unwrap_or(Value::Null),
        hash: rpc::text(&shown, "hash", 200).unwrap_or_default(),
        valid: shown.get("valid").and_then(Value::as_bool).unwrap_or(false),
        issues: issues(&shown),
        rollback_deadline: facts.as_ref().and_then(|f| f.pending_until),
        last_rollback: facts.and_then(|f| Some(Rollback { at: f.rolled_back_at?, reason: f.rollback_reason.unwrap_or_default() })),
    })
}

fn issues(shown: &Value) -> Vec<ConfigIssue> {
    let list = shown.get("issues").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    list.iter()
        .take(20)
        .map(|i| ConfigIssue { path: rpc::text(i, "path", 200).unwrap_or_default(), message: rpc::text(i, "message", 300).unwrap_or_default() })
        .collect()
}

/// What a patch did.
pub struct Patched {
    pub config: Value,
    pub restart: bool,
}

/// Applies `patch` (see the module header). `if_match`: the version it was made against.
pub async fn patch(link: &Link, disk: &DiskSpec, instance: &InstanceRow, patch: &Value, if_match: Option<&str>) -> AppResult<Patched> {
    let Some(object) = patch.as_object() else {
        return Err(AppError::new(ErrorCode::InvalidRequest, "The body must be a JSON object: a merge patch of openclaw.json."));
    };
    if let Some(path) = reserved(object) {
        return Err(AppError::new(ErrorCode::InvalidConfig, format!("`{path}` is managed by ocaas (the sandbox contract) and cannot be changed.")));
    }
    let current = rpc::call(link, instance, "config.get", json!({})).await?;
    let hash = rpc::text(&current, "hash", 200).unwrap_or_default();
    if if_match.is_some_and(|wanted| wanted.trim_matches('"') != hash) {
        return Err(AppError::new(ErrorCode::ConfigChanged, "The configuration changed since that version; read it again and retry."));
    }
    let mut merged = current.get("config").cloned().unwrap_or_else(|| json!({}));
    merge(&mut merged, patch);
    let schema = rpc::call(link, instance, "config.schema", json!({})).await?;
    check(schema.get("schema").unwrap_or(&Value::Null), &merged)?;
    // The file the gateway runs with now is the one to come back to.
    keep_last_good(link, disk, instance).await?;
    let raw = serde_json::to_string(patch).map_err(|e| AppError::Internal(e.into()))?;
    repo::start_probation(&link.db, instance.id, PROBATION).await?;
    let applied = rpc::call(link, instance, "config.patch", json!({"raw": raw, "baseHash": hash})).await;
    let applied = match applied {
        Ok(applied) => applied,
        Err(error) => {
            // Refused: nothing changed, nothing to watch.
            repo::end_probation(&link.db, instance.id).await?;
            return Err(error);
        }
    };
    let restart = applied.pointer("/restart/scheduled").and_then(Value::as_bool).unwrap_or(false);
    Ok(Patched { config: applied.get("config").cloned().unwrap_or(merged), restart })
}

/// The first reserved key `patch` touches, dotted.
fn reserved(patch: &Map<String, Value>) -> Option<String> {
    RESERVED.iter().find_map(|path| {
        let mut at = patch;
        for (depth, key) in path.iter().enumerate() {
            match at.get(*key) {
                None => return None,
                Some(Value::Object(next)) if depth + 1 < path.len() => at = next,
                // A whole branch replaced or removed (`null`) touches the key too.
                Some(_) => return Some(path[..=depth].join(".")),
            }
        }
        Some(path.join("."))
    })
}

/// RFC 7386 JSON merge patch.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let object = target.as_object_mut().expect("made an object");
    for (key, value) in changes {
        if value.is_null() {
            object.remove(key);
        } else {
            merge(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// Checks `config` against the gateway's schema: 422 `invalid_config` naming what is wrong.
fn check(schema: &Value, config: &Value) -> AppResult<()> {
    if !schema.is_object() {
        return Err(AppError::new(ErrorCode::GatewayRejected, "The gateway did not send its configuration schema."));
    }
    // The schema is the gateway's: no remote references are resolved (the crate's resolvers are off).
    let validator = jsonschema::validator_for(schema).map_err(|e| {
        AppError::new(ErrorCode::GatewayRejected, format!("The gateway's configuration schema is unusable: {}", rpc::clean(&e.to_string())))
    })?;
    let problems: Vec<String> = validator
        .iter_errors(config)
        .take(5)
        .map(|e| format!("{}: {}", path_of(&e.instance_path().to_string()), rpc::clean(&e.to_string())))
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    Err(AppError::new(ErrorCode::InvalidConfig, format!("The gateway's schema rejects the result: {}", problems.join("; "))))
}

fn path_of(pointer: &str) -> String {
    if pointer.is_empty() { "<root>".into() } else { pointer.trim_start_matches('/').replace('/', ".") }
}

/// Keeps the file the gateway runs with now, sealed (it holds secrets), as the last good one.
pub async fn keep_last_good(link: &Link, disk: &DiskSpec, instance: &InstanceRow) -> AppResult<()> {
    let dir = disk.state();
    let read = tokio::task::spawn_blocking(move || crate::runtime::fsys::read_small_beneath(&dir, FILE, MAX_FILE))
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
    match read {
        Ok(content) if serde_json::from_slice::<Map<String, Value>>(&content).is_ok() => {
            repo::set_last_good(&link.db, instance.id, &link.key.seal(&content), Utc::now()).await?;
            Ok(())
        }
        Ok(_) => Err(AppError::new(ErrorCode::InvalidConfig, "The configuration file on the instance is not a JSON object; fix it first.")),
        Err(error) => {
            tracing::warn!(instance = %instance.id, %error, "config: the running configuration could not be kept");
            Err(AppError::new(ErrorCode::InvalidConfig, "The configuration file on the instance cannot be read safely (a link, or too large)."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_keys_are_found_however_they_are_touched() {
        let find = |v: Value| reserved(v.as_object().unwrap());
        assert_eq!(find(json!({"gateway": {"bind": "lan"}})), None);
        assert_eq!(find(json!({"gateway": {"auth": {"token": "x"}}})).as_deref(), Some("gateway.auth"));
        assert_eq!(find(json!({"gateway": null})).as_deref(), Some("gateway"));
        assert_eq!(find(json!({"models": {"providers": {"operator": null}}})).as_deref(), Some("models.providers.operator"));
        assert_eq!(find(json!({"models": {"providers": {"mine": {}}}})), None);
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge(&mut doc, &json!({"a": {"b": null, "e": 3}, "d": [2], "f": "x"}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": 3}, "d": [2], "f": "x"}));
    }

    #[test]
    fn the_schema_check_names_what_is_wrong() {
        let schema = json!({"type": "object", "additionalProperties": false, "properties": {"a": {"type": "integer"}}});
        assert!(check(&schema, &json!({"a": 1})).is_ok());
        let refused = check(&schema, &json!({"a": 1, "bogus": true})).unwrap_err().into_message();
        assert!(refused.contains("bogus"), "{refused}");
    }
}
