//! Registration, invites, login sessions with CSRF, and key management over the API.

use ocaas::config::RegistrationMode;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, assert_error, json, spawn_app, spawn_app_with};

fn session_cookie(response: &reqwest::Response) -> String {
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test]
async fn register_with_invite_then_login_create_a_key_and_use_it() {
    let app = spawn_app().await;
    let code = app.invite(2, 3).await;
    let response = app
        .anon(Method::POST, "/api/account/register")
        .json(&json!({"email": "new@example.com", "password": PASSWORD, "invite_code": code.to_lowercase()}))
        .send()
        .await
        .unwrap();
    let registered = json(response, StatusCode::CREATED).await;
    assert_eq!(registered["email"], "new@example.com");
    assert_eq!(registered["subscription"]["max_instances"], 3);
    assert_eq!(registered["subscription"]["active"], true);

    let response =
        app.anon(Method::POST, "/api/account/login").json(&json!({"email": "NEW@example.com", "password": PASSWORD})).send().await.unwrap();
    let cookie = session_cookie(&response);
    let account = json(response, StatusCode::OK).await;
    let csrf = account["csrf_token"].as_str().unwrap().to_owned();

    let response = app
        .anon(Method::POST, "/api/account/keys")
        .header("cookie", &cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .unwrap();
    let created = json(response, StatusCode::CREATED).await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("ocaas_") && key.len() >= 6 + 43, "{key}");
    assert_eq!(created["name"], "laptop");

    let me = json(app.with_key(Method::GET, "/api/account", key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(me["email"], "new@example.com");

    let left: i32 = sqlx::query_scalar("SELECT uses_left FROM invite_codes").fetch_one(&app.db).await.unwrap();
    assert_eq!(left, 1, "one use was consumed");
}

#[tokio::test]
async fn a_used_up_invite_is_refused_and_creates_no_user() {
    let app = spawn_app().await;
    let code = app.invite(1, 1).await;
    let register = |email: &'static str| {
        app.anon(Method::POST, "/api/account/register").json(&json!({"email": email, "password": PASSWORD, "invite_code": code}))
    };
    json(register("first@example.com").send().await.unwrap(), StatusCode::CREATED).await;
    assert_error(register("second@example.com").send().await.unwrap(), StatusCode::FORBIDDEN, "invalid_invite_code").await;
    let response = app
        .anon(Method::POST, "/api/account/register")
        .json(&json!({"email": "third@example.com", "password": PASSWORD, "invite_code": "NOPE-NOPE-NOPE-NOPE"}))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "invalid_invite_code").await;
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email <> 'seed@example.com'").fetch_one(&app.db).await.unwrap();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn concurrent_redemptions_of_the_last_use_admit_exactly_one() {
    let app = spawn_app().await;
    let code = app.invite(1, 1).await;
    let attempts = (0..8).map(|i| {
        app.anon(Method::POST, "/api/account/register")
            .json(&json!({"email": format!("racer{i}@example.com"), "password": PASSWORD, "invite_code": code}))
            .send()
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::FORBIDDEN).count(), 7, "{statuses:?}");
}

#[tokio::test]
async fn registration_modes_are_enforced() {
    let closed = spawn_app_with(|s| s.registration = RegistrationMode::Closed).await;
    let body = json!({"email": "x@example.com", "password": PASSWORD});
    let response = closed.anon(Method::POST, "/api/account/register").json(&body).send().await.unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "registration_closed").await;

    let invite_only = spawn_app().await;
    let response = invite_only.anon(Method::POST, "/api/account/register").json(&body).send().await.unwrap();
    assert_error(response, StatusCode::FORBIDDEN, "invite_required").await;

    let open = spawn_app_with(|s| s.registration = RegistrationMode::Open).await;
    let created = json(open.anon(Method::POST, "/api/account/register").json(&body).send().await.unwrap(), StatusCode::CREATED).await;
    assert!(created["subscription"].is_null(), "open registration grants no plan by itself: {created}");
}

#[tokio::test]
async fn emails_are_unique_case_insensitively_and_validated() {
    let app = spawn_app_with(|s| s.registration = RegistrationMode::Open).await;
    let register = |email: &str, password: &str| app.anon(Method::POST, "/api/account/register").json(&json!({"email": email, "password": password}));
    assert_error(register("SEED@Example.COM", PASSWORD).send().await.unwrap(), StatusCode::CONFLICT, "email_taken").await;
    for bad in ["", "no-at-sign", "a@b", "two@@example.com", "sp ace@example.com", "@example.com"] {
        assert_error(register(bad, PASSWORD).send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid_email").await;
    }
    for weak in ["short", "aaaaaaaaaaaaaaaa"] {
        assert_error(register("ok@example.com", weak).send().await.unwrap(), StatusCode::BAD_REQUEST, "weak_password").await;
    }
}

#[tokio::test]
async fn wrong_passwords_and_unknown_emails_get_the_same_401() {
    let app = spawn_app().await;
    for (email, password) in [("seed@example.com", "wrong password here"), ("nobody@example.com", PASSWORD)] {
        let response = app.anon(Method::POST, "/api/account/login").json(&json!({"email": email, "password": password})).send().await.unwrap();
        assert!(response.headers().get("set-cookie").is_none());
        let body = assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
        assert_eq!(body["message"], "The email or password is not correct.");
    }
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_to_change_state_and_end_at_logout() {
    let app = spawn_app().await;
    let (cookie, csrf) = app.login().await;

    // Reads work with the cookie alone.
    let me = json(app.anon(Method::GET, "/api/account").header("cookie", &cookie).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(me["csrf_token"], csrf.as_str());

    let create = |token: Option<&str>| {
        let mut request = app.anon(Method::POST, "/api/account/keys").header("cookie", &cookie).json(&json!({}));
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    assert_error(create(None).await.unwrap(), StatusCode::FORBIDDEN, "csrf_failed").await;
    assert_error(create(Some("forged")).await.unwrap(), StatusCode::FORBIDDEN, "csrf_failed").await;
    json(create(Some(&csrf)).await.unwrap(), StatusCode::CREATED).await;

    let logout = app.anon(Method::POST, "/api/account/logout").header("cookie", &cookie).header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert!(logout.headers()["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let after = app.anon(Method::GET, "/api/account").header("cookie", &cookie).send().await.unwrap();
    assert_error(after, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn cookies_are_secure_behind_an_https_public_url() {
    let app = spawn_app_with(|s| s.public_url = Some("https://ocaas.example.com".into())).await;
    let response =
        app.anon(Method::POST, "/api/account/login").json(&json!({"email": "seed@example.com", "password": PASSWORD})).send().await.unwrap();
    assert!(response.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
}

#[tokio::test]
async fn cookies_are_secure_when_a_trusted_proxy_says_https_and_only_then() {
    let app = spawn_app_with(|s| s.trust_proxy = true).await;
    let login = |proto: &'static str| {
        app.anon(Method::POST, "/api/account/login")
            .header("X-Forwarded-Proto", proto)
            .header("X-Forwarded-Host", "ocaas.example.com")
            .json(&json!({"email": "seed@example.com", "password": PASSWORD}))
    };
    let https = login("https").send().await.unwrap();
    assert!(https.headers()["set-cookie"].to_str().unwrap().contains("; Secure"), "behind an https proxy");
    let http = login("http").send().await.unwrap();
    assert!(!http.headers()["set-cookie"].to_str().unwrap().contains("Secure"), "behind an http proxy");
}

#[tokio::test]
async fn keys_are_listed_revoked_and_scoped_to_their_owner() {
    let app = spawn_app().await;
    let created = json(
        app.api(Method::POST, "/api/account/keys").json(&json!({"name": "ci", "expires_in_days": 30})).send().await.unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert!(created["expires_at"].as_str().unwrap().ends_with('Z'));
    let listed = json(app.api(Method::GET, "/api/account/keys").send().await.unwrap(), StatusCode::OK).await;
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ci", "seed"], "newest first");

    // Another user's key id is not found, not forbidden.
    let stranger = ocaas::auth::service::create_user(&app.db, "stranger@example.com", PASSWORD, None).await.unwrap();
    let theirs = ocaas::auth::service::create_api_key(&app.db, stranger.id, None, None).await.unwrap();
    let path = format!("/api/account/keys/{}", theirs.view.id);
    assert_error(app.api(Method::DELETE, &path).send().await.unwrap(), StatusCode::NOT_FOUND, "key_not_found").await;
    json(app.with_key(Method::GET, "/api/account", &theirs.key).send().await.unwrap(), StatusCode::OK).await;

    let path = format!("/api/account/keys/{}", created["id"].as_str().unwrap());
    assert_eq!(app.api(Method::DELETE, &path).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_error(app.api(Method::DELETE, &path).send().await.unwrap(), StatusCode::NOT_FOUND, "key_not_found").await;
    let listed = json(app.api(Method::GET, "/api/account/keys").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);

    let response = app.api(Method::DELETE, "/api/account/keys/not-a-uuid").send().await.unwrap();
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    for bad in [json!({"expires_in_days": 0}), json!({"expires_in_days": 100000}), json!({"name": "x".repeat(101)})] {
        let response = app.api(Method::POST, "/api/account/keys").json(&bad).send().await.unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_cross_origin_form_post_with_the_session_cookie_is_refused() {
    let app = spawn_app().await;
    let (cookie, _) = app.login().await;
    let keys_before = json(app.api(Method::GET, "/api/account/keys").send().await.unwrap(), StatusCode::OK).await;
    // What a hostile page's auto-submitting <form method=post> sends: cookie, foreign Origin,
    // a form body, and no CSRF header (it cannot read the token nor set headers).
    for path in ["/api/account/keys", "/api/instances", "/api/account/logout"] {
        let forged = app
            .anon(Method::POST, path)
            .header("cookie", &cookie)
            .header("origin", "http://evil.example")
            .header("content-type", "application/x-www-form-urlencoded")
            .body("name=stolen")
            .send()
            .await
            .unwrap();
        assert_error(forged, StatusCode::FORBIDDEN, "csrf_failed").await;
    }
    let keys_after = json(app.api(Method::GET, "/api/account/keys").send().await.unwrap(), StatusCode::OK).await;
    let ids = |keys: &serde_json::Value| keys.as_array().unwrap().iter().map(|k| k["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&keys_before), ids(&keys_after), "no key was created");
    let me = app.anon(Method::GET, "/api/account").header("cookie", &cookie).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK, "the session was not logged out");
}
