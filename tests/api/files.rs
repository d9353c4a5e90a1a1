//! The file API against a real sandbox: contents byte-exact both ways, listing, mkdir, rename,
//! delete, downloads, and every error case.

use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{TestApp, assert_error, json, ready_instance, sandbox_sh, spawn_app_with_docker};

fn files(id: &str, op: &str) -> String {
    format!("/api/instances/{id}/files{op}")
}

async fn post(app: &TestApp, id: &str, op: &str, body: Value) -> reqwest::Response {
    app.api(Method::POST, &files(id, op)).json(&body).send().await.unwrap()
}

async fn get(app: &TestApp, id: &str, op: &str, path: &str) -> reqwest::Response {
    app.api(Method::GET, &files(id, op)).query(&[("path", path)]).send().await.unwrap()
}

fn random_bytes(len: usize) -> Vec<u8> {
    let mut state = 0x2545F4914F6CDD1Du64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

#[tokio::test]
async fn text_round_trips_byte_exact_and_is_shared_with_exec() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let cases = [
        ("/workspace/unicode.txt", "héllo wörld ✓ 日本語 🦀\nsecond line without newline"),
        ("/workspace/empty.txt", ""),
        ("/workspace/new/dir/nested.md", "# created with its parents\n"),
    ];
    for (path, content) in cases {
        let written = json(post(&app, &id, "/write", json!({"path": path, "content": content})).await, StatusCode::OK).await;
        assert_eq!(written["size"], content.len());
        let read = json(get(&app, &id, "/read", path).await, StatusCode::OK).await;
        assert_eq!(read["content"], content, "{path}");
        assert_eq!(read["size"], content.len());
        // The sandbox sees the same bytes, owned by the sandbox user.
        let seen = sandbox_sh(&sandbox, &format!("od -An -tx1 {path} | tr -d ' \\n'; echo; stat -c %u:%g {path}"));
        let hex: String = content.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(seen, format!("{hex}\n1000:1000").trim(), "{path}");
    }
    // Overwrite replaces the whole file.
    post(&app, &id, "/write", json!({"path": "/workspace/unicode.txt", "content": "short"})).await;
    assert_eq!(json(get(&app, &id, "/read", "/workspace/unicode.txt").await, StatusCode::OK).await["content"], "short");

    // A file made by a command is read by the API.
    let exec = app
        .api(Method::POST, &format!("/api/instances/{id}/terminal/exec"))
        .json(&json!({"command": "printf 'made by exec\\n' > /workspace/from-exec.txt && cat /workspace/unicode.txt"}))
        .send()
        .await
        .unwrap();
    let exec = json(exec, StatusCode::OK).await;
    assert_eq!(exec["stdout"], "short", "exec sees the API's file");
    assert_eq!(json(get(&app, &id, "/read", "/workspace/from-exec.txt").await, StatusCode::OK).await["content"], "made by exec\n");
}

#[tokio::test]
async fn binary_uploads_download_with_the_same_sha256() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    let data = random_bytes(5 << 20);
    let digest = format!("{:x}", Sha256::digest(&data));

    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let body = json!({"targetDir": "/workspace/bin", "fileName": "blob-json.bin", "content": b64, "encoding": "base64"});
    let up = json(post(&app, &id, "/upload", body).await, StatusCode::OK).await;
    assert_eq!(up, json!({"path": "/workspace/bin/blob-json.bin", "size": 5 << 20}));

    let form = reqwest::multipart::Form::new()
        .text("targetDir", "/workspace/bin")
        .part("file", reqwest::multipart::Part::bytes(data.clone()).file_name("blob form.bin"));
    let up = app.api(Method::POST, &files(&id, "/upload")).multipart(form).send().await.unwrap();
    assert_eq!(json(up, StatusCode::OK).await["path"], "/workspace/bin/blob form.bin");

    for path in ["/workspace/bin/blob-json.bin", "/workspace/bin/blob form.bin"] {
        let response = get(&app, &id, "/download", path).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-length"], (5 << 20).to_string().as_str());
        assert_eq!(response.headers()["content-type"], "application/octet-stream");
        let disposition = response.headers()["content-disposition"].to_str().unwrap().to_owned();
        assert!(disposition.starts_with("attachment; filename=\"blob"), "{disposition}");
        let bytes = response.bytes().await.unwrap();
        assert_eq!(format!("{:x}", Sha256::digest(&bytes)), digest, "{path}");
        assert_eq!(sandbox_sh(&sandbox, &format!("sha256sum '{path}' | cut -d' ' -f1")), digest);
    }
    let utf8 = json!({"targetDir": "/workspace", "fileName": "hello.txt", "content": "Hello from upload"});
    assert_eq!(json(post(&app, &id, "/upload", utf8).await, StatusCode::OK).await["size"], 17);
    let download = get(&app, &id, "/download", "/workspace/hello.txt").await;
    assert_eq!(download.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(download.text().await.unwrap(), "Hello from upload");
}

#[tokio::test]
async fn listing_mkdir_rename_and_delete() {
    let app = spawn_app_with_docker(|_| {}).await;
    let (id, sandbox) = ready_instance(&app).await;
    sandbox_sh(&sandbox, "cd /workspace && printf 12345 > five.txt && chmod 640 five.txt && mkdir sub && ln -s five.txt link");
    let listing = json(get(&app, &id, "", "/workspace").await, StatusCode::OK).await;
    assert_eq!(listing["path"], "/workspace");
    let entries = listing["entries"].as_array().unwrap();
    let find = |name: &str| entries.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("{name} in {listing}")).clone();
    let file = find("five.txt");
    assert_eq!((file["type"].as_str(), file["size"].as_u64(), file["mode"].as_str()), (Some("file"), Some(5), Some("0640")));
    assert_eq!(file["path"], "/workspace/five.txt");
    assert!(file["modified_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(find("sub")["type"], "directory");
    assert_eq!(find("link")["type"], "symlink");

    let made = json(post(&app, &id, "/mkdir", json!({"path": "/workspace/a/b/c"})).await, StatusCode::OK).await;
    assert_eq!(made["path"], "/workspace/a/b/c");
    json(post(&app, &id, "/mkdir", json!({"path": "/workspace/a/b/c"})).await, StatusCode::OK).await;
    assert_eq!(sandbox_sh(&sandbox, "stat -c %U /workspace/a/b/c"), "sandbox");
    assert_error(post(&app, &id, "/mkdir", json!({"path": "/workspace/five.txt"})).await, StatusCode::CONFLICT, "already_exists").await;

    let renamed = post(&app, &id, "/rename", json!({"from": "/workspace/five.txt", "to": "/workspace/a/moved.txt"})).await;
    assert_eq!(json(renamed, StatusCode::OK).await["to"], "/workspace/a/moved.txt");
    assert_eq!(sandbox_sh(&sandbox, "cat /workspace/a/moved.txt; echo; ls /workspace/five.txt 2>&1 | grep -c 'No such'"), "12345\n1");
    let clash = post(&app, &id, "/rename", json!({"from": "/workspace/a/moved.txt", "to": "/workspace/sub"})).await;
    assert_error(clash, StatusCode::CONFLICT, "already_exists").await;
    let nowhere = post(&app, &id, "/rename", json!({"from": "/workspace/a/moved.txt", "to": "/workspace/nope/x"})).await;
    assert_error(nowhere, StatusCode::NOT_FOUND, "not_found").await;

    json(post(&app, &id, "/delete", json!({"path": "/workspace/link"})).await, StatusCode::OK).await;
    let not_empty = post(&app, &id, "/delete", json!({"path": "/workspace/a"})).await;
    assert_error(not_empty, StatusCode::CONFLICT, "directory_not_empty").await;
    json(post(&app, &id, "/delete", json!({"path": "/workspace/a", "recursive": true})).await, StatusCode::OK).await;
    json(post(&app, &id, "/delete", json!({"path": "/workspace/sub"})).await, StatusCode::OK).await;
    assert_eq!(sandbox_sh(&sandbox, "ls -A /workspace | wc -l"), "0");
    assert_error(post(&app, &id, "/delete", json!({"path": "/workspace/a"})).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn every_error_case_is_a_clear_json_error() {
    let app = spawn_app_with_docker(|s| s.instances.max_read_bytes = 1024).await;
    let (id, sandbox) = ready_instance(&app).await;
    sandbox_sh(&sandbox, "head -c 2048 /dev/zero | tr '\\0' a > /workspace/big.txt; printf '\\000\\001\\377' > /workspace/bin.dat");

    for bad in ["relative.txt", "/workspace/../etc/passwd", "/workspace/a\0b", "", "../x"] {
        assert_error(get(&app, &id, "/read", bad).await, StatusCode::BAD_REQUEST, "invalid_path").await;
        assert_error(get(&app, &id, "", bad).await, StatusCode::BAD_REQUEST, "invalid_path").await;
        assert_error(post(&app, &id, "/write", json!({"path": bad, "content": "x"})).await, StatusCode::BAD_REQUEST, "invalid_path").await;
        assert_error(post(&app, &id, "/delete", json!({"path": bad})).await, StatusCode::BAD_REQUEST, "invalid_path").await;
    }
    let dots = json!({"targetDir": "/workspace", "fileName": "../escape", "content": "x"});
    assert_error(post(&app, &id, "/upload", dots).await, StatusCode::BAD_REQUEST, "invalid_path").await;
    assert_error(get(&app, &id, "/read", "/workspace/missing.txt").await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(get(&app, &id, "", "/workspace/missing").await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(get(&app, &id, "/download", "/workspace/missing").await, StatusCode::NOT_FOUND, "not_found").await;
    let binary = assert_error(get(&app, &id, "/read", "/workspace/bin.dat").await, StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_text").await;
    assert!(binary["message"].as_str().unwrap().contains("download"));
    let big = assert_error(get(&app, &id, "/read", "/workspace/big.txt").await, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
    assert!(big["message"].as_str().unwrap().contains("download"));
    assert_error(get(&app, &id, "/read", "/workspace").await, StatusCode::BAD_REQUEST, "is_a_directory").await;
    assert_error(get(&app, &id, "", "/workspace/big.txt").await, StatusCode::BAD_REQUEST, "not_a_directory").await;
    // The API acts as the sandbox user, never as root.
    assert_error(get(&app, &id, "/read", "/etc/shadow").await, StatusCode::FORBIDDEN, "permission_denied").await;
    assert_error(post(&app, &id, "/write", json!({"path": "/etc/evil", "content": "x"})).await, StatusCode::FORBIDDEN, "permission_denied").await;
    assert_eq!(sandbox_sh(&sandbox, "ls /etc/evil 2>&1 | grep -c 'No such'"), "1");
    let bad_b64 = json!({"targetDir": "/workspace", "fileName": "x", "content": "***", "encoding": "base64"});
    assert_error(post(&app, &id, "/upload", bad_b64).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert_error(post(&app, &id, "/write", json!({"path": "/workspace/x"})).await, StatusCode::BAD_REQUEST, "invalid_request").await;
    let missing_query = app.api(Method::GET, &files(&id, "/read")).send().await.unwrap();
    assert_error(missing_query, StatusCode::BAD_REQUEST, "invalid_request").await;

    // Another user's instance does not exist for them.
    let stranger = ocaas::auth::service::create_user(&app.db, "other@example.com", crate::helpers::PASSWORD, None).await.unwrap();
    let key = ocaas::auth::service::create_api_key(&app.db, stranger.id, None, None).await.unwrap().key;
    let foreign = app.with_key(Method::GET, &files(&id, "/read"), &key).query(&[("path", "/workspace/big.txt")]).send().await.unwrap();
    assert_error(foreign, StatusCode::NOT_FOUND, "instance_not_found").await;

    // A stopped instance cannot be touched.
    json(app.api(Method::POST, &format!("/api/instances/{id}/shutdown")).send().await.unwrap(), StatusCode::ACCEPTED).await;
    assert_error(get(&app, &id, "/read", "/workspace/big.txt").await, StatusCode::CONFLICT, "instance_not_running").await;
    assert_error(post(&app, &id, "/write", json!({"path": "/workspace/y", "content": "x"})).await, StatusCode::CONFLICT, "instance_not_running")
        .await;
}

/// Files of 8 GiB and more carry their size in a PAX record: a sparse 9 GiB file downloads
/// with the right `Content-Length` and its bytes (the first MiB checked). The engine locks the
/// container while it streams an archive: a client that stays connected but stops reading
/// holds it only for `OCAAS_STALL_TIMEOUT_SECS` (2 s here), then execs work again.
#[tokio::test]
async fn a_sparse_nine_gib_file_downloads_with_its_real_length() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app_with_docker(|s| s.instances.stall_timeout = std::time::Duration::from_secs(2)).await;
    let (id, sandbox) = ready_instance(&app).await;
    sandbox_sh(&sandbox, "truncate -s 9G /workspace/huge");
    // A raw connection, so that hanging up is certain.
    let mut stream = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://")).await.unwrap();
    let request =
        format!("GET /api/instances/{id}/files/download?path=/workspace/huge HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\r\n", app.user.key);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut received = Vec::new();
    let head_end = loop {
        let mut buffer = vec![0u8; 64 << 10];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the server closed early");
        received.extend_from_slice(&buffer[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {}", 9u64 << 30)), "{head}");
    while received.len() < head_end + (1 << 20) {
        let mut buffer = vec![0u8; 64 << 10];
        let n = stream.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the body ended early");
        received.extend_from_slice(&buffer[..n]);
    }
    assert!(received[head_end..].iter().all(|b| *b == 0));
    // Still connected, no longer reading.
    let started = std::time::Instant::now();
    // Off the test's runtime thread: the server under test runs on it.
    let removed = tokio::task::spawn_blocking(move || sandbox_sh(&sandbox, "rm -f /workspace/huge && echo removed")).await.unwrap();
    assert_eq!(removed, "removed");
    assert!(started.elapsed() < std::time::Duration::from_secs(6), "the engine was held for {:?}", started.elapsed());
    drop(stream);
    app.settle().await;
}

/// `files/read` checks the size, then downloads: a sandbox that swaps a big file in between
/// still gets at most `OCAAS_MAX_READ_BYTES` read (413), never a bigger answer.
#[tokio::test]
async fn a_file_swapped_between_stat_and_download_is_never_read_past_the_limit() {
    let app = spawn_app_with_docker(|s| s.instances.max_read_bytes = 64 << 10).await;
    let (id, sandbox) = ready_instance(&app).await;
    let swap = "cd /workspace && printf small > s && head -c 3000000 /dev/zero | tr '\\0' x > b && \
                (while :; do ln -f s t && mv -f t f; ln -f b t && mv -f t f; done) >/dev/null 2>&1 & echo started";
    assert_eq!(sandbox_sh(&sandbox, swap), "started");
    let (mut small, mut refused) = (0, 0);
    for _ in 0..40 {
        let response = get(&app, &id, "/read", "/workspace/f").await;
        match response.status() {
            StatusCode::OK => {
                let body = json(response, StatusCode::OK).await;
                // The engine may pair the small file's size with the big file's bytes: a torn
                // read, but never more than the limit.
                let content = body["content"].as_str().unwrap();
                assert!(content.len() <= 64 << 10 && (content == "small" || content == "xxxxx"), "{} bytes", content.len());
                small += 1;
            }
            StatusCode::PAYLOAD_TOO_LARGE => {
                assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "file_too_large").await;
                refused += 1;
            }
            // Caught mid-rename: the path briefly does not exist.
            StatusCode::NOT_FOUND => {}
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    sandbox_sh(&sandbox, "pkill -f 'ln -f s t' ; pkill -f 'while :' ; true");
    println!("small {small}, refused {refused}");
    assert!(small + refused >= 20, "small {small}, refused {refused}");
    app.settle().await;
}

#[tokio::test]
async fn a_huge_directory_lists_capped_and_listings_and_json_writes_take_a_command_slot() {
    let app = spawn_app_with_docker(|s| s.user_limits.exec = 1).await;
    let (id, sandbox) = ready_instance(&app).await;
    sandbox_sh(
        &sandbox,
        "mkdir -p /workspace/many && cd /workspace/many && seq 1 10050 | xargs touch && mkdir /workspace/few && touch /workspace/few/a",
    );
    let listing = json(get(&app, &id, "", "/workspace/many").await, StatusCode::OK).await;
    assert_eq!((listing["entries"].as_array().unwrap().len(), &listing["truncated"]), (10_000, &json!(true)));
    let names: Vec<&str> = listing["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert!(names.windows(2).all(|w| w[0] <= w[1]), "sorted by name");
    let few = json(get(&app, &id, "", "/workspace/few").await, StatusCode::OK).await;
    assert_eq!((few["entries"].as_array().unwrap().len(), &few["truncated"]), (1, &json!(false)));

    // With the user's one command slot taken, a listing waits its turn: 429.
    let exec = app.api(Method::POST, &format!("/api/instances/{id}/terminal/exec")).json(&json!({"command": "sleep 3"})).send();
    let running = tokio::spawn(exec);
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    assert_error(get(&app, &id, "", "/workspace/few").await, StatusCode::TOO_MANY_REQUESTS, "too_many_concurrent").await;
    // So does a JSON write (its body held whole), before its body is read.
    let write = post(&app, &id, "/write", json!({"path": "/workspace/few/b", "content": "x"})).await;
    assert_error(write, StatusCode::TOO_MANY_REQUESTS, "too_many_concurrent").await;
    assert_eq!(running.await.unwrap().unwrap().status(), StatusCode::OK);
    assert_eq!(get(&app, &id, "", "/workspace/few").await.status(), StatusCode::OK);
}
