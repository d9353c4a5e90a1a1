//! Instances as real containers on the machine's Docker engine, driven through the HTTP API.

use std::time::{Duration, Instant};

use ocaas::auth::service;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, docker, json, spawn_app_with_docker};

/// Runs `script` in the sandbox with `docker exec` (the test's own view, independent of ocaas).
fn sandbox_sh(sandbox: &str, script: &str) -> String {
    docker(&["exec", sandbox, "sh", "-c", script])
}

async fn grant(app: &TestApp, max_instances: u32) {
    service::grant_subscription(&app.db, &app.user.email, max_instances, None).await.unwrap();
}

async fn create(app: &TestApp) -> Value {
    let response = app.api(Method::POST, "/api/instances").send().await.unwrap();
    let location = response.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
    let body = json(response, StatusCode::CREATED).await;
    assert_eq!(body["status"], "provisioning");
    assert_eq!(location.unwrap(), format!("{}/api/instances/{}", app.address, body["id"].as_str().unwrap()));
    body
}

async fn wait_for(app: &TestApp, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let body = json(app.api(Method::GET, &format!("/api/instances/{id}")).send().await.unwrap(), StatusCode::OK).await;
        if body["status"] == want {
            return body;
        }
        assert!(body["status"] != "error" || want == "error", "instance failed while waiting for {want}: {body}");
        assert!(Instant::now() < deadline, "instance did not reach {want}: {body}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn post(app: &TestApp, id: &str, action: &str) -> reqwest::Response {
    app.api(Method::POST, &format!("/api/instances/{id}/{action}")).send().await.unwrap()
}

#[tokio::test]
async fn full_lifecycle_keeps_the_workspace_and_leaves_nothing_behind() {
    let app = spawn_app_with_docker(|_| {}).await;
    grant(&app, 1).await;
    let created = create(&app).await;
    let id = created["id"].as_str().unwrap();
    let sandbox = created["sandbox_id"].as_str().unwrap().to_owned();
    assert!(sandbox.starts_with("sandy-") && sandbox.len() == 18, "{sandbox}");
    assert!(created.get("gateway_token").is_none(), "the gateway token is never returned: {created}");

    let ready = wait_for(&app, id, "ready").await;
    assert!(ready["last_error"].is_null());
    let listed = json(app.api(Method::GET, "/api/instances").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], id);

    let status = json(app.api(Method::GET, &format!("/api/instances/{id}/status")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(status["container"]["state"], "running");
    assert_eq!(status["agent"]["ready"], true);
    assert!(status["uptime_ms"].as_i64().unwrap() >= 0);
    assert_eq!(status["resources"]["memory_limit_bytes"], 512u64 << 20);

    let labels = docker(&["inspect", "-f", "{{json .Config.Labels}}", &sandbox]);
    let labels: Value = serde_json::from_str(&labels).unwrap();
    assert_eq!(labels["ocaas.managed"], "true");
    assert_eq!(labels["ocaas.instance"], id);
    assert_eq!(labels["ocaas.user"], app.user.id.to_string());
    assert_eq!(labels["ocaas.deployment"], app.state.deployment_id.to_string());

    sandbox_sh(&sandbox, "echo kept > /workspace/keep.txt");
    assert_eq!(json(post(&app, id, "reboot").await, StatusCode::ACCEPTED).await["status"], "rebooting");
    wait_for(&app, id, "ready").await;
    assert_eq!(sandbox_sh(&sandbox, "cat /workspace/keep.txt"), "kept", "the workspace survives a reboot");

    assert_eq!(json(post(&app, id, "shutdown").await, StatusCode::ACCEPTED).await["status"], "stopping");
    wait_for(&app, id, "stopped").await;
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &sandbox]), "false");
    assert_error(post(&app, id, "reboot").await, StatusCode::CONFLICT, "invalid_state").await;
    assert_error(post(&app, id, "shutdown").await, StatusCode::CONFLICT, "invalid_state").await;

    assert_eq!(json(post(&app, id, "start").await, StatusCode::ACCEPTED).await["status"], "provisioning");
    wait_for(&app, id, "ready").await;
    assert_error(post(&app, id, "start").await, StatusCode::CONFLICT, "invalid_state").await;
    assert_eq!(sandbox_sh(&sandbox, "cat /workspace/keep.txt"), "kept", "the workspace survives shutdown and start");

    let deleted = app.api(Method::DELETE, &format!("/api/instances/{id}")).send().await.unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = app.api(Method::GET, &format!("/api/instances/{id}")).send().await.unwrap();
    assert_error(gone, StatusCode::NOT_FOUND, "instance_not_found").await;
    assert_eq!(docker(&["ps", "-aq", "--filter", &format!("name=^{sandbox}$")]), "", "container removed");
    assert_eq!(docker(&["volume", "ls", "-q", "--filter", &format!("name=ocaas-ws-{sandbox}")]), "", "volume removed");
}

#[tokio::test]
async fn access_needs_a_subscription_or_a_redeemable_invite() {
    let app = spawn_app_with_docker(|_| {}).await;
    let create_with = |body: Value| app.api(Method::POST, "/api/instances").json(&body).send();
    assert_error(create_with(json!({})).await.unwrap(), StatusCode::FORBIDDEN, "subscription_required").await;
    let bad = create_with(json!({"invite_code": "NOPE-NOPE-NOPE-NOPE"})).await.unwrap();
    assert_error(bad, StatusCode::FORBIDDEN, "invalid_invite_code").await;

    let code = app.invite(1, 1).await;
    let created = json(create_with(json!({"invite_code": code, "name": "first"})).await.unwrap(), StatusCode::CREATED).await;
    assert_eq!(created["name"], "first");
    let me = json(app.api(Method::GET, "/api/account").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(me["subscription"]["max_instances"], 1, "redeeming granted the plan");
    let uses_left: i32 = sqlx::query_scalar("SELECT uses_left FROM invite_codes").fetch_one(&app.db).await.unwrap();
    assert_eq!(uses_left, 0);

    let over = create_with(json!({})).await.unwrap();
    assert_error(over, StatusCode::FORBIDDEN, "instance_limit_reached").await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1, "refused creates store nothing");
    app.settle().await;
}

#[tokio::test]
async fn server_capacity_answers_503_with_retry_after() {
    let app = spawn_app_with_docker(|s| s.instances.max_instances = 1).await;
    grant(&app, 5).await;
    create(&app).await;
    let response = app.api(Method::POST, "/api/instances").send().await.unwrap();
    assert_eq!(response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned()).as_deref(), Some("60"));
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "capacity_exhausted").await;
    app.settle().await;
}

#[tokio::test]
async fn ten_concurrent_creates_against_a_limit_of_three_admit_exactly_three() {
    let app = spawn_app_with_docker(|_| {}).await;
    grant(&app, 3).await;
    let attempts = (0..10).map(|_| app.api(Method::POST, "/api/instances").send());
    let statuses: Vec<StatusCode> = futures_util::future::join_all(attempts).await.into_iter().map(|r| r.unwrap().status()).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::CREATED).count(), 3, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::FORBIDDEN).count(), 7, "{statuses:?}");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM instances").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 3);
    app.settle().await;
    let ready: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE status = 'ready'").fetch_one(&app.db).await.unwrap();
    assert_eq!(ready, 3, "all admitted instances come up");
}

#[tokio::test]
async fn other_users_instances_are_not_found_on_every_endpoint() {
    let app = spawn_app_with_docker(|_| {}).await;
    grant(&app, 1).await;
    let id = create(&app).await["id"].as_str().unwrap().to_owned();
    let stranger = service::create_user(&app.db, "stranger@example.com", PASSWORD, None).await.unwrap();
    let key = service::create_api_key(&app.db, stranger.id, None, None).await.unwrap().key;

    let endpoints = [
        (Method::GET, format!("/api/instances/{id}")),
        (Method::DELETE, format!("/api/instances/{id}")),
        (Method::POST, format!("/api/instances/{id}/reboot")),
        (Method::POST, format!("/api/instances/{id}/shutdown")),
        (Method::POST, format!("/api/instances/{id}/start")),
        (Method::GET, format!("/api/instances/{id}/status")),
    ];
    for (method, path) in &endpoints {
        let response = app.with_key(method.clone(), path, &key).send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "instance_not_found").await;
        let garbage = path.replace(&id, "not-an-id");
        let response = app.api(method.clone(), &garbage).send().await.unwrap();
        assert_error(response, StatusCode::NOT_FOUND, "instance_not_found").await;
    }
    let theirs = json(app.with_key(Method::GET, "/api/instances", &key).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(theirs, json!([]));
    // The owner's instance is untouched by all of that.
    app.settle().await;
    assert_eq!(json(app.api(Method::GET, &format!("/api/instances/{id}")).send().await.unwrap(), StatusCode::OK).await["status"], "ready");
}

#[tokio::test]
async fn a_killed_sandbox_shows_as_error_within_the_reconcile_interval() {
    let app = spawn_app_with_docker(|_| {}).await;
    grant(&app, 1).await;
    let created = create(&app).await;
    let id = created["id"].as_str().unwrap();
    wait_for(&app, id, "ready").await;
    docker(&["kill", created["sandbox_id"].as_str().unwrap()]);
    let failed = wait_for(&app, id, "error").await;
    assert!(failed["last_error"].as_str().unwrap().contains("stopped unexpectedly"), "{failed}");
    // It can be started again.
    json(post(&app, id, "start").await, StatusCode::ACCEPTED).await;
    wait_for(&app, id, "ready").await;
}

/// A server whose model broker cannot listen (its one port taken) starts no sandbox without a
/// model endpoint, whose gateway would refuse to start: the create ends in `error` saying why.
#[tokio::test]
async fn a_create_while_the_model_broker_cannot_listen_ends_in_a_clear_error() {
    // A port held on every address: the broker's bind on the sandbox network's gateway fails.
    let held = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let app = spawn_app_with_docker(|s| s.instances.broker_ports = (port, port)).await;
    grant(&app, 1).await;
    let created = create(&app).await;
    let failed = wait_for(&app, created["id"].as_str().unwrap(), "error").await;
    assert!(failed["last_error"].as_str().unwrap().contains("model broker is not listening"), "{failed}");
    let sandbox = created["sandbox_id"].as_str().unwrap();
    assert_eq!(docker(&["ps", "-aq", "--filter", &format!("name={sandbox}")]), "", "no sandbox was started without a model");
    drop(held);
}

#[tokio::test]
async fn an_instance_left_provisioning_by_a_dead_server_still_becomes_ready() {
    let app = spawn_app_with_docker(|s| s.instances.reconcile_interval = Duration::from_secs(3600)).await;
    // What a server that died right after accepting a create leaves behind: a row, no container.
    let id = uuid::Uuid::now_v7();
    sqlx::query("INSERT INTO instances (id, user_id, sandbox_id, status, image, gateway_token) VALUES ($1, $2, $3, 'provisioning', $4, 'tok')")
        .bind(id)
        .bind(app.user.id)
        .bind(format!("sandy-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
        .bind(&app.state.settings.instances.image)
        .execute(&app.db)
        .await
        .unwrap();
    // A new server process on the same database: its reconciler resumes the work at start.
    let restarted = crate::helpers::respawn(&app).await;
    wait_for(&restarted, &id.to_string(), "ready").await;
}

#[tokio::test]
async fn containers_of_this_deployment_without_an_instance_are_removed() {
    let app = spawn_app_with_docker(|_| {}).await;
    grant(&app, 1).await;
    let created = create(&app).await;
    let id = created["id"].as_str().unwrap();
    let sandbox = created["sandbox_id"].as_str().unwrap();
    wait_for(&app, id, "ready").await;
    sqlx::query("DELETE FROM instances").execute(&app.db).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&["ps", "-aq", "--filter", &format!("name=^{sandbox}$")]).is_empty() {
        assert!(Instant::now() < deadline, "the orphaned container was not removed");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn sandboxes_are_unprivileged_limited_and_isolated_from_each_other() {
    let app = spawn_app_with_docker(|_| {}).await;
    grant(&app, 2).await;
    let first = create(&app).await;
    let second = create(&app).await;
    wait_for(&app, first["id"].as_str().unwrap(), "ready").await;
    wait_for(&app, second["id"].as_str().unwrap(), "ready").await;
    let sandbox = first["sandbox_id"].as_str().unwrap();

    assert_eq!(sandbox_sh(sandbox, "grep CapEff /proc/1/status | awk '{print $2}'"), "0000000000000000");
    assert_eq!(sandbox_sh(sandbox, "grep CapEff /proc/self/status | awk '{print $2}'"), "0000000000000000");
    assert_eq!(sandbox_sh(sandbox, "grep NoNewPrivs /proc/self/status | awk '{print $2}'"), "1");
    assert_eq!(sandbox_sh(sandbox, "id -u"), "1000");
    assert_eq!(sandbox_sh(sandbox, "ls /var/run/docker.sock /run/docker.sock 2>/dev/null | wc -l"), "0");
    let limit = sandbox_sh(sandbox, "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes");
    assert_eq!(limit, (512u64 << 20).to_string());
    assert_eq!(
        docker(&["inspect", "-f", "{{.HostConfig.PidsLimit}} {{.HostConfig.NanoCpus}} {{.HostConfig.Privileged}}", sandbox]),
        "256 1000000000 false"
    );
    // The engine lists mounts in no fixed order.
    let mounts = docker(&["inspect", "-f", "{{range .Mounts}}{{.Type}}:{{.Source}}:{{.Destination}} {{end}}", sandbox]);
    let mut mounts: Vec<&str> = mounts.split_whitespace().collect();
    mounts.sort_unstable();
    let own = app.state.settings.instances.disk_root.join(sandbox);
    let expected = [format!("bind:{}/state:/agent-state", own.display()), format!("bind:{}/workspace:/workspace", own.display())];
    assert_eq!(mounts, expected, "only the instance's own storage is mounted: no other host path, no socket");

    let other_ip =
        docker(&["inspect", "-f", "{{(index .NetworkSettings.Networks \"ocaas-sandboxes\").IPAddress}}", second["sandbox_id"].as_str().unwrap()]);
    let probe = format!(
        "python3 -c \"import socket; s=socket.socket(); s.settimeout(3); print('open' if s.connect_ex(('{other_ip}', 18789)) == 0 else 'closed')\""
    );
    assert_eq!(sandbox_sh(sandbox, &probe), "closed", "a sandbox must not reach another sandbox's gateway");
}
