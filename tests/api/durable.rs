//! An instance's facts live with it: an admin command run with the server's environment keeps a
//! plain-directory instance as it is; a server restarted with another `OCAAS_INSTANCE_DISK`
//! leaves existing instances' storage where it was; `migrate-storage` moves a plain directory
//! into an image, data and all. (Its driver's lease across processes: `replicas.rs`.)

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, docker, json, ready_instance, respawn_with, same_host_policy, spawn_app_with_docker};
use crate::idle::wait_status;

fn mounted(dir: &Path) -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).any(|point| Path::new(point) == dir)
}

async fn write(app: &TestApp, id: &str, path: &str, content: &str) {
    let response =
        app.api(Method::POST, &format!("/api/instances/{id}/files/write")).json(&json!({"path": path, "content": content})).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn read(app: &TestApp, id: &str, path: &str) -> Value {
    let response = app.api(Method::GET, &format!("/api/instances/{id}/files/read?path={path}")).send().await.unwrap();
    json(response, StatusCode::OK).await
}

/// `ocaas admin …` with the test server's database, policy and the given disk setting.
fn admin(app: &TestApp, data_dir: &Path, disk: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocaas"));
    same_host_policy(&mut command)
        .env("DATABASE_URL", &app.database_url)
        .env("OCAAS_DATA_DIR", data_dir)
        .env("OCAAS_INSTANCE_DISK", disk)
        .env("OCAAS_INSTANCE_MEMORY", "512m")
        .args(["admin", "instances"])
        .args(args);
    command
}

/// A server whose instances get plain directories (`OCAAS_INSTANCE_DISK=0`), and the data dir
/// its admin commands share with it (its snapshots live there), as in production.
async fn plain_directory_server() -> (TestApp, std::path::PathBuf) {
    let data_dir = std::env::temp_dir().join(format!("ocaas-admin-{}", uuid::Uuid::new_v4().simple()));
    let snapshots = data_dir.join("snapshots");
    let app = spawn_app_with_docker(|s| {
        s.instances.disk_quota_bytes = 0;
        s.snapshots.root = snapshots;
    })
    .await;
    (app, data_dir)
}

#[tokio::test]
async fn the_admin_upgrade_runs_on_the_servers_settings_and_keeps_a_plain_directory_instance() {
    let (app, data_dir) = plain_directory_server().await;
    let (id, sandbox) = ready_instance(&app).await;
    write(&app, &id, "/workspace/precious.txt", "keep me").await;
    let storage = app.state.settings.instances.disk_root.join(&sandbox);
    assert!(!mounted(&storage), "a plain directory instance");
    let new_image = crate::upgrade::renamed(&app.state.settings.instances.image);
    let upgrade = ["upgrade", "--image", new_image.as_str(), "--email", app.user.email.as_str()];
    // The command reads the server's environment: a bad value there stops it before anything.
    let refused = tokio::task::spawn_blocking({
        let mut command = admin(&app, &data_dir, "lots", &upgrade);
        move || command.output().unwrap()
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("OCAAS_INSTANCE_DISK") && said.contains("lots"), "{said}");
    assert_eq!(wait_status(&app, &id, "ready", Duration::from_secs(5)).await["image"], app.state.settings.instances.image.as_str());

    let mut command = admin(&app, &data_dir, "0", &upgrade);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("upgraded to"), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(read(&app, &id, "/workspace/precious.txt").await["content"], "keep me");
    assert!(!mounted(&storage) && !storage.with_extension("img").exists(), "nothing was mounted over the user's files");
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.Memory}}", &sandbox]), (512i64 << 20).to_string(), "the server's memory limit");
    // The egress policy is still the server's: its brokers' ports open to sandboxes.
    let host_rules = String::from_utf8_lossy(&Command::new("iptables").args(["-S", "OCAAS-HOST"]).output().unwrap().stdout).into_owned();
    assert!(host_rules.contains("18800:18999"), "{host_rules}");
    let _ = std::fs::remove_dir_all(&data_dir);
    app.settle().await;
}

#[tokio::test]
async fn a_restart_with_another_disk_setting_leaves_existing_instances_where_they_were() {
    let app = spawn_app_with_docker(|s| s.instances.disk_quota_bytes = 0).await;
    let (id, sandbox) = ready_instance(&app).await;
    write(&app, &id, "/workspace/plain.txt", "in a plain directory").await;
    app.state.shutdown.cancel();
    let later = respawn_with(&app, |s| s.instances.disk_quota_bytes = 1 << 30).await;
    let rebooted = later.api(Method::POST, &format!("/api/instances/{id}/reboot")).send().await.unwrap();
    assert_eq!(rebooted.status(), StatusCode::ACCEPTED);
    wait_status(&later, &id, "ready", Duration::from_secs(90)).await;
    assert_eq!(read(&later, &id, "/workspace/plain.txt").await["content"], "in a plain directory");
    let storage = later.state.settings.instances.disk_root.join(&sandbox);
    assert!(!mounted(&storage), "the old instance keeps its plain directory");
    // A new instance gets what the settings say now: a quota'd image.
    let created = json(later.api(Method::POST, "/api/instances").send().await.unwrap(), StatusCode::CREATED).await;
    let fresh = created["id"].as_str().unwrap();
    wait_status(&later, fresh, "ready", Duration::from_secs(90)).await;
    assert!(mounted(&later.state.settings.instances.disk_root.join(created["sandbox_id"].as_str().unwrap())));
    later.settle().await;
}

#[tokio::test]
async fn migrate_storage_moves_a_plain_directory_instance_into_an_image_with_its_data() {
    let (app, data_dir) = plain_directory_server().await;
    let (id, sandbox) = ready_instance(&app).await;
    write(&app, &id, "/workspace/moving.txt", "comes along").await;
    let old_dir = app.state.settings.instances.disk_root.join(&sandbox);
    let mut command = admin(&app, &data_dir, "512m", &["migrate-storage", "--email", &app.user.email]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("moved (down"), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(read(&app, &id, "/workspace/moving.txt").await["content"], "comes along");
    let (kind, dir, quota): (String, String, i64) =
        sqlx::query_as("SELECT storage_kind, storage_dir, disk_quota_bytes FROM instances WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((kind.as_str(), quota), ("image", 512 << 20));
    assert!(mounted(Path::new(&dir)), "the new storage is a mounted image");
    assert!(!old_dir.exists(), "the old directory is gone");
    let df = docker(&["exec", &sandbox, "df", "-B1", "--output=size", "/workspace"]);
    let size: u64 = df.lines().last().unwrap().trim().parse().unwrap();
    assert!(size > 400 << 20 && size <= 512 << 20, "the sandbox sees the quota: {df}");
    // A second run finds nothing to do.
    let again = admin(&app, &data_dir, "512m", &["migrate-storage", "--all"]).output().unwrap();
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already"), "{}", String::from_utf8_lossy(&again.stderr));
    let _ = std::fs::remove_dir_all(&data_dir);
    app.settle().await;
}
