//! Snapshots against real sandboxes: a tree with binary, large and executable files plus the
//! agent's state comes back byte for byte (sha256 of every file, modes) after damage and a
//! restore; a clone is an independent copy; a snapshot during a streaming turn leaves the turn
//! whole; scheduled backups run and prune.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, assert_error, json, ready_instance, sandbox_sh, spawn_app_with_docker};
use crate::idle::{instance, wait_status};
use crate::sse::SseReader;

/// Every file and directory under the workspace and the agent's state: path, mode, sha256 —
/// but the gateway's config, which ocaas writes at each start with the instance's current
/// tokens (a new container gets a new broker token), and the gateway's paired devices, which
/// change whenever ocaas (re)pairs with it.
pub fn manifest(sandbox: &str) -> String {
    let script = "cd / && find workspace agent-state -mindepth 1 ! -name openclaw.json ! -path 'agent-state/devices*' | sort | while read -r p; do \
                  if [ -f \"$p\" ] && [ ! -L \"$p\" ]; then echo \"$p $(stat -c %a \"$p\") $(sha256sum < \"$p\" | cut -c1-64)\"; \
                  else echo \"$p $(stat -c %a \"$p\") $(stat -c %F \"$p\")\"; fi; done";
    sandbox_sh(sandbox, script)
}

/// Writes the test's tree: text, binary, a 32 MiB file, an executable, a link, agent state.
pub fn write_tree(sandbox: &str) {
    let script = "set -e; mkdir -p /workspace/src/deep; echo 'fn main() {}' > /workspace/src/main.rs; \
                  head -c 65536 /dev/urandom > /workspace/src/deep/blob.bin; \
                  head -c 33554432 /dev/urandom > /workspace/large.bin; \
                  printf '#!/bin/sh\\necho hi\\n' > /workspace/run.sh; chmod 750 /workspace/run.sh; \
                  ln -s src/main.rs /workspace/link; \
                  mkdir -p /agent-state/memory; echo '{\"facts\":[\"likes tea\"]}' > /agent-state/memory/facts.json; echo done";
    assert_eq!(sandbox_sh(sandbox, script), "done");
}

pub async fn snapshot(app: &TestApp, id: &str, name: &str) -> Value {
    let response = app.api(Method::POST, &format!("/api/instances/{id}/snapshots")).json(&json!({"name": name})).send().await.unwrap();
    json(response, StatusCode::CREATED).await
}

pub async fn restore(app: &TestApp, id: &str, snapshot_id: &str) {
    let response = app.api(Method::POST, &format!("/api/instances/{id}/restore")).json(&json!({"snapshot_id": snapshot_id})).send().await.unwrap();
    assert_eq!(json(response, StatusCode::ACCEPTED).await["status"], "restoring");
    wait_status(app, id, "ready", Duration::from_secs(120)).await;
}

#[tokio::test]
async fn a_restore_brings_back_every_file_byte_for_byte_and_the_download_matches_its_digest() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    write_tree(&sandbox);
    let before = manifest(&sandbox);
    assert!(before.contains("workspace/run.sh 750") && before.contains("agent-state/memory/facts.json"), "{before}");

    let taken = snapshot(&app, &id, "good state").await;
    assert_eq!((taken["status"].as_str(), taken["kind"].as_str(), taken["name"].as_str()), (Some("ready"), Some("manual"), Some("good state")));
    let sid = taken["id"].as_str().unwrap().to_owned();
    assert_eq!(instance(&app, &id).await["status"], "ready", "the instance runs again after the copy");

    let download = app.api(Method::GET, &format!("/api/instances/{id}/snapshots/{sid}/download")).send().await.unwrap();
    assert_eq!(download.status(), StatusCode::OK, "{:?}", download.headers());
    assert_eq!(download.headers()["content-length"].to_str().unwrap(), taken["size_bytes"].to_string());
    let bytes = download.bytes().await.unwrap();
    assert_eq!(format!("{:x}", Sha256::digest(&bytes)), taken["sha256"].as_str().unwrap());

    // Damage both the workspace and the agent's state.
    sandbox_sh(&sandbox, "rm -rf /workspace/src; echo changed > /workspace/large.bin; echo x > /workspace/new.txt; rm -rf /agent-state/memory");
    assert_ne!(manifest(&sandbox), before);
    restore(&app, &id, &sid).await;
    assert_eq!(manifest(&sandbox), before, "identical tree after the restore");

    let listed = json(app.api(Method::GET, &format!("/api/instances/{id}/snapshots")).send().await.unwrap(), StatusCode::OK).await;
    let kinds: Vec<&str> = listed.as_array().unwrap().iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["safety", "manual"], "a safety snapshot was taken before the restore, newest first");
    let safety = listed[0]["id"].as_str().unwrap().to_owned();
    restore(&app, &id, &safety).await;
    assert!(sandbox_sh(&sandbox, "cat /workspace/new.txt") == "x", "the safety snapshot holds the damaged state");

    let missing =
        app.api(Method::POST, &format!("/api/instances/{id}/restore")).json(&json!({"snapshot_id": uuid::Uuid::new_v4()})).send().await.unwrap();
    assert_error(missing, StatusCode::NOT_FOUND, "snapshot_not_found").await;
    let deleted = app.api(Method::DELETE, &format!("/api/instances/{id}/snapshots/{sid}")).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app.api(Method::GET, &format!("/api/instances/{id}/snapshots/{sid}/download")).send().await.unwrap();
    assert_error(gone, StatusCode::NOT_FOUND, "snapshot_not_found").await;
}

#[tokio::test]
async fn a_clone_is_an_independent_copy_with_its_own_tokens() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    write_tree(&sandbox);
    let before = manifest(&sandbox);
    let sid = snapshot(&app, &id, "to clone").await["id"].as_str().unwrap().to_owned();

    let created = app.api(Method::POST, "/api/instances").json(&json!({"from_snapshot": sid, "name": "clone"})).send().await.unwrap();
    let clone = json(created, StatusCode::CREATED).await;
    let (clone_id, clone_sandbox) = (clone["id"].as_str().unwrap().to_owned(), clone["sandbox_id"].as_str().unwrap().to_owned());
    wait_status(&app, &clone_id, "ready", Duration::from_secs(120)).await;
    assert_eq!(manifest(&clone_sandbox), before, "the clone starts with the snapshot's contents");

    sandbox_sh(&clone_sandbox, "echo only-in-clone > /workspace/clone.txt; rm /workspace/large.bin");
    assert_eq!(manifest(&sandbox), before, "the original is untouched");
    let tokens: Vec<String> = sqlx::query_scalar("SELECT gateway_token FROM instances").fetch_all(&app.db).await.unwrap();
    assert_eq!(tokens.len(), 2);
    assert_ne!(tokens[0], tokens[1], "the clone has its own gateway token");

    let foreign = app.api(Method::POST, "/api/instances").json(&json!({"from_snapshot": uuid::Uuid::new_v4()})).send().await.unwrap();
    assert_error(foreign, StatusCode::NOT_FOUND, "snapshot_not_found").await;
}

#[tokio::test]
async fn a_snapshot_during_a_streaming_turn_leaves_the_turn_whole_and_is_restorable() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    sandbox_sh(&sandbox, "echo before > /workspace/state.txt");
    let stream = app
        .api(Method::POST, &format!("/api/instances/{id}/chat/stream"))
        .json(&json!({"message": "/slow 300 one two three four five six seven eight"}))
        .send()
        .await
        .unwrap();
    let mut reader = SseReader::new(stream);
    // Once the answer is streaming, freeze and copy the instance under it.
    loop {
        let event = reader.next(Duration::from_secs(30)).await.expect("the turn streams");
        if event.event == "message" && event.data.get("delta").is_some() {
            break;
        }
    }
    let taken = snapshot(&app, &id, "mid-turn").await;
    let rest = reader.all(Duration::from_secs(30)).await;
    let complete = rest.iter().find(|e| e.event == "complete").expect("the turn completes");
    let answer = complete.data["assistant_message"]["content"].as_str().unwrap();
    assert_eq!(complete.data["assistant_message"]["status"], "complete");
    assert!(answer.contains("one") && answer.contains("eight"), "{answer}");

    sandbox_sh(&sandbox, "echo after > /workspace/state.txt");
    restore(&app, &id, taken["id"].as_str().unwrap()).await;
    assert_eq!(sandbox_sh(&sandbox, "cat /workspace/state.txt"), "before");
}

#[tokio::test]
async fn scheduled_backups_run_and_keep_only_the_newest() {
    let app = spawn_app_with_docker(|settings| {
        settings.snapshots.backup_interval = Duration::from_secs(2);
        settings.snapshots.backup_keep = 2;
        settings.idle.check_interval = Duration::from_millis(300);
    })
    .await;
    let (id, _) = ready_instance(&app).await;
    let scheduled = |app: &TestApp| {
        let db = app.db.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>("SELECT id FROM snapshots WHERE kind = 'scheduled' AND status = 'ready' ORDER BY created_at")
                .fetch_all(&db)
                .await
                .unwrap()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let first = loop {
        if let Some(first) = scheduled(&app).await.first().copied() {
            break first;
        }
        assert!(Instant::now() < deadline, "no scheduled backup was taken");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Keep using the instance so each interval has something new to back up.
    loop {
        app.api(Method::GET, &format!("/api/instances/{id}/files?path=/workspace")).send().await.unwrap();
        let now = scheduled(&app).await;
        assert!(now.len() <= 2, "at most `keep` scheduled snapshots: {now:?}");
        if now.len() == 2 && !now.contains(&first) {
            break;
        }
        assert!(Instant::now() < deadline, "the oldest backup was never pruned: {now:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let listed = json(app.api(Method::GET, &format!("/api/instances/{id}/snapshots")).send().await.unwrap(), StatusCode::OK).await;
    assert!(listed.as_array().unwrap().iter().all(|s| s["kind"] == "scheduled"), "{listed}");
}

/// Every replica runs the backup schedule: two passes at once back a due instance up once.
#[tokio::test]
async fn two_replicas_schedules_back_an_instance_up_once_per_interval() {
    // An hour apart: only the passes this test runs can find the instance due.
    let app = spawn_app_with_docker(|settings| settings.snapshots.backup_interval = Duration::from_secs(3600)).await;
    let other = crate::helpers::respawn(&app).await;
    let (id, _) = ready_instance(&app).await;
    let pass = |app: &TestApp| {
        let state = app.state.clone();
        tokio::spawn(async move { ocaas::snapshots::schedule::run_once(&state, &std::sync::Arc::new(tokio::sync::Semaphore::new(1))).await })
    };
    let (first, second) = (pass(&app), pass(&other));
    first.await.unwrap().unwrap();
    second.await.unwrap().unwrap();
    let taken: Vec<String> = sqlx::query_scalar("SELECT status FROM snapshots WHERE instance_id = $1::uuid AND kind = 'scheduled'")
        .bind(&id)
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(taken, vec!["ready".to_owned()], "one backup, not one per replica");
}

#[tokio::test]
async fn snapshots_past_the_users_storage_quota_are_refused_stopped_mid_pack_and_leave_nothing() {
    let app = spawn_app_with_docker(|settings| settings.snapshots.quota_bytes = 2 << 20).await;
    let (id, sandbox) = ready_instance(&app).await;
    let first = snapshot(&app, &id, "fits").await;
    let list = |app: &TestApp| app.api(Method::GET, &format!("/api/instances/{id}/snapshots")).send();
    let files = |app: &TestApp| {
        let dir = app.state.settings.snapshots.root.join(app.user.id.to_string());
        let mut names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    // 4 MiB of noise does not fit in what the 2 MiB quota leaves: the pack stops past it.
    assert_eq!(sandbox_sh(&sandbox, "head -c 4194304 /dev/urandom > /workspace/noise.bin && echo done"), "done");
    let refused = app.api(Method::POST, &format!("/api/instances/{id}/snapshots")).json(&json!({})).send().await.unwrap();
    let body = assert_error(refused, StatusCode::FORBIDDEN, "snapshot_quota_exceeded").await;
    assert!(body["message"].as_str().unwrap().contains("not kept"), "{body}");
    let kept = json(list(&app).await.unwrap(), StatusCode::OK).await;
    assert_eq!(kept.as_array().map(Vec::len), Some(1), "only the first snapshot is listed: {kept}");
    assert_eq!(files(&app), vec![format!("{}.tar.gz", first["id"].as_str().unwrap())], "no partial archive is left on the host");

    // With the quota used up, a new snapshot is refused before anything is packed.
    sqlx::query("UPDATE subscriptions SET snapshot_quota_bytes = 1 WHERE user_id = $1").bind(app.user.id).execute(&app.db).await.unwrap();
    let refused = app.api(Method::POST, &format!("/api/instances/{id}/snapshots")).json(&json!({})).send().await.unwrap();
    let body = assert_error(refused, StatusCode::FORBIDDEN, "snapshot_quota_exceeded").await;
    assert!(body["message"].as_str().unwrap().contains("delete some"), "{body}");
    let sid = first["id"].as_str().unwrap();
    assert_eq!(app.api(Method::DELETE, &format!("/api/instances/{id}/snapshots/{sid}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    sqlx::query("UPDATE subscriptions SET snapshot_quota_bytes = $2 WHERE user_id = $1")
        .bind(app.user.id)
        .bind(2i64 << 20)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(sandbox_sh(&sandbox, "rm /workspace/noise.bin && echo done"), "done");
    snapshot(&app, &id, "fits again").await;
}
