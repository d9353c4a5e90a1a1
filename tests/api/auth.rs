//! The bearer extractor: every failure is a 401 JSON error with `WWW-Authenticate: Bearer`.

use reqwest::{Method, StatusCode};

use crate::helpers::{assert_error, json, spawn_app, until_refused};

async fn assert_401(response: reqwest::Response) {
    assert_eq!(response.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
    assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn a_valid_key_authenticates() {
    let app = spawn_app().await;
    let body = json(app.api(Method::GET, "/api/account").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(body["email"], app.user.email.as_str());
    assert_eq!(body["id"], app.user.id.to_string());
    assert!(body.get("csrf_token").is_none(), "API keys get no CSRF token: {body}");
}

#[tokio::test]
async fn missing_malformed_and_unknown_keys_are_401() {
    let app = spawn_app().await;
    assert_401(app.anon(Method::GET, "/api/account").send().await.unwrap()).await;
    let malformed = ["Basic dXNlcjpwYXNz", "Bearer", "Bearer not-a-key", "ocaas_abc", "Bearer ocaas_short"];
    for header in malformed {
        let response = app.anon(Method::GET, "/api/account").header("authorization", header).send().await.unwrap();
        assert_401(response).await;
    }
    // Right shape, never issued.
    let unknown = format!("ocaas_{}", "A".repeat(43));
    assert_401(app.with_key(Method::GET, "/api/account", &unknown).send().await.unwrap()).await;
    // A real key with one character changed.
    let mut tampered = app.user.key.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    assert_401(app.with_key(Method::GET, "/api/account", &tampered).send().await.unwrap()).await;
}

#[tokio::test]
async fn revoked_and_expired_keys_are_401() {
    let app = spawn_app().await;
    let created =
        json(app.api(Method::POST, "/api/account/keys").json(&serde_json::json!({"name": "short-lived"})).send().await.unwrap(), StatusCode::CREATED)
            .await;
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    json(app.with_key(Method::GET, "/api/account", &key).send().await.unwrap(), StatusCode::OK).await;

    // Expired straight in the database (as an operator would): the server hears it through the
    // database's notification, within the bound the credential cache states (1 s; in practice
    // milliseconds), and from then on the key stays refused.
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = $1::uuid").bind(&id).execute(&app.db).await.unwrap();
    let took = until_refused(|| app.with_key(Method::GET, "/api/account", &key)).await;
    assert!(took < std::time::Duration::from_secs(1), "an expired key was accepted for {took:?}");
    for _ in 0..3 {
        assert_401(app.with_key(Method::GET, "/api/account", &key).send().await.unwrap()).await;
    }

    // Revoked through the API: refused by the very next request, every time (the server does
    // not wait for its own notification).
    for _ in 0..20 {
        let other = json(app.api(Method::POST, "/api/account/keys").json(&serde_json::json!({})).send().await.unwrap(), StatusCode::CREATED).await;
        let other_key = other["key"].as_str().unwrap();
        for _ in 0..2 {
            json(app.with_key(Method::GET, "/api/account", other_key).send().await.unwrap(), StatusCode::OK).await;
        }
        let response = app.api(Method::DELETE, &format!("/api/account/keys/{}", other["id"].as_str().unwrap())).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_401(app.with_key(Method::GET, "/api/account", other_key).send().await.unwrap()).await;
    }
}

#[tokio::test]
async fn keys_are_stored_only_as_sha256_digests() {
    let app = spawn_app().await;
    let rows: Vec<(Vec<u8>, String)> = sqlx::query_as("SELECT key_hash, prefix FROM api_keys").fetch_all(&app.db).await.unwrap();
    assert_eq!(rows.len(), 1);
    let (hash, prefix) = &rows[0];
    use sha2::Digest;
    assert_eq!(hash.as_slice(), sha2::Sha256::digest(app.user.key.as_bytes()).as_slice());
    assert!(app.user.key.starts_with(prefix.as_str()) && prefix.len() < 16);
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM api_keys t").fetch_one(&app.db).await.unwrap();
    assert!(!dump.contains(&app.user.key[6..]), "the secret must not be stored");
}

#[tokio::test]
async fn using_a_key_records_last_used_at() {
    let app = spawn_app().await;
    let before = json(app.api(Method::GET, "/api/account/keys").send().await.unwrap(), StatusCode::OK).await;
    // The listing call itself used the key.
    assert!(before[0]["last_used_at"].is_string(), "{before}");
    assert_eq!(before.as_array().unwrap().len(), 1);
    assert!(before[0].get("key").is_none(), "secrets are never listed: {before}");
}

#[tokio::test]
async fn last_used_at_is_written_at_most_once_a_minute() {
    // Uses served from the credential cache are written in batches, here every second.
    let app = crate::helpers::spawn_app_with(|settings| settings.key_touch_interval = std::time::Duration::from_secs(1)).await;
    let last_used = || async {
        sqlx::query_scalar::<_, Option<chrono::DateTime<chrono::Utc>>>("SELECT last_used_at FROM api_keys").fetch_one(&app.db).await.unwrap()
    };
    app.api(Method::GET, "/api/account").send().await.unwrap();
    let first = last_used().await.expect("the first use is recorded");
    for _ in 0..5 {
        assert_eq!(app.api(Method::GET, "/api/account").send().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(last_used().await, Some(first), "uses within the minute do not write the row again");
    sqlx::query("UPDATE api_keys SET last_used_at = now() - interval '2 minutes'").execute(&app.db).await.unwrap();
    let quiet = last_used().await.unwrap();
    app.api(Method::GET, "/api/account").send().await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while last_used().await.unwrap() == quiet {
        assert!(std::time::Instant::now() < deadline, "a use after a quiet minute is recorded within the batch interval");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(last_used().await.unwrap() > first);
}
