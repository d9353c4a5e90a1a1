//! The warm pool against real sandboxes: a create claims a sandbox started beforehand and is
//! `ready` at once, with its own token and an empty workspace; a claimed sandbox never reaches
//! another user; the pool refills within capacity; an image change replaces the pool.

use std::time::{Duration, Instant};

use ocaas::auth::service;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, assert_error, json, respawn_with, spawn_app_with_docker};
use crate::idle::docker_state;

/// Waits until `n` pool sandboxes of `image` are ready; returns their sandbox names.
async fn warm_pool(app: &TestApp, image: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let pooled: Vec<String> = sqlx::query_scalar("SELECT sandbox_id FROM instances WHERE status = 'pooled' AND image = $1 ORDER BY created_at")
            .bind(image)
            .fetch_all(&app.db)
            .await
            .unwrap();
        if pooled.len() == n {
            return pooled;
        }
        assert!(Instant::now() < deadline, "the pool never had {n} ready sandboxes of {image}: {pooled:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn container_env(sandbox: &str, name: &str) -> String {
    let output = std::process::Command::new("docker").args(["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", sandbox]).output().unwrap();
    let env = String::from_utf8_lossy(&output.stdout).to_string();
    env.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_create_claims_a_warm_sandbox_with_its_own_token_and_an_empty_workspace() {
    let app = spawn_app_with_docker(|settings| {
        settings.idle.warm_pool = 2;
        settings.instances.max_instances = 3;
    })
    .await;
    let image = app.state.settings.instances.image.clone();
    let pooled = warm_pool(&app, &image, 2).await;
    service::grant_subscription(&app.db, &app.user.email, 3, None).await.unwrap();

    let started = Instant::now();
    let created = json(app.api(Method::POST, "/api/instances").json(&json!({"name": "warm"})).send().await.unwrap(), StatusCode::CREATED).await;
    let answered_in = started.elapsed();
    assert_eq!((created["status"].as_str(), created["name"].as_str()), (Some("ready"), Some("warm")), "{created}");
    assert!(answered_in < Duration::from_secs(2), "a pool claim answers at once: {answered_in:?}");
    let (id, sandbox) = (created["id"].as_str().unwrap().to_owned(), created["sandbox_id"].as_str().unwrap().to_owned());
    assert_eq!(sandbox, pooled[0], "the oldest warm sandbox is claimed");

    // Usable at once: chat answers, the workspace is empty.
    let chat = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/echo warm"})).send().await.unwrap();
    assert_eq!(json(chat, StatusCode::OK).await["assistant_message"]["content"], "warm");
    let listing = json(app.api(Method::GET, &format!("/api/instances/{id}/files?path=/workspace")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listing["entries"].as_array().map(Vec::len), Some(0), "{listing}");

    // Its gateway token is its own: the one the sandbox was started with, and nobody else's.
    let tokens: Vec<(String, String)> = sqlx::query_as("SELECT sandbox_id, gateway_token FROM instances").fetch_all(&app.db).await.unwrap();
    let mine = tokens.iter().find(|(s, _)| *s == sandbox).unwrap().1.clone();
    assert_eq!(container_env(&sandbox, "OPENCLAW_GATEWAY_TOKEN"), mine);
    assert_eq!(tokens.iter().filter(|(_, t)| *t == mine).count(), 1, "no other sandbox has this token");

    // Another user's create gets the other warm sandbox; the first one stays out of reach.
    let other = service::create_user(&app.db, "other@example.com", crate::helpers::PASSWORD, None).await.unwrap();
    let other_key = service::create_api_key(&app.db, other.id, None, None).await.unwrap().key;
    service::grant_subscription(&app.db, "other@example.com", 3, None).await.unwrap();
    let theirs = json(app.with_key(Method::POST, "/api/instances", &other_key).send().await.unwrap(), StatusCode::CREATED).await;
    assert_eq!(theirs["sandbox_id"].as_str(), Some(pooled[1].as_str()));
    let foreign = app.with_key(Method::GET, &format!("/api/instances/{id}"), &other_key).send().await.unwrap();
    assert_error(foreign, StatusCode::NOT_FOUND, "instance_not_found").await;

    // The pool refills within capacity: 2 claimed + 1 warm = OCAAS_MAX_INSTANCES.
    let refill = warm_pool(&app, &image, 1).await;
    assert!(!refill.contains(&sandbox) && !refill.contains(&pooled[1]), "a claimed sandbox never returns to the pool");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&app.db).await.unwrap();
    assert_eq!(total, 3, "the pool counts against the server's capacity");

    // Deleting the claimed instance removes its sandbox for good.
    assert_eq!(app.api(Method::DELETE, &format!("/api/instances/{id}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(docker_state(&sandbox), "missing");
}

#[tokio::test]
async fn an_image_change_replaces_the_pool() {
    let app = spawn_app_with_docker(|settings| settings.idle.warm_pool = 1).await;
    let old_image = app.state.settings.instances.image.clone();
    let old = warm_pool(&app, &old_image, 1).await;

    // The same image under another name is another image to the server.
    let new_image = format!("ocaas-sandbox:pool-rotation-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    assert!(std::process::Command::new("docker").args(["tag", &old_image, &new_image]).status().unwrap().success());
    app.state.shutdown.cancel();
    let upgraded = respawn_with(&app, |settings| settings.instances.image = new_image.clone()).await;
    let fresh = warm_pool(&upgraded, &new_image, 1).await;
    // The deleting driver removes the container, then the storage, then the row.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE image = $1").bind(&old_image).fetch_one(&app.db).await.unwrap();
        let state = docker_state(&old[0]);
        if state == "missing" && left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the old pool sandbox was not removed: container {state}, {left} row(s) of the old image");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(fresh, old);
    drop(upgraded);
    let _ = std::process::Command::new("docker").args(["rmi", &new_image]).output();
}
