//! The audit log: logins (failed ones too), keys and instance lifecycle on the account's own
//! feed with the client's address, paginated; admin actions and `ocaas admin audit`.

use std::process::Command;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, json, spawn_app, spawn_app_with};

async fn login(app: &TestApp, password: &str, forwarded_for: Option<&str>) -> StatusCode {
    let mut request = app.anon(Method::POST, "/api/account/login").json(&json!({"email": app.user.email, "password": password}));
    if let Some(address) = forwarded_for {
        request = request.header("X-Forwarded-For", address);
    }
    request.send().await.unwrap().status()
}

async fn page(app: &TestApp, query: &str) -> Value {
    json(app.api(Method::GET, &format!("/api/account/audit{query}")).send().await.unwrap(), StatusCode::OK).await
}

fn actions(page: &Value) -> Vec<String> {
    page["events"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_account_feed_records_logins_keys_and_instances_with_the_client_address() {
    let app = spawn_app().await;
    assert_eq!(login(&app, "wrong password 1", None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&app, "wrong password 2", Some("203.0.113.9")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(login(&app, PASSWORD, None).await, StatusCode::OK);
    let key = json(app.api(Method::POST, "/api/account/keys").json(&json!({"name": "ci"})).send().await.unwrap(), StatusCode::CREATED).await;
    let key_id = key["id"].as_str().unwrap();
    assert_eq!(app.api(Method::DELETE, &format!("/api/account/keys/{key_id}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let instance = app.ready_instance_row().await;
    assert_eq!(app.api(Method::DELETE, &format!("/api/instances/{instance}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);

    let all = page(&app, "").await;
    assert_eq!(actions(&all), ["instance_deleted", "key_revoked", "key_created", "login_succeeded", "login_failed", "login_failed"], "{all}");
    let events = all["events"].as_array().unwrap();
    assert_eq!(events[0]["target"], instance.to_string());
    assert_eq!(events[1]["target"], key_id);
    // The peer's address; X-Forwarded-For is not believed without OCAAS_TRUST_PROXY.
    assert!(events.iter().all(|e| e["client_addr"] == "127.0.0.1"), "{all}");
    assert!(all["next_before"].is_null());

    let first = page(&app, "?limit=4").await;
    assert_eq!(actions(&first).len(), 4);
    let rest = page(&app, &format!("?limit=4&before={}", first["next_before"])).await;
    assert_eq!(actions(&rest), ["login_failed", "login_failed"]);
    assert_eq!(app.api(Method::GET, "/api/account/audit?limit=0").send().await.unwrap().status(), StatusCode::BAD_REQUEST);

    // Another account sees none of it.
    let other = json(
        app.anon(Method::POST, "/api/account/register")
            .json(&json!({"email": "other@example.com", "password": PASSWORD, "invite_code": app.invite(1, 1).await}))
            .send()
            .await
            .unwrap(),
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(other["email"], "other@example.com");
    let other_key = ocaas::auth::service::create_api_key(&app.db, other["id"].as_str().unwrap().parse().unwrap(), None, None).await.unwrap().key;
    let theirs = json(app.with_key(Method::GET, "/api/account/audit", &other_key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(actions(&theirs), ["user_registered"], "{theirs}");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_address_is_recorded() {
    // The chain: client 203.0.113.9 → a proxy at 10.0.0.1 → one on loopback → ocaas.
    let app = spawn_app_with(|s| {
        s.trust_proxy = true;
        s.trusted_proxies.push(ocaas::config::parse_net("10.0.0.0/8").unwrap());
    })
    .await;
    assert_eq!(login(&app, "not the password", Some("6.6.6.6, 203.0.113.9, 10.0.0.1")).await, StatusCode::UNAUTHORIZED);
    let feed = page(&app, "").await;
    assert_eq!(feed["events"][0]["client_addr"], "203.0.113.9", "the right-most untrusted hop, not the forged left-most: {feed}");
    // A hop that is not a trusted proxy is the client, whatever it claims came before it.
    let untrusting = spawn_app_with(|s| s.trust_proxy = true).await;
    assert_eq!(login(&untrusting, "not the password", Some("203.0.113.9, 10.0.0.1")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(page(&untrusting, "").await["events"][0]["client_addr"], "10.0.0.1");
}

#[tokio::test]
async fn admin_actions_are_recorded_and_admin_audit_lists_everyone() {
    let app = spawn_app().await;
    assert_eq!(login(&app, "wrong password", None).await, StatusCode::UNAUTHORIZED);
    let ocaas = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_ocaas")).args(args).env("DATABASE_URL", &app.database_url).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    ocaas(&["admin", "subscription", "grant", "--email", &app.user.email, "--max-instances", "3"]);
    let listed = ocaas(&["admin", "audit", "--since", "1h"]);
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(lines.len(), 2, "{listed}");
    assert!(lines[0].contains("login_failed") && lines[0].contains(&app.user.email) && lines[0].contains("127.0.0.1"), "{listed}");
    assert!(lines[1].contains("admin_subscription_granted") && lines[1].contains("  admin  ") && lines[1].contains("max_instances=3"), "{listed}");
    assert_eq!(ocaas(&["admin", "audit", "--email", "nobody@example.com"]).trim(), "no events");
    assert_eq!(ocaas(&["admin", "audit", "--email", &app.user.email]).lines().count(), 1);
    assert_eq!(ocaas(&["admin", "audit", "--since", "2099-01-01"]).trim(), "no events");
}
