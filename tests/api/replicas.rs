//! Replicas: two `ocaas serve` processes on one database. Hit with the same lifecycle calls at
//! once they never drive one instance together (every instance ends `ready`, its broker token
//! working); a process killed mid-create, mid-pack or mid-restore is taken over by the other
//! once its driver lease expires, and nothing is lost; a delete through one cancels the other's
//! driver at once.

use std::process::Command;
use std::time::{Duration, Instant};

use ocaas::auth::service;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, docker, fresh_database, json, sandbox_image, serve_process_with};

/// Whether the sandbox's broker token is accepted by the broker it was given.
fn broker_accepts(sandbox: &str) -> String {
    let script = "import os,urllib.request\nr=urllib.request.Request(os.environ['OCAAS_LLM_BASE_URL']+'/models',headers={'Authorization':'Bearer '+os.environ['OCAAS_LLM_API_KEY']})\ntry:\n  print(urllib.request.urlopen(r,timeout=10).status)\nexcept Exception as e:\n  print(e)";
    docker(&["exec", sandbox, "python3", "-c", script])
}

struct Cluster {
    db: sqlx::PgPool,
    key: String,
    bases: [String; 2],
    servers: Vec<crate::helpers::ServerProcess>,
    data_dir: std::path::PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.servers.clear();
        crate::helpers::clear_server_dir(&self.data_dir);
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Two `ocaas serve` processes on one database (and one data dir, as replicas share a key).
async fn two_servers(lease_secs: &str) -> Cluster {
    let image = tokio::task::spawn_blocking(sandbox_image).await.unwrap();
    two_servers_on(lease_secs, &image).await
}

/// `two_servers` whose sandboxes run `image`.
async fn two_servers_on(lease_secs: &str, image: &str) -> Cluster {
    let (db, url) = fresh_database().await;
    let data_dir = std::env::temp_dir().join(format!("ocaas-replicas-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&data_dir).unwrap();
    let user = service::create_user(&db, "replicas@example.com", PASSWORD, None).await.unwrap();
    let key = service::create_api_key(&db, user.id, None, None).await.unwrap().key;
    service::grant_subscription(&db, "replicas@example.com", 5, None).await.unwrap();
    let env = [("OCAAS_DRIVER_LEASE_SECS", lease_secs), ("OCAAS_READY_TIMEOUT_SECS", "60")];
    let first = serve_process_with(&url, &data_dir, image, &env).ready().await;
    let second = serve_process_with(&url, &data_dir, image, &env).ready().await;
    let bases = [format!("http://127.0.0.1:{}", first.port), format!("http://127.0.0.1:{}", second.port)];
    Cluster { db, key, bases, servers: vec![first, second], data_dir }
}

impl Cluster {
    async fn call(&self, server: usize, method: Method, path: impl AsRef<str>) -> reqwest::Response {
        reqwest::Client::new().request(method, format!("{}{}", self.bases[server], path.as_ref())).bearer_auth(&self.key).send().await.unwrap()
    }

    /// POSTs `body` to `path` (with `{id}` as `id`) and returns the JSON answer (`expect`ed).
    async fn call_json(&self, server: usize, path: &str, body: Value, id: &str, expect: StatusCode) -> Value {
        let url = format!("{}{}", self.bases[server], path.replace("{id}", id));
        json(reqwest::Client::new().post(url).bearer_auth(&self.key).json(&body).send().await.unwrap(), expect).await
    }

    /// An instance created through the first server, once ready: (id, sandbox name).
    async fn ready_instance(&self) -> (String, String) {
        let created = json(self.call(0, Method::POST, "/api/instances").await, StatusCode::CREATED).await;
        let (id, sandbox) = (created["id"].as_str().unwrap().to_owned(), created["sandbox_id"].as_str().unwrap().to_owned());
        self.all_ready(std::slice::from_ref(&id), Duration::from_secs(90)).await;
        (id, sandbox)
    }

    async fn status(&self, id: &str) -> String {
        sqlx::query_scalar("SELECT status FROM instances WHERE id = $1::uuid").bind(id).fetch_one(&self.db).await.unwrap()
    }

    /// Waits until every instance is `ready`; fails at once on `error`.
    async fn all_ready(&self, ids: &[String], limit: Duration) {
        let deadline = Instant::now() + limit;
        for id in ids {
            loop {
                let status = self.status(id).await;
                let error: Option<String> =
                    sqlx::query_scalar("SELECT last_error FROM instances WHERE id = $1::uuid").bind(id).fetch_one(&self.db).await.unwrap();
                assert_ne!(status, "error", "{id} broke: {error:?}");
                if status == "ready" {
                    break;
                }
                assert!(Instant::now() < deadline, "{id} is still {status}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test]
async fn two_servers_hit_with_the_same_calls_at_once_leave_every_instance_ready_and_reachable() {
    let cluster = two_servers("15").await;
    let mut ids = Vec::new();
    for server in [0, 1, 0] {
        let created = json(cluster.call(server, Method::POST, "/api/instances").await, StatusCode::CREATED).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    cluster.all_ready(&ids, Duration::from_secs(120)).await;
    for round in 0..3 {
        // The same call through both servers at the same moment, for every instance; then a
        // pause through one racing a snapshot through the other.
        let mut calls = Vec::new();
        for id in &ids {
            let (first, second) = if round == 2 { ("pause", "snapshots") } else { ("reboot", "reboot") };
            calls.push(cluster.call(0, Method::POST, format!("/api/instances/{id}/{first}")));
            calls.push(cluster.call(1, Method::POST, format!("/api/instances/{id}/{second}")));
        }
        for response in futures_util::future::join_all(calls).await {
            assert!(response.status().is_success() || response.status() == StatusCode::CONFLICT, "{}", response.text().await.unwrap());
        }
        if round == 2 {
            for id in &ids {
                let resumed = cluster.call(1, Method::POST, &format!("/api/instances/{id}/resume")).await;
                assert!(resumed.status().is_success() || resumed.status() == StatusCode::CONFLICT);
            }
        }
        cluster.all_ready(&ids, Duration::from_secs(120)).await;
    }
    for id in &ids {
        let sandbox: String =
            sqlx::query_scalar("SELECT sandbox_id FROM instances WHERE id = $1::uuid").bind(id).fetch_one(&cluster.db).await.unwrap();
        assert_eq!(docker(&["inspect", "-f", "{{.State.Running}} {{.State.Paused}}", &sandbox]), "true false");
        assert_eq!(broker_accepts(&sandbox), "200", "the sandbox's broker token works");
        let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM instance_leases WHERE instance_id = $1::uuid AND expires_at > now()")
            .bind(id)
            .fetch_one(&cluster.db)
            .await
            .unwrap();
        assert!(leases <= 1);
    }
}

#[tokio::test]
async fn a_server_killed_while_creating_is_taken_over_once_its_lease_expires() {
    let mut cluster = two_servers("3").await;
    let created = json(cluster.call(0, Method::POST, "/api/instances").await, StatusCode::CREATED).await;
    let id = created["id"].as_str().unwrap().to_owned();
    // The first server drives the create; it dies holding the lease, before the sandbox is ready.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let held: Option<uuid::Uuid> = sqlx::query_scalar("SELECT holder FROM instance_leases WHERE instance_id = $1::uuid")
            .bind(&id)
            .fetch_optional(&cluster.db)
            .await
            .unwrap();
        if held.is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "the create is never driven under a lease");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = Instant::now();
    cluster.servers.remove(0); // SIGKILL
    assert_eq!(cluster.status(&id).await, "provisioning", "killed mid-create");
    cluster.all_ready(std::slice::from_ref(&id), Duration::from_secs(90)).await;
    let sandbox = created["sandbox_id"].as_str().unwrap();
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", sandbox]), "true");
    println!("taken over and ready {:.1} s after the kill", killed.elapsed().as_secs_f64());
}

#[tokio::test]
async fn a_server_killed_while_packing_a_snapshot_leaves_the_instance_thawed_and_the_snapshot_failed() {
    let mut cluster = two_servers("3").await;
    let (id, sandbox) = cluster.ready_instance().await;
    // Incompressible data, so the pack takes seconds.
    docker(&["exec", &sandbox, "sh", "-c", "head -c 300000000 /dev/urandom > /workspace/big.bin"]);
    let request = reqwest::Client::new()
        .post(format!("{}/api/instances/{id}/snapshots", cluster.bases[0]))
        .bearer_auth(&cluster.key)
        .json(&json!({"name": "doomed"}));
    let pending = tokio::spawn(request.send());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let creating: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshots WHERE instance_id = $1::uuid AND status = 'creating'")
            .bind(&id)
            .fetch_one(&cluster.db)
            .await
            .unwrap();
        if creating == 1 && docker(&["inspect", "-f", "{{.State.Paused}}", &sandbox]) == "true" {
            break;
        }
        assert!(Instant::now() < deadline, "the pack never started with the sandbox frozen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.servers.remove(0); // SIGKILL, mid-pack, the sandbox frozen
    let _ = pending.await;
    // The survivor takes the lease once it expires: it thaws the sandbox and fails the snapshot.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status: String =
            sqlx::query_scalar("SELECT status FROM snapshots WHERE instance_id = $1::uuid").bind(&id).fetch_one(&cluster.db).await.unwrap();
        let paused = docker(&["inspect", "-f", "{{.State.Paused}}", &sandbox]);
        if status == "failed" && paused == "false" {
            break;
        }
        assert!(Instant::now() < deadline, "still: snapshot {status}, paused {paused}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leftovers = Command::new("find").arg(cluster.data_dir.join("snapshots")).args(["-name", "*.part"]).output().unwrap();
    assert!(leftovers.stdout.is_empty(), "the dead pack's part file stays: {}", String::from_utf8_lossy(&leftovers.stdout));
    assert_eq!(cluster.status(&id).await, "ready");
    let exec =
        cluster.call_json(1, "/api/instances/{id}/terminal/exec", json!({"command": "stat -c %s /workspace/big.bin"}), &id, StatusCode::OK).await;
    assert_eq!(exec["stdout"].as_str().map(str::trim), Some("300000000"), "{exec}");
}

#[tokio::test]
async fn a_server_killed_while_restoring_is_taken_over_and_the_restore_finishes() {
    let mut cluster = two_servers("3").await;
    let (id, sandbox) = cluster.ready_instance().await;
    docker(&["exec", &sandbox, "sh", "-c", "head -c 200000000 /dev/urandom > /workspace/big.bin && echo before > /workspace/mark.txt"]);
    let snapshot = cluster.call_json(0, "/api/instances/{id}/snapshots", json!({"name": "good"}), &id, StatusCode::CREATED).await;
    assert_eq!(snapshot["status"], "ready", "{snapshot}");
    docker(&["exec", &sandbox, "sh", "-c", "echo after > /workspace/mark.txt"]);
    let url = format!("{}/api/instances/{id}/restore", cluster.bases[0]);
    let restoring = reqwest::Client::new().post(url).bearer_auth(&cluster.key).json(&json!({"snapshot_id": snapshot["id"]})).send().await.unwrap();
    assert_eq!(restoring.status(), StatusCode::ACCEPTED);
    // Killed while it unpacks: the container stopped, the storage half written.
    let deadline = Instant::now() + Duration::from_secs(30);
    while docker(&["inspect", "-f", "{{.State.Running}}", &sandbox]) != "false" {
        assert!(Instant::now() < deadline, "the restore never stopped the sandbox");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.servers.remove(0); // SIGKILL
    assert_eq!(cluster.status(&id).await, "restoring");
    cluster.all_ready(std::slice::from_ref(&id), Duration::from_secs(90)).await;
    let exec = cluster
        .call_json(
            1,
            "/api/instances/{id}/terminal/exec",
            json!({"command": "cat /workspace/mark.txt; stat -c %s /workspace/big.bin"}),
            &id,
            StatusCode::OK,
        )
        .await;
    assert_eq!(exec["stdout"], "before\n200000000\n", "{exec}");
}

#[tokio::test]
async fn a_delete_through_one_server_cancels_the_other_servers_driver_at_once() {
    // Sandboxes that never get ready: the first server's provision would hold the instance for
    // the whole ready timeout (60 s here).
    let image = tokio::task::spawn_blocking(sandbox_image).await.unwrap();
    let never_ready = crate::upgrade::broken(&image);
    let cluster = two_servers_on("15", &never_ready).await;
    let created = json(cluster.call(0, Method::POST, "/api/instances").await, StatusCode::CREATED).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sqlx::query_scalar::<_, i64>("SELECT count(*) FROM instance_leases WHERE instance_id = $1::uuid")
        .bind(&id)
        .fetch_one(&cluster.db)
        .await
        .unwrap()
        == 0
    {
        assert!(Instant::now() < deadline, "the provision never took the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let deleted = cluster.call(1, Method::DELETE, format!("/api/instances/{id}")).await;
    assert!(asked.elapsed() < Duration::from_secs(15), "the delete waited {:?} for the other server's provision", asked.elapsed());
    assert!(deleted.status().is_success(), "{}", deleted.text().await.unwrap());
    let deadline = asked + Duration::from_secs(15);
    loop {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE id = $1::uuid").bind(&id).fetch_one(&cluster.db).await.unwrap();
        if rows == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the delete waited for the other server's provision");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(docker(&["ps", "-aq", "--filter", &format!("name={}", created["sandbox_id"].as_str().unwrap())]).is_empty(), "the sandbox is gone");
    println!("deleted {:.1} s after asking", asked.elapsed().as_secs_f64());
}
