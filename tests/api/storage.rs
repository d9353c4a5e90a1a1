//! An instance's storage on the host: the disk quota (ENOSPC inside, the host's free space
//! kept, usage in `status`), the capped container log, and the agent's state surviving the
//! container's re-creation and going away with the instance.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::helpers::{json, ready_instance, spawn_app_with_docker};
use crate::isolation::tenant_sh;

const QUOTA: u64 = 64 << 20;
const LOG_CAP: u64 = 4 << 20;

/// Bytes of host disk the file really takes (its allocated blocks; the image is sparse).
fn allocated_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[tokio::test]
async fn writing_past_the_quota_fails_inside_and_spares_the_host() {
    let app = spawn_app_with_docker(|settings| settings.instances.disk_quota_bytes = QUOTA).await;
    let (id, sandbox) = ready_instance(&app).await;
    // What the tenant can take from the host is its image's allocation (other tests and builds
    // write to the same disk at the same time, so the disk's free space is no measure).
    let image = app.state.settings.instances.disk_root.join(format!("{sandbox}.img"));
    let before = allocated_bytes(&image);
    // Twice the quota, from inside the sandbox, into the workspace and then the agent's state.
    let out =
        tenant_sh(&app, &id, "head -c 134217728 /dev/urandom > /workspace/fill; echo ws=$?; echo more > ~/.openclaw/after-full; echo state=$?").await;
    let stderr = out["stderr"].as_str().unwrap();
    assert!(stderr.contains("No space left on device"), "{out}");
    let stdout = out["stdout"].as_str().unwrap();
    assert!(stdout.contains("ws=1") && stdout.contains("state=1"), "both places share the quota: {out}");
    let after = allocated_bytes(&image);
    assert!(after <= QUOTA, "the image takes {after} bytes of the host's disk, more than the {QUOTA} quota");
    assert!(after - before >= QUOTA / 2, "the writes landed in the image ({before} → {after} bytes)");

    let status = json(app.api(Method::GET, &format!("/api/instances/{id}/status")).send().await.unwrap(), StatusCode::OK).await;
    let (used, limit) = (status["disk"]["used_bytes"].as_u64().unwrap(), status["disk"]["limit_bytes"].as_u64().unwrap());
    assert_eq!(limit, QUOTA, "{status}");
    assert!(used > QUOTA * 8 / 10 && used <= QUOTA, "{status}");
    // An upload past the quota is a clear error, and leaves no partial file behind.
    let form = reqwest::multipart::Form::new()
        .text("targetDir", "/workspace")
        .part("file", reqwest::multipart::Part::bytes(vec![1u8; (QUOTA / 2) as usize]).file_name("too-big.bin"));
    let response = app.api(Method::POST, &format!("/api/instances/{id}/files/upload")).multipart(form).send().await.unwrap();
    // The same answer whether it was written straight in or found not to fit first (on a node).
    let error = crate::helpers::assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
    assert!(error["message"].as_str().unwrap().contains("storage is full"), "{error}");
    let left = tenant_sh(&app, &id, "ls -A /workspace | grep -c -e too-big -e .ocaas-upload || true").await;
    assert_eq!(left["stdout"], "0\n", "{left}");
    // Freeing space works as on any disk.
    let freed = tenant_sh(&app, &id, "rm /workspace/fill && echo ok > /workspace/small && cat /workspace/small").await;
    assert_eq!(freed["stdout"], "ok\n", "{freed}");
}

#[tokio::test]
async fn a_flood_on_stdout_leaves_the_container_log_under_its_cap() {
    let app = spawn_app_with_docker(|settings| settings.instances.limits.log_bytes = LOG_CAP).await;
    let (id, sandbox) = ready_instance(&app).await;
    // 100 MB of lines onto the container's own stdout (the init process's, which the engine logs).
    let out = tenant_sh(&app, &id, "head -c 100000000 /dev/zero | tr '\\0' x | fold -w 999 > /proc/1/fd/1; echo done=$?").await;
    assert_eq!(out["stdout"], "done=0\n", "{out}");
    let log_path = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("docker").args(["inspect", "-f", "{{.LogPath}}", &sandbox]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    })
    .await
    .unwrap();
    let dir = std::path::Path::new(&log_path).parent().unwrap();
    let total: u64 = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().contains("-json.log"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    // Two files of half the cap each, plus the line being written when it rotated.
    assert!(total <= LOG_CAP + (64 << 10), "container log holds {total} bytes, cap {LOG_CAP}");
}

#[tokio::test]
async fn the_agents_state_survives_recreation_and_goes_with_the_instance() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let wrote = tenant_sh(&app, &id, "echo remembered > ~/.openclaw/memory.md && echo hi > /workspace/kept.txt && readlink -f ~/.openclaw").await;
    assert_eq!(wrote["stdout"], "/agent-state\n", "{wrote}");

    // The container vanishes (an upgrade or a repair re-creates it); reboot creates it again.
    let name = sandbox.clone();
    tokio::task::spawn_blocking(move || std::process::Command::new("docker").args(["rm", "-f", &name]).output().unwrap()).await.unwrap();
    let response = app.api(Method::POST, &format!("/api/instances/{id}/reboot")).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let body = json(app.api(Method::GET, &format!("/api/instances/{id}")).send().await.unwrap(), StatusCode::OK).await;
        if body["status"] == "ready" {
            break;
        }
        assert!(std::time::Instant::now() < deadline && body["status"] != "error", "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let read = tenant_sh(&app, &id, "cat ~/.openclaw/memory.md /workspace/kept.txt; ls ~/.openclaw/openclaw.json").await;
    assert_eq!(read["stdout"], "remembered\nhi\n/home/sandbox/.openclaw/openclaw.json\n", "{read}");

    // Deleting the instance removes its storage: the mount, the directory and the image.
    let dir = app.state.settings.instances.disk_root.join(&sandbox);
    assert!(dir.with_extension("img").exists());
    let response = app.api(Method::DELETE, &format!("/api/instances/{id}")).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dir.exists() || dir.with_extension("img").exists() {
        assert!(std::time::Instant::now() < deadline, "storage of a deleted instance is still at {}", dir.display());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(!mounts.contains(&sandbox), "still mounted: {mounts}");
}
