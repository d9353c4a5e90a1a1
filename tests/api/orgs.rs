//! Organisations against the live server: an organisation's instance called with a key of
//! each role on every documented operation answers as the role's row says (written out here,
//! apart from the server's table) — and a member of another organisation gets 404 on every one
//! (the cross-tenant matrix, for organisations); the organisation's plan counts its instances;
//! members, roles and invitations follow their rules.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, json, spawn_app, spawn_app_with_docker};

/// A user with a key: (user id, key).
async fn user(app: &TestApp, email: &str) -> (String, String) {
    let user = ocaas::auth::service::create_user(&app.db, email, PASSWORD, None).await.unwrap();
    let key = ocaas::auth::service::create_api_key(&app.db, user.id, Some("k"), None).await.unwrap().key;
    (user.id.to_string(), key)
}

async fn new_org(app: &TestApp, key: &str, name: &str) -> String {
    let made = app.with_key(Method::POST, "/api/orgs", key).json(&json!({"name": name})).send().await.unwrap();
    let made = json(made, StatusCode::CREATED).await;
    assert_eq!(made["role"], "owner");
    made["id"].as_str().unwrap().to_owned()
}

/// Invites `email` as `role` (with the inviter's key) and accepts it with the invitee's key.
async fn join(app: &TestApp, org: &str, inviter: &str, email: &str, role: &str, invitee: &str) {
    let invited = app.with_key(Method::POST, &format!("/api/orgs/{org}/invitations"), inviter).json(&json!({"email": email, "role": role}));
    let invitation = json(invited.send().await.unwrap(), StatusCode::CREATED).await;
    let mine = json(app.with_key(Method::GET, "/api/account/invitations", invitee).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(mine[0]["id"], invitation["id"], "{mine}");
    let accepted = app.with_key(Method::POST, &format!("/api/account/invitations/{}/accept", invitation["id"].as_str().unwrap()), invitee);
    assert_eq!(json(accepted.send().await.unwrap(), StatusCode::OK).await["role"], role);
}

/// What a role may do with an organisation's instance, as a user would expect it.
fn expected(role: &str, method: &str, path: &str) -> bool {
    // Reading a channel's login hands out a QR code that links the agent to whoever scans it.
    if path.ends_with("/channels/{kind}/login") {
        return matches!(role, "owner" | "admin");
    }
    let rest = path.strip_prefix("/api/instances/{instanceId}").unwrap_or("");
    let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    let read = method == "get";
    let exec = matches!(first, "terminal" | "vnc-url" | "vnc");
    let agent = matches!(first, "agent" | "config" | "gateway" | "doctor" | "channels" | "pairings" | "schedules" | "approvals" | "tool-policy");
    match role {
        "owner" | "admin" => true,
        "member" => match first {
            "" | "model" | "limits" | "upgrade" => read,
            _ if agent => read,
            _ => true,
        },
        _ => read && !exec,
    }
}

#[tokio::test]
async fn each_role_reaches_an_organisations_instance_as_its_row_says_and_outsiders_see_nothing() {
    let app = spawn_app_with_docker(|_| {}).await;
    let owner = app.user.key.clone();
    let org = new_org(&app, &owner, "Research").await;
    let mut keys = vec![("owner", owner.clone())];
    for role in ["admin", "member", "viewer"] {
        let email = format!("{role}@example.com");
        let (_, key) = user(&app, &email).await;
        join(&app, &org, &owner, &email, role, &key).await;
        keys.push((role, key));
    }
    let (_, outsider) = user(&app, "outsider@example.com").await;
    let elsewhere = new_org(&app, &outsider, "Elsewhere").await;

    // The organisation's plan: one instance; creating takes an owner or admin.
    ocaas::orgs::repo::set_plan(&app.db, org.parse().unwrap(), 1, None).await.unwrap();
    let by_member = app.with_key(Method::POST, "/api/instances", &keys[2].1).json(&json!({"org_id": org})).send().await.unwrap();
    assert_error(by_member, StatusCode::FORBIDDEN, "role_insufficient").await;
    let foreign = app.with_key(Method::POST, "/api/instances", &outsider).json(&json!({"org_id": org})).send().await.unwrap();
    assert_error(foreign, StatusCode::NOT_FOUND, "org_not_found").await;
    let created = app.with_key(Method::POST, "/api/instances", &keys[1].1).json(&json!({"org_id": org, "name": "shared"})).send().await.unwrap();
    let created = json(created, StatusCode::CREATED).await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["org_id"], org.as_str());
    let second = app.api(Method::POST, "/api/instances").json(&json!({"org_id": org})).send().await.unwrap();
    assert_error(second, StatusCode::FORBIDDEN, "instance_limit_reached").await;
    crate::helpers::until_ready(&app, &id).await;

    // Every member lists it; the outsider (owner of another organisation) does not.
    for (role, key) in &keys {
        let listed = json(app.with_key(Method::GET, "/api/instances", key).send().await.unwrap(), StatusCode::OK).await;
        assert!(listed.as_array().unwrap().iter().any(|i| i["id"] == id.as_str()), "{role} lists it");
    }
    let listed = json(app.with_key(Method::GET, "/api/instances", &outsider).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed, json!([]));

    let spec: Value = app.anon(Method::GET, "/api/openapi.json").send().await.unwrap().json().await.unwrap();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut checked = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.starts_with("/api/instances/{instanceId}") || path.ends_with("/ws") {
            continue;
        }
        for (method, operation) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) || (method == "delete" && path == "/api/instances/{instanceId}")
            {
                continue;
            }
            let url = app.url(
                &path
                    .replace("{instanceId}", &id)
                    .replace("{snapshotId}", &uuid::Uuid::new_v4().to_string())
                    .replace("{kind}", "telegram")
                    .replace(['{', '}'], ""),
            );
            let http_method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let send = |key: &str| {
                let mut request = client.request(http_method.clone(), &url).bearer_auth(key);
                if operation.get("requestBody").is_some() {
                    request = request.json(&json!({}));
                }
                request.send()
            };
            for (role, key) in keys.iter().rev() {
                let outcome = match send(key).await {
                    Err(error) if error.is_timeout() => None,
                    Err(error) => panic!("{method} {path}: {error}"),
                    Ok(response) => Some((response.status(), response.json::<Value>().await.unwrap_or_default())),
                };
                let refused = outcome.as_ref().is_some_and(|(status, body)| *status == StatusCode::FORBIDDEN && body["error"] == "role_insufficient");
                let hidden = outcome.as_ref().is_some_and(|(status, body)| *status == StatusCode::NOT_FOUND && body["error"] == "instance_not_found");
                assert!(!hidden, "{method} {path}: a {role} was told the instance does not exist");
                assert_eq!(refused, !expected(role, method, path), "{method} {path} as {role}: {outcome:?}");
                if let Some((status, _)) = &outcome {
                    assert!(expected(role, method, path) || !status.is_success(), "{method} {path} answered {status} to a {role}");
                }
            }
            let stranger = send(&outsider).await.unwrap();
            assert_error(stranger, StatusCode::NOT_FOUND, "instance_not_found").await;
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} operations were checked");

    // A viewer opens no terminal; the outsider's own organisation shows nothing of this one.
    let ticket = app.with_key(Method::GET, &format!("/api/instances/{id}/vnc-url"), &keys[3].1).send().await.unwrap();
    assert_error(ticket, StatusCode::FORBIDDEN, "role_insufficient").await;
    let theirs = json(app.with_key(Method::GET, &format!("/api/orgs/{elsewhere}"), &outsider).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(theirs["instances"], 0);
    let ours = app.with_key(Method::GET, &format!("/api/orgs/{org}/members"), &outsider).send().await.unwrap();
    assert_error(ours, StatusCode::NOT_FOUND, "org_not_found").await;
    // Its snapshots are every member's (a viewer downloads one the owner took); a creator who
    // is removed can no longer clone from them.
    let taken = app.api(Method::POST, &format!("/api/instances/{id}/snapshots")).json(&json!({"name": "shared"})).send().await.unwrap();
    let snapshot = json(taken, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let list = json(app.api(Method::GET, &format!("/api/instances/{id}/snapshots")).send().await.unwrap(), StatusCode::OK).await;
        let status = list.as_array().unwrap().iter().find(|s| s["id"] == snapshot.as_str()).map(|s| s["status"].clone());
        if status == Some(json!("ready")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline && status != Some(json!("failed")), "the snapshot never became ready: {list}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let download = app.with_key(Method::GET, &format!("/api/instances/{id}/snapshots/{snapshot}/download"), &keys[3].1).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    let members = json(app.api(Method::GET, &format!("/api/orgs/{org}/members")).send().await.unwrap(), StatusCode::OK).await;
    let creator = members.as_array().unwrap().iter().find(|m| m["role"] == "admin").unwrap()["user_id"].as_str().unwrap().to_owned();
    ocaas::auth::service::grant_subscription(&app.db, "admin@example.com", 2, None).await.unwrap();
    assert_eq!(app.api(Method::DELETE, &format!("/api/orgs/{org}/members/{creator}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let clone = app.with_key(Method::POST, "/api/instances", &keys[1].1).json(&json!({"from_snapshot": snapshot})).send().await.unwrap();
    assert_error(clone, StatusCode::NOT_FOUND, "snapshot_not_found").await;
    let theirs = app.with_key(Method::GET, &format!("/api/instances/{id}"), &keys[1].1).send().await.unwrap();
    assert_error(theirs, StatusCode::NOT_FOUND, "instance_not_found").await;

    // An organisation with an instance is not deleted; a removed member loses it at once.
    assert_error(app.api(Method::DELETE, &format!("/api/orgs/{org}")).send().await.unwrap(), StatusCode::CONFLICT, "org_not_empty").await;
    let members = json(app.api(Method::GET, &format!("/api/orgs/{org}/members")).send().await.unwrap(), StatusCode::OK).await;
    let viewer = members.as_array().unwrap().iter().find(|m| m["role"] == "viewer").unwrap()["user_id"].as_str().unwrap().to_owned();
    assert_eq!(app.api(Method::DELETE, &format!("/api/orgs/{org}/members/{viewer}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let gone = app.with_key(Method::GET, &format!("/api/instances/{id}"), &keys[3].1).send().await.unwrap();
    assert_error(gone, StatusCode::NOT_FOUND, "instance_not_found").await;
    app.settle().await;
}

#[tokio::test]
async fn members_roles_and_invitations_follow_their_rules() {
    let app = spawn_app().await;
    let owner = app.user.key.clone();
    let org = new_org(&app, &owner, "Team").await;
    let (admin_id, admin) = user(&app, "admin@example.com").await;
    let (viewer_id, viewer) = user(&app, "viewer@example.com").await;
    let (_, stranger) = user(&app, "stranger@example.com").await;
    join(&app, &org, &owner, "admin@example.com", "admin", &admin).await;
    join(&app, &org, &admin, "Viewer@Example.com", "viewer", &viewer).await;

    // An invitation is only its addressee's; owners are not invited.
    let invited = app.api(Method::POST, &format!("/api/orgs/{org}/invitations")).json(&json!({"email": "new@example.com", "role": "member"}));
    let invitation = json(invited.send().await.unwrap(), StatusCode::CREATED).await;
    let taken = app.with_key(Method::POST, &format!("/api/account/invitations/{}/accept", invitation["id"].as_str().unwrap()), &stranger);
    assert_error(taken.send().await.unwrap(), StatusCode::NOT_FOUND, "invitation_not_found").await;
    let as_owner = app.api(Method::POST, &format!("/api/orgs/{org}/invitations")).json(&json!({"email": "x@example.com", "role": "owner"}));
    assert_error(as_owner.send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid_request").await;
    let bad = app.api(Method::POST, &format!("/api/orgs/{org}/invitations")).json(&json!({"email": "not an email", "role": "member"}));
    assert_error(bad.send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid_request").await;
    let listed = json(app.with_key(Method::GET, &format!("/api/orgs/{org}/invitations"), &admin).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let withdrawn = app.api(Method::DELETE, &format!("/api/orgs/{org}/invitations/{}", invitation["id"].as_str().unwrap()));
    assert_eq!(withdrawn.send().await.unwrap().status(), StatusCode::NO_CONTENT);

    // Viewers manage nothing; admins manage but make no owners; the last owner stays.
    let by_viewer =
        app.with_key(Method::POST, &format!("/api/orgs/{org}/invitations"), &viewer).json(&json!({"email": "y@example.com", "role": "viewer"}));
    assert_error(by_viewer.send().await.unwrap(), StatusCode::FORBIDDEN, "role_insufficient").await;
    let rename = app.with_key(Method::PATCH, &format!("/api/orgs/{org}"), &viewer).json(&json!({"name": "Mine"}));
    assert_error(rename.send().await.unwrap(), StatusCode::FORBIDDEN, "role_insufficient").await;
    let promote = app.with_key(Method::PATCH, &format!("/api/orgs/{org}/members/{viewer_id}"), &admin).json(&json!({"role": "owner"}));
    assert_error(promote.send().await.unwrap(), StatusCode::FORBIDDEN, "role_insufficient").await;
    let to_member = app.with_key(Method::PATCH, &format!("/api/orgs/{org}/members/{viewer_id}"), &admin).json(&json!({"role": "member"}));
    let members = json(to_member.send().await.unwrap(), StatusCode::OK).await;
    assert!(members.as_array().unwrap().iter().any(|m| m["user_id"] == viewer_id.as_str() && m["role"] == "member"), "{members}");
    let owner_id = app.user.id.to_string();
    let demote = app.with_key(Method::PATCH, &format!("/api/orgs/{org}/members/{owner_id}"), &admin).json(&json!({"role": "viewer"}));
    assert_error(demote.send().await.unwrap(), StatusCode::FORBIDDEN, "role_insufficient").await;
    let leave = app.api(Method::DELETE, &format!("/api/orgs/{org}/members/{owner_id}")).send().await.unwrap();
    assert_error(leave, StatusCode::CONFLICT, "last_owner").await;
    let crown = app.api(Method::PATCH, &format!("/api/orgs/{org}/members/{admin_id}")).json(&json!({"role": "owner"})).send().await.unwrap();
    assert_eq!(crown.status(), StatusCode::OK);
    assert_eq!(app.api(Method::DELETE, &format!("/api/orgs/{org}/members/{owner_id}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_error(app.api(Method::GET, &format!("/api/orgs/{org}")).send().await.unwrap(), StatusCode::NOT_FOUND, "org_not_found").await;

    // Strangers see nothing of it on any of its routes.
    for (method, path) in [
        (Method::GET, format!("/api/orgs/{org}")),
        (Method::PATCH, format!("/api/orgs/{org}")),
        (Method::DELETE, format!("/api/orgs/{org}")),
        (Method::GET, format!("/api/orgs/{org}/members")),
        (Method::GET, format!("/api/orgs/{org}/invitations")),
        (Method::POST, format!("/api/orgs/{org}/invitations")),
        (Method::DELETE, format!("/api/orgs/{org}/members/{admin_id}")),
    ] {
        let response =
            app.with_key(method.clone(), &path, &stranger).json(&json!({"name": "x", "email": "a@b.co", "role": "viewer"})).send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "org_not_found").await;
    }
    let listed = json(app.with_key(Method::GET, "/api/orgs", &stranger).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed, json!([]));
    // The new owner deletes the empty organisation.
    assert_eq!(app.with_key(Method::DELETE, &format!("/api/orgs/{org}"), &admin).send().await.unwrap().status(), StatusCode::NO_CONTENT);
}

/// The Organisations card in Chromium: the owner creates one and invites by email; the invitee,
/// signed in on the same page, accepts and sees it with their role.
#[tokio::test]
async fn the_dashboard_creates_an_organisation_invites_and_the_invitee_accepts() {
    let app = spawn_app().await;
    user(&app, "friend@example.com").await;
    let browser = crate::dashboard::signed_in(&app).await;
    browser.wait_for("return !document.getElementById('dashboard').hidden", 20).await;
    browser.fill("#org-name", "Night shift").await;
    browser.click("#org-create").await;
    browser.wait_for("return document.querySelector('#orgs tr td.role')?.textContent === 'owner'", 20).await;
    let whose = browser.wait_for("return [...document.querySelectorAll('#instance-org option')].map(o => o.textContent).join(',')", 20).await;
    assert_eq!(whose, "Mine,Night shift", "the instance form offers the organisation");
    browser.click("#orgs button.open").await;
    browser.wait_for("return !document.getElementById('org-panel').hidden", 20).await;
    let usage = browser.wait_for("return document.getElementById('org-usage').textContent", 20).await;
    assert!(usage.as_str().unwrap().contains("0 model request(s), 0 tokens (0 allowed); 0 of 0 instance(s)"), "{usage}");
    browser.fill("#invite-email", "friend@example.com").await;
    browser.eval("document.getElementById('invite-role').value = 'viewer'; return true").await;
    browser.click("#invite-send").await;
    browser.wait_for("return document.querySelectorAll('#org-invitations li').length === 1", 20).await;
    browser.screenshot(&crate::webdriver::artifact("dashboard-15-organisation.png")).await;

    browser.click("#logout").await;
    browser.wait_for("return !document.getElementById('auth').hidden", 20).await;
    browser.fill("#login-form input[name=email]", "friend@example.com").await;
    browser.fill("#login-form input[name=password]", PASSWORD).await;
    browser.click("#login-form button[type=submit]").await;
    let offer = browser.wait_for("return document.querySelector('#my-invitations .invitation')?.textContent", 20).await;
    assert!(offer.as_str().unwrap().contains("Night shift") && offer.as_str().unwrap().contains("viewer"), "{offer}");
    browser.click("#my-invitations button.accept").await;
    browser.wait_for("return document.querySelector('#orgs tr td.role')?.textContent === 'viewer'", 20).await;
    assert_eq!(browser.eval("return document.querySelectorAll('#my-invitations .invitation').length").await, 0);
    // A viewer creates nothing for it: the instance form offers only their own.
    assert_eq!(browser.eval("return document.querySelectorAll('#instance-org option').length").await, 1);
    let orgs = json(app.api(Method::GET, "/api/orgs").send().await.unwrap(), StatusCode::OK).await;
    let members =
        json(app.api(Method::GET, &format!("/api/orgs/{}/members", orgs[0]["id"].as_str().unwrap())).send().await.unwrap(), StatusCode::OK).await;
    assert!(members.as_array().unwrap().iter().any(|m| m["email"] == "friend@example.com" && m["role"] == "viewer"), "{members}");
}
