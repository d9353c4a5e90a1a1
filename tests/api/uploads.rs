//! Uploads written straight into the instance's storage: links resolved as the sandbox sees
//! them (never on the host), the file part before `targetDir` still works, and an upload cut
//! off midway leaves neither a partial file in the sandbox nor a spool file on the server.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::helpers::{TestApp, assert_error, json, ready_instance, sandbox_sh, spawn_app_with_docker};

async fn upload(app: &TestApp, id: &str, target_dir: &str, name: &str, body: &'static [u8], file_first: bool) -> reqwest::Response {
    let part = || reqwest::multipart::Part::bytes(body).file_name(name.to_owned());
    let form = if file_first {
        reqwest::multipart::Form::new().part("file", part()).text("targetDir", target_dir.to_owned())
    } else {
        reqwest::multipart::Form::new().text("targetDir", target_dir.to_owned()).part("file", part())
    };
    app.api(Method::POST, &format!("/api/instances/{id}/files/upload")).multipart(form).send().await.unwrap()
}

#[tokio::test]
async fn uploads_follow_links_inside_the_sandbox_and_never_write_on_the_host() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let probe = format!("ocaas-escape-{}", uuid::Uuid::new_v4().simple());
    sandbox_sh(
        &sandbox,
        &format!(
            "mkdir -p /agent-state/real && ln -s /agent-state/real /workspace/via-link && ln -s /tmp/{probe} /workspace/abs \
             && ln -s ../../../../../../../../tmp/{probe}-rel /workspace/rel"
        ),
    );
    // Straight in, in either order of the form's parts, and through a link the sandbox resolves.
    for (dir, name, file_first) in
        [("/workspace/plain", "a.txt", false), ("/workspace/plain", "b.txt", true), ("/workspace/via-link", "c.txt", false)]
    {
        let response = upload(&app, &id, dir, name, b"uploaded bytes\n", file_first).await;
        assert_eq!(json(response, StatusCode::OK).await["size"], 15, "{dir}/{name}");
    }
    assert_eq!(sandbox_sh(&sandbox, "cat /workspace/plain/a.txt /workspace/plain/b.txt /agent-state/real/c.txt | wc -l"), "3");
    assert_eq!(sandbox_sh(&sandbox, "stat -c '%u:%g %a' /workspace/plain/a.txt /agent-state/real/c.txt | sort -u"), "1000:1000 644");
    let write = json!({"path": "/workspace/via-link/d.txt", "content": "written"});
    let response = app.api(Method::POST, &format!("/api/instances/{id}/files/write")).json(&write).send().await.unwrap();
    json(response, StatusCode::OK).await;
    assert_eq!(sandbox_sh(&sandbox, "cat /agent-state/real/d.txt"), "written");

    // A `fileName` after the file part names the file; a `targetDir` sent again after it is refused.
    let form = reqwest::multipart::Form::new()
        .text("targetDir", "/workspace/plain")
        .part("file", reqwest::multipart::Part::bytes(&b"renamed\n"[..]).file_name("part-name.txt"))
        .text("fileName", "late-name.txt");
    let response = app.api(Method::POST, &format!("/api/instances/{id}/files/upload")).multipart(form).send().await.unwrap();
    assert_eq!(json(response, StatusCode::OK).await["path"], "/workspace/plain/late-name.txt");
    let form = reqwest::multipart::Form::new()
        .text("targetDir", "/workspace/plain")
        .part("file", reqwest::multipart::Part::bytes(&b"moved\n"[..]).file_name("moved.txt"))
        .text("targetDir", "/workspace/plain/deeper");
    let response = app.api(Method::POST, &format!("/api/instances/{id}/files/upload")).multipart(form).send().await.unwrap();
    crate::helpers::assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_eq!(sandbox_sh(&sandbox, "ls /workspace/plain; ls /workspace/plain/deeper 2>/dev/null | wc -l"), "a.txt\nb.txt\nlate-name.txt\n0");

    // Links out of the storage point into the sandbox's own /tmp, never the host's.
    for dir in ["/workspace/abs", "/workspace/rel"] {
        let response = upload(&app, &id, dir, "escape.txt", b"should not reach the host", false).await;
        let status = response.status();
        assert!(status != StatusCode::INTERNAL_SERVER_ERROR, "{dir}: {status} {}", response.text().await.unwrap());
    }
    for host_path in [format!("/tmp/{probe}"), format!("/tmp/{probe}-rel")] {
        assert!(!std::path::Path::new(&host_path).exists(), "{host_path} was created on the host");
    }
    // No temporary file is left in the sandbox.
    assert_eq!(sandbox_sh(&sandbox, "find /workspace /agent-state -name '.ocaas-upload-*' | wc -l"), "0");
}

#[tokio::test]
async fn an_upload_cut_off_midway_leaves_no_partial_file_and_no_spool() {
    let spool = std::env::temp_dir().join(format!("ocaas-test-spool-{}", uuid::Uuid::new_v4().simple()));
    let spool_dir = spool.clone();
    let app = spawn_app_with_docker(move |s| s.instances.spool_dir = spool_dir).await;
    let (id, sandbox) = ready_instance(&app).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    for file_first in [false, true] {
        let boundary = "cutcutcut";
        let target = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"targetDir\"\r\n\r\n/workspace/cut\r\n");
        let file = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.bin\"\r\n\r\n");
        let head = if file_first { file } else { format!("{target}{file}") };
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let request = format!(
            "POST /api/instances/{id}/files/upload HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{head}",
            app.user.key,
            100 << 20
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        // 8 MiB of the promised 100, then the client is gone.
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..8 {
            stream.write_all(&chunk).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(stream);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = sandbox_sh(&sandbox, "find /workspace -name '.ocaas-upload-*' -o -name big.bin | wc -l");
            let spooled = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
            if left == "0" && spooled == 0 {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "file_first={file_first}: {left} files in the sandbox, {spooled} spooled");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let _ = std::fs::remove_dir_all(&spool);
}

#[tokio::test]
async fn a_spooled_upload_holds_no_more_than_the_instance_has_room_for() {
    let spool = std::env::temp_dir().join(format!("ocaas-test-spool-{}", uuid::Uuid::new_v4().simple()));
    let spool_dir = spool.clone();
    let app = spawn_app_with_docker(move |s| {
        s.instances.spool_dir = spool_dir;
        s.instances.disk_quota_bytes = 64 << 20;
    })
    .await;
    let (id, sandbox) = ready_instance(&app).await;
    sandbox_sh(&sandbox, "head -c 40000000 /dev/zero > /workspace/filler");
    // The file part before `targetDir`: the upload is spooled on the server first.
    let upload = |size: usize| {
        let file = reqwest::multipart::Part::bytes(vec![b'y'; size]).file_name("spooled.bin");
        let form = reqwest::multipart::Form::new().part("file", file).text("targetDir", "/workspace");
        app.api(Method::POST, &format!("/api/instances/{id}/files/upload")).multipart(form).send()
    };
    let refused = assert_error(upload(30 << 20).await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
    assert!(refused["message"].as_str().unwrap().contains("storage is full for this file: it has room for"), "{refused}");
    assert_eq!(std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0), 0, "nothing stays in the spool");
    assert_eq!(upload(4 << 20).await.unwrap().status(), StatusCode::OK, "what fits goes in");
    assert_eq!(sandbox_sh(&sandbox, "stat -c %s /workspace/spooled.bin"), (4 << 20).to_string());
    let _ = std::fs::remove_dir_all(&spool);
}
