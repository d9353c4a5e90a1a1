//! `deploy/nginx.conf` as committed, with a real nginx (Debian's) in front of a real ocaas
//! started with `OCAAS_TRUST_PROXY=true`: docs, links and origins name the proxy, a chat answer
//! streams through it incrementally, both websockets work through it, and the browser
//! session's cookie + CSRF flow does too.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{ChildGuard, TestApp, json, ready_instance, spawn_app_with_docker};
use crate::sse::SseReader;
use crate::ws::{open_with_key, read_until, send_text};

/// nginx with `deploy/nginx.conf`, its upstream pointed at `app` and listening on a free port.
fn start_nginx(app: &TestApp) -> (ChildGuard, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let upstream = app.address.trim_start_matches("http://");
    let site = include_str!("../../deploy/nginx.conf")
        .replace("server 127.0.0.1:8080;", &format!("server {upstream};"))
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
    let dir = std::env::temp_dir().join(format!("ocaas-nginx-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("site.conf"), site).unwrap();
    let d = dir.display();
    let main = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n  access_log off;\n  \
         client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let nginx = which("nginx").expect("Debian's nginx is needed (apt-get install nginx-light)");
    let child = Command::new(nginx).arg("-c").arg(dir.join("nginx.conf")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nginx did not start: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    (ChildGuard(child, dir), format!("127.0.0.1:{port}"))
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"].iter().map(|d| std::path::Path::new(d).join(program)).find(|p| p.is_file())
}

/// A streamed chat turn through `origin` delivers its first delta well before it completes
/// (the stand-in's `/slow 300` answers a word every 300 ms).
async fn assert_chat_streams_incrementally(http: &reqwest::Client, origin: &str, id: &str, key: &str) {
    let started = Instant::now();
    let response = http
        .post(format!("{origin}/api/instances/{id}/chat/stream"))
        .bearer_auth(key)
        .json(&json!({"message": "/slow 300 a b c d e f"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut events = SseReader::new(response);
    let (mut first_delta, mut completed) = (None, None);
    while let Some(event) = events.next(Duration::from_secs(30)).await {
        if event.data.get("delta").is_some() && first_delta.is_none() {
            first_delta = Some(started.elapsed());
        }
        if event.event == "complete" {
            completed = Some(started.elapsed());
            break;
        }
    }
    let (first_delta, completed) = (first_delta.expect("a delta arrived"), completed.expect("the turn completed"));
    assert!(first_delta + Duration::from_millis(900) < completed, "buffered: first delta at {first_delta:?}, complete at {completed:?}");
}

#[tokio::test]
async fn ocaas_works_behind_nginx_with_the_committed_config() {
    let app = spawn_app_with_docker(|s| {
        s.trust_proxy = true;
        s.auth_per_minute_per_addr = std::num::NonZeroU32::new(20).unwrap();
    })
    .await;
    let (id, _) = ready_instance(&app).await;
    let (_nginx, proxy) = start_nginx(&app);
    let origin = format!("http://{proxy}");
    let http = reqwest::Client::new();

    // Docs and discovery name the proxy's origin, not ocaas's own address.
    assert_eq!(http.get(format!("{origin}/docs/")).send().await.unwrap().status(), StatusCode::OK);
    let root: Value = http.get(format!("{origin}/api")).send().await.unwrap().json().await.unwrap();
    assert_eq!(root["api_root"], format!("{origin}/api"));
    let llms = http.get(format!("{origin}/llms.txt")).send().await.unwrap().text().await.unwrap();
    assert!(llms.contains(&origin) && !llms.contains(&app.address), "{llms}");

    // A chat answer streams through nginx: the first delta arrives well before the end.
    assert_chat_streams_incrementally(&http, &origin, &id, &app.user.key).await;

    // terminal/ws through nginx.
    let ws_origin = format!("ws://{proxy}");
    let mut terminal = open_with_key(&format!("{ws_origin}/api/instances/{id}/terminal/ws"), &app.user.key).await.expect("terminal through nginx");
    send_text(&mut terminal, "echo through-$((40+2))\n").await;
    read_until(&mut terminal, "through-42").await;

    // vnc/ws through nginx, with a ticket from vnc-url (whose URLs name the proxy).
    let vnc_url: Value =
        http.get(format!("{origin}/api/instances/{id}/vnc-url")).bearer_auth(&app.user.key).send().await.unwrap().json().await.unwrap();
    let ws_url = vnc_url["ws_url"].as_str().unwrap();
    assert!(ws_url.starts_with(&format!("{ws_origin}/")), "{vnc_url}");
    let mut vnc = crate::ws::open(ws_url, &[]).await.expect("vnc through nginx");
    let greeting = read_until(&mut vnc, "RFB 003.00").await;
    assert!(greeting.starts_with("RFB"), "{greeting:?}");

    // The browser session: log in through nginx, then a state change needs the CSRF token.
    let browser = reqwest::Client::builder().cookie_store(true).build().unwrap();
    let login = browser
        .post(format!("{origin}/api/account/login"))
        .json(&json!({"email": app.user.email, "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    let csrf = json(login, StatusCode::OK).await["csrf_token"].as_str().unwrap().to_owned();
    let refused = browser.post(format!("{origin}/api/account/keys")).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let created = browser.post(format!("{origin}/api/account/keys")).header("X-CSRF-Token", csrf).json(&json!({"name": "x"})).send().await.unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);

    // A forged X-Forwarded-For per attempt makes no new address: guessing through nginx is
    // still throttled per address (20 a minute; each attempt on another account).
    let mut statuses = Vec::new();
    for n in 0..40 {
        let wrong = json!({"email": format!("guess{n}@example.com"), "password": "a wrong password"});
        let sent = http.post(format!("{origin}/api/account/login")).header("X-Forwarded-For", format!("198.51.100.{n}")).json(&wrong);
        statuses.push(sent.send().await.unwrap().status());
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "40 forged addresses were each believed: {statuses:?}");
    app.settle().await;
}

/// `deploy/Caddyfile` as committed (site address and upstream pointed at the test's), with a
/// real Caddy: origins name the proxy, SSE arrives incrementally, terminal/ws works.
#[tokio::test]
async fn ocaas_works_behind_caddy_with_the_committed_config() {
    let app = spawn_app_with_docker(|s| s.trust_proxy = true).await;
    let (id, _) = ready_instance(&app).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let dir = std::env::temp_dir().join(format!("ocaas-caddy-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let site = include_str!("../../deploy/Caddyfile")
        .replace("ocaas.example.com {", &format!("http://127.0.0.1:{port} {{"))
        .replace("reverse_proxy 127.0.0.1:8080", &format!("reverse_proxy {}", app.address.trim_start_matches("http://")));
    // No admin endpoint and no certificates for a test on loopback.
    std::fs::write(dir.join("Caddyfile"), format!("{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {}\n}}\n{site}", dir.display())).unwrap();
    let caddy = which("caddy").expect("Debian's caddy is needed (apt-get install caddy)");
    let child = Command::new(caddy)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(dir.join("Caddyfile"))
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", &dir)
        .env("XDG_CONFIG_HOME", &dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _caddy = ChildGuard(child, dir);
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "caddy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let origin = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let root: Value = http.get(format!("{origin}/api")).send().await.unwrap().json().await.unwrap();
    assert_eq!(root["api_root"], format!("{origin}/api"));

    assert_chat_streams_incrementally(&http, &origin, &id, &app.user.key).await;

    let mut terminal =
        open_with_key(&format!("ws://127.0.0.1:{port}/api/instances/{id}/terminal/ws"), &app.user.key).await.expect("terminal through caddy");
    send_text(&mut terminal, "echo caddy-$((40+2))\n").await;
    read_until(&mut terminal, "caddy-42").await;
    app.settle().await;
}

/// The systemd unit passes `systemd-analyze verify` (with the test's binary as ExecStart).
#[test]
fn the_systemd_unit_verifies() {
    let dir = std::env::temp_dir().join(format!("ocaas-unit-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let unit = include_str!("../../deploy/ocaas.service").replace("/usr/local/bin/ocaas", env!("CARGO_BIN_EXE_ocaas"));
    assert!(unit.contains("ExecStart=") && unit.contains(" serve"), "{unit}");
    let path = dir.join("ocaas.service");
    std::fs::write(&path, unit).unwrap();
    let output = Command::new("systemd-analyze").arg("verify").arg(&path).output().expect("systemd-analyze");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Units the host does not have (docker.service in a build container) are not this file's fault.
    let own: Vec<&str> = stderr.lines().filter(|l| l.contains("ocaas.service") && !l.contains("docker.service")).collect();
    assert!(own.is_empty(), "{stderr}");
}

/// The compose file is valid Compose (checked by `docker-compose config`), wires ocaas to the
/// PostgreSQL it defines and gives it the engine's socket.
#[test]
fn the_compose_file_is_valid() {
    let output = Command::new("docker-compose")
        .args(["-f", concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/compose.yaml"), "config"])
        .output()
        .expect("docker-compose");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let config = String::from_utf8_lossy(&output.stdout);
    assert!(config.contains("DATABASE_URL: postgres://ocaas:change-me@127.0.0.1:5433/ocaas"), "{config}");
    assert!(config.contains("/var/run/docker.sock"), "{config}");
}
