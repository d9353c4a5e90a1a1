//! Upgrades with automatic rollback against real images: to a working image the data stays and
//! the version is recorded; to an image whose gateway never gets ready the instance is rolled
//! back within the timeout with its data, and its user is told; a server killed with SIGKILL
//! mid-upgrade finishes or rolls back at its next start.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ocaas::auth::service;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    PASSWORD, docker, fresh_database, json, ready_instance, respawn_with, sandbox_image, sandbox_sh, serve_process as serve, spawn_app_with_docker,
};
use crate::idle::{instance, wait_status};
use crate::snapshots::{manifest, write_tree};

/// The same image under another name: a different image to the server, one that works.
pub fn renamed(base: &str) -> String {
    let tag = format!("ocaas-sandbox:upgrade-test-{}", base.rsplit('-').next().unwrap_or("x"));
    assert!(Command::new("docker").args(["tag", base, &tag]).status().unwrap().success());
    tag
}

/// `base` with a gateway that never starts (built locally from `base`, no registry needed).
pub fn broken(base: &str) -> String {
    let tag = format!("ocaas-sandbox:broken-{}", base.rsplit('-').next().unwrap_or("x"));
    if docker(&["images", "-q", &tag]).is_empty() {
        let mut build = Command::new("docker").args(["build", "-q", "-t", &tag, "-"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(&mut build.stdin.take().unwrap(), format!("FROM {base}\nENTRYPOINT [\"sleep\", \"infinity\"]\n").as_bytes())
            .unwrap();
        assert!(build.wait().unwrap().success(), "building the broken image");
    }
    tag
}

fn container_image(sandbox: &str) -> String {
    docker(&["inspect", "-f", "{{.Config.Image}}", sandbox])
}

#[tokio::test]
async fn an_upgrade_to_a_working_image_keeps_the_data_and_records_the_version() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    assert_eq!(instance(&app, &id).await["openclaw_version"], "2026.9.6-standin", "recorded when it became ready");
    write_tree(&sandbox);
    let before = manifest(&sandbox);
    let old_image = app.state.settings.instances.image.clone();
    let new_image = renamed(&old_image);

    app.state.shutdown.cancel();
    let upgraded = respawn_with(&app, |settings| settings.instances.image = new_image.clone()).await;
    let response = upgraded.api(Method::POST, &format!("/api/instances/{id}/upgrade")).send().await.unwrap();
    assert_eq!(json(response, StatusCode::ACCEPTED).await["status"], "upgrading");
    let done = wait_status(&upgraded, &id, "ready", Duration::from_secs(120)).await;
    assert_eq!((done["image"].as_str(), done["last_error"].as_str()), (Some(new_image.as_str()), None), "{done}");
    assert_eq!(container_image(&sandbox), new_image);
    assert_eq!(manifest(&sandbox), before, "the data survives the new container");
    let snapshots = json(upgraded.api(Method::GET, &format!("/api/instances/{id}/snapshots")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(snapshots[0]["kind"], "upgrade", "{snapshots}");
    let again = upgraded.api(Method::POST, &format!("/api/instances/{id}/upgrade")).send().await.unwrap();
    crate::helpers::assert_error(again, StatusCode::CONFLICT, "invalid_state").await;
}

#[tokio::test]
async fn an_upgrade_to_an_image_that_never_gets_ready_is_rolled_back_with_the_data_and_the_user_told() {
    let data_dir = std::env::temp_dir().join(format!("ocaas-upgrade-{}", uuid::Uuid::new_v4().simple()));
    let (instances_dir, snapshots_dir) = (data_dir.join("instances"), data_dir.join("snapshots"));
    let app = spawn_app_with_docker(|settings| {
        settings.instances.ready_timeout = Duration::from_secs(12);
        settings.instances.disk_root = instances_dir;
        settings.snapshots.root = snapshots_dir;
    })
    .await;
    let (id, sandbox) = ready_instance(&app).await;
    write_tree(&sandbox);
    let before = manifest(&sandbox);
    let old_image = app.state.settings.instances.image.clone();
    let bad = broken(&old_image);

    // The admin command marks the instance; this server does the work and rolls it back.
    let started = Instant::now();
    let (url, dir, image) = (app.database_url.clone(), data_dir.clone(), bad.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ocaas"))
            .env("DATABASE_URL", url)
            .env("OCAAS_DATA_DIR", dir)
            .args(["admin", "instances", "upgrade", "--image", &image, "--all", "--parallel", "2"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(output.status.success(), "{printed} {}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains("rolled back"), "{printed}");
    assert!(started.elapsed() < Duration::from_secs(90), "rolled back within the timeout: {:?}", started.elapsed());

    let after = instance(&app, &id).await;
    assert_eq!(after["status"], "ready");
    assert_eq!(after["image"].as_str(), Some(old_image.as_str()));
    let error = after["last_error"].as_str().unwrap();
    assert!(error.contains("rolled back") && error.contains(&bad), "{error}");
    assert_eq!(container_image(&sandbox), old_image);
    assert_eq!(manifest(&sandbox), before, "the data is the snapshot's");
    let messages = json(app.api(Method::GET, &format!("/api/instances/{id}/chat/messages")).send().await.unwrap(), StatusCode::OK).await;
    let told = messages.as_array().unwrap().iter().any(|m| m["role"] == "system" && m["content"].as_str().unwrap().contains("rolled back"));
    assert!(told, "a system message tells the user: {messages}");
    let chat = app.api(Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/echo still here"})).send().await.unwrap();
    assert_eq!(json(chat, StatusCode::OK).await["assistant_message"]["content"], "still here");
    let _ = std::fs::remove_dir_all(&data_dir);
}

async fn status_of(db: &sqlx::PgPool, id: uuid::Uuid) -> (String, String) {
    sqlx::query_as("SELECT status, image FROM instances WHERE id = $1").bind(id).fetch_one(db).await.unwrap()
}

#[tokio::test]
async fn a_server_killed_mid_upgrade_rolls_back_at_its_next_start() {
    let image = tokio::task::spawn_blocking(sandbox_image).await.unwrap();
    let bad = broken(&image);
    let (db, url) = fresh_database().await;
    let data_dir: PathBuf = std::env::temp_dir().join(format!("ocaas-crash-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let user = service::create_user(&db, "crash@example.com", PASSWORD, None).await.unwrap();
    let key = service::create_api_key(&db, user.id, None, None).await.unwrap().key;
    service::grant_subscription(&db, "crash@example.com", 1, None).await.unwrap();
    let client = reqwest::Client::new();

    let server = serve(&url, &data_dir, &image).ready().await;
    let base = format!("http://127.0.0.1:{}", server.port);
    let created = json(client.post(format!("{base}/api/instances")).bearer_auth(&key).send().await.unwrap(), StatusCode::CREATED).await;
    let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
    let sandbox = created["sandbox_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    while status_of(&db, id).await.0 != "ready" {
        assert!(Instant::now() < deadline, "the instance never became ready");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sandbox_sh(&sandbox, "echo precious > /workspace/data.txt");

    // The admin command waits for the outcome while the server is killed under it.
    let admin = Command::new(env!("CARGO_BIN_EXE_ocaas"))
        .env("DATABASE_URL", &url)
        .env("OCAAS_DATA_DIR", &data_dir)
        .args(["admin", "instances", "upgrade", "--image", &bad, "--all"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while container_image(&sandbox) != bad {
        assert!(Instant::now() < deadline, "the upgrade never recreated the container: {:?}", status_of(&db, id).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(server); // SIGKILL, mid-way through the health gate
    assert_eq!(status_of(&db, id).await.0, "upgrading", "left half-done by the dead server");

    let restarted = serve(&url, &data_dir, &image).ready().await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let (status, now_image) = loop {
        let (status, now_image) = status_of(&db, id).await;
        if status == "ready" || status == "error" {
            break (status, now_image);
        }
        assert!(Instant::now() < deadline, "the restarted server did not finish the upgrade: {status}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!((status.as_str(), now_image.as_str()), ("ready", image.as_str()), "rolled back to the old image");
    assert_eq!(sandbox_sh(&sandbox, "cat /workspace/data.txt"), "precious");
    let printed = tokio::task::spawn_blocking(move || admin.wait_with_output().unwrap()).await.unwrap();
    assert!(String::from_utf8_lossy(&printed.stdout).contains("rolled back"), "{}", String::from_utf8_lossy(&printed.stdout));

    drop(restarted);
    let deployment: uuid::Uuid = sqlx::query_scalar("SELECT id FROM deployment").fetch_one(&db).await.unwrap();
    let leftovers = docker(&["ps", "-aq", "--filter", &format!("label=ocaas.deployment={deployment}")]);
    for container in leftovers.split_whitespace() {
        docker(&["rm", "-f", container]);
    }
    let _ = Command::new("umount").arg("-l").arg(data_dir.join("instances").join(&sandbox)).output();
    let _ = std::fs::remove_dir_all(&data_dir);
}
