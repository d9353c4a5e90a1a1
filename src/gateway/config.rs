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
use crate::runtime::confined::{self, ConfinedError, Limits};
use crate::runtime::disk::DiskSpec;

/// How long a patched gateway has to be ready again before it is rolled back.
pub const PROBATION: Duration = Duration::from_secs(45);
/// The gateway's configuration file, in the agent's state directory.
pub const FILE: &str = "openclaw.json";
/// The largest configuration ocaas keeps or puts back.
pub const MAX_FILE: u64 = 1 << 20;
/// Keys ocaas writes on every start (the sandbox contract): a patch may not touch them.
const RESERVED: [&[&str]; 5] =
    [&["gateway", "auth"], &["gateway", "port"], &["gateway", "mode"], &["gateway", "http"], &["models", "providers", "operator"]];

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
    if repo::config_facts(&link.db, instance.id).await?.is_some_and(|f| f.pending_until.is_some()) {
        return Err(AppError::new(
            ErrorCode::ConfigOnProbation,
            "The last change is still on probation (up to 45 s); patch again once the gateway is back.",
        ));
    }
    let current = rpc::call(link, instance, "config.get", json!({})).await?;
    let hash = rpc::text(&current, "hash", 200).unwrap_or_default();
    if if_match.is_some_and(|wanted| wanted.trim_matches('"') != hash) {
        return Err(AppError::new(ErrorCode::ConfigChanged, "The configuration changed since that version; read it again and retry."));
    }
    let mut merged = current.get("config").cloned().unwrap_or_else(|| json!({}));
    merge(&mut merged, patch);
    let schema = rpc::call(link, instance, "config.schema", json!({})).await?;
    check(&link.helper, schema.get("schema").unwrap_or(&Value::Null), &merged).await?;
    // The file the gateway runs with now is the one to come back to.
    keep_last_good(link, disk, instance).await?;
    let raw = serde_json::to_string(patch).map_err(|e| AppError::Internal(e.into()))?;
    repo::start_probation_after(&link.db, instance.id, Duration::ZERO, PROBATION).await?;
    let applied = rpc::call(link, instance, "config.patch", json!({"raw": raw, "baseHash": hash})).await;
    let applied = match applied {
        Ok(applied) => applied,
        Err(error) => {
            // Refused: nothing changed, nothing to watch. (No answer: it may have been applied,
            // so the probation runs its course.)
            if error.code() == Some(ErrorCode::GatewayRejected) {
                repo::end_probation(&link.db, instance.id).await?;
            }
            return Err(error);
        }
    };
    let restart = applied.pointer("/restart/scheduled").and_then(Value::as_bool).unwrap_or(false);
    // Judged only after the restart the gateway announced (at most a minute away).
    let delay = applied.pointer("/restart/delayMs").and_then(Value::as_u64).unwrap_or(0).min(60_000);
    if !restart {
        // Applied hot: the gateway answered with it running, nothing to wait for.
        keep_last_good(link, disk, instance).await?;
        repo::end_probation(&link.db, instance.id).await?;
    } else if delay > 0 {
        repo::start_probation_after(&link.db, instance.id, Duration::from_millis(delay), PROBATION).await?;
    }
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

/// What the confined checker may use: the schema is the sandbox's, and a hostile one makes
/// validation exponential (a few hundred bytes of `anyOf` over `$ref` cost gigabytes).
const CHECK_LIMITS: Limits = Limits { memory_bytes: 512 << 20, cpu_secs: 5, wall: Duration::from_secs(10), max_output: 64 << 10 };

/// Checks `config` against the gateway's schema in a confined helper process: 422
/// `invalid_config` naming what is wrong.
async fn check(helper: &std::path::Path, schema: &Value, config: &Value) -> AppResult<()> {
    if !schema.is_object() {
        return Err(AppError::new(ErrorCode::GatewayRejected, "The gateway did not send its configuration schema."));
    }
    let input = serde_json::to_vec(&json!({"schema": schema, "config": config})).map_err(|e| AppError::Internal(e.into()))?;
    let output = match confined::run(helper, &["check-config"], input, CHECK_LIMITS).await {
        Ok(output) => output,
        Err(ConfinedError::Spawn(error)) => return Err(AppError::Internal(anyhow::anyhow!("the configuration checker: {error}"))),
        Err(error) => {
            return Err(AppError::new(ErrorCode::GatewayRejected, format!("The gateway's configuration schema could not be checked: {error}.")));
        }
    };
    let problems: Vec<String> = serde_json::from_slice(&output).unwrap_or_default();
    if problems.is_empty() {
        return Ok(());
    }
    Err(AppError::new(ErrorCode::InvalidConfig, format!("The gateway's schema rejects the result: {}", problems.join("; "))))
}

/// The problems of `config` against `schema`, at most 5, naming where and which rule, never a
/// value (it may be a secret).
pub fn problems(schema: &Value, config: &Value) -> Result<Vec<String>, String> {
    // No remote or file references are resolved (the crate's resolvers are built out).
    let validator = jsonschema::validator_for(schema).map_err(|e| rpc::clean(&e.to_string()))?;
    Ok(validator
        .iter_errors(config)
        .take(5)
        .map(|e| {
            let at = path_of(&e.instance_path().to_string());
            let rule = e.schema_path().to_string();
            let keyword = rule.rsplit('/').next().unwrap_or_default().to_owned();
            // Unknown keys are named (they are keys, not values); other rules only by name.
            if keyword == "additionalProperties" {
                format!("{at}: {}", rpc::clean(&e.to_string()))
            } else {
                format!("{at}: does not satisfy `{keyword}`")
            }
        })
        .collect())
}

/// `ocaas check-config`: `{"schema","config"}` on stdin, the problems as a JSON array on stdout.
pub fn check_config_stdin() -> anyhow::Result<()> {
    use std::io::Read;
    let mut input = Vec::new();
    std::io::stdin().take(64 << 20).read_to_end(&mut input)?;
    let value: Value = serde_json::from_slice(&input)?;
    let problems = problems(&value["schema"], &value["config"]).map_err(|e| anyhow::anyhow!("unusable schema: {e}"))?;
    println!("{}", serde_json::to_string(&problems)?);
    Ok(())
}

fn path_of(pointer: &str) -> String {
    if pointer.is_empty() { "<root>".into() } else { pointer.trim_start_matches('/').replace('/', ".") }
}

/// Keeps the file the gateway runs with now, sealed (it holds secrets), as the last good one.
pub async fn keep_last_good(link: &Link, disk: &DiskSpec, instance: &InstanceRow) -> AppResult<()> {
    let sealed = running_sealed(link, disk, instance).await?;
    repo::set_last_good(&link.db, instance.id, &sealed, Utc::now()).await?;
    Ok(())
}

/// The configuration file the gateway runs with now, sealed (to keep as the last good one).
pub async fn running_sealed(link: &Link, disk: &DiskSpec, instance: &InstanceRow) -> AppResult<Vec<u8>> {
    match link.runtime.read_state_file(disk, FILE, MAX_FILE).await {
        Ok(content) if serde_json::from_slice::<Map<String, Value>>(&content).is_ok() => Ok(link.key.seal(&content)),
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
    fn the_schema_check_names_what_is_wrong_but_never_a_value() {
        let schema = json!({"type": "object", "additionalProperties": false, "properties": {"a": {"type": "integer"}, "t": {"pattern": "^x"}}});
        assert_eq!(problems(&schema, &json!({"a": 1})).unwrap(), Vec::<String>::new());
        let refused = problems(&schema, &json!({"a": 1, "bogus": true})).unwrap().join(" ");
        assert!(refused.contains("bogus"), "{refused}");
        let secret = problems(&schema, &json!({"t": "secret-token-value"})).unwrap().join(" ");
        assert!(secret.contains("pattern") && !secret.contains("secret-token"), "{secret}");
    }
}
