//! Many hosts: instances placed across real nodes (each its own Docker engine and address)
//! by capacity, used through either API replica as if they ran beside the server — chat over
//! SSE, model calls through the node's broker relay, the terminal and desktop websockets,
//! files, commands, disk quota — and what happens
//! when a node's agent restarts, when a node stops, and when it is cut off from the network.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::fleet::{Fleet, node_docker, start_agent, stop_agent};
use crate::helpers::json;
use crate::sse::SseReader;
use crate::ws;

async fn create(fleet: &Fleet, server: usize) -> reqwest::Response {
    fleet.api(server, Method::POST, "/api/instances").json(&json!({})).send().await.unwrap()
}

async fn until_ready(fleet: &Fleet, id: &str) -> Value {
    until_ready_on(fleet, 0, id).await
}

async fn until_ready_on(fleet: &Fleet, server: usize, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let body = json(fleet.api(server, Method::GET, &format!("/api/instances/{id}")).send().await.unwrap(), StatusCode::OK).await;
        if body["status"] == "ready" {
            return body;
        }
        assert!(body["status"] != "error" && Instant::now() < deadline, "instance {id} did not become ready: {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn exec(fleet: &Fleet, server: usize, id: &str, command: &str) -> reqwest::Response {
    fleet.api(server, Method::POST, &format!("/api/instances/{id}/terminal/exec")).json(&json!({"command": command})).send().await.unwrap()
}

/// Where the status endpoint says the instance runs, and whether that node answers.
async fn placement(fleet: &Fleet, id: &str) -> Value {
    json(fleet.api(1, Method::GET, &format!("/api/instances/{id}/status")).send().await.unwrap(), StatusCode::OK).await["node"].clone()
}

/// The exec call's status and how long it took to answer.
async fn timed_exec(fleet: &Fleet, server: usize, id: &str) -> (StatusCode, Duration, Value) {
    let started = Instant::now();
    let response = exec(fleet, server, id, "echo alive").await;
    let status = response.status();
    (status, started.elapsed(), response.json().await.unwrap_or(Value::Null))
}

async fn until_exec_works(fleet: &Fleet, id: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (status, _, body) = timed_exec(fleet, 0, id).await;
        if status == StatusCode::OK && body["stdout"] == "alive\n" {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "the instance did not come back: {status} {body}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn instances_spread_over_nodes_work_through_either_replica_and_survive_node_trouble() {
    let fleet = Fleet::start(&[1, 2]).await;

    // Placement: the least-loaded node with room; then none has room.
    let mut ids = Vec::new();
    for server in [0, 1, 0] {
        let created = json(create(&fleet, server).await, StatusCode::CREATED).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let full = create(&fleet, 1).await;
    crate::helpers::assert_error(full, StatusCode::SERVICE_UNAVAILABLE, "capacity_exhausted").await;
    let mut sandboxes = Vec::new();
    for id in &ids {
        sandboxes.push(until_ready(&fleet, id).await["sandbox_id"].as_str().unwrap().to_owned());
    }
    let on = |node: &str| node_docker(fleet.host(node), &["ps", "--format", "{{.Names}}", "--filter", "label=ocaas.managed=true"]);
    assert_eq!(on("node-a").lines().collect::<Vec<_>>(), vec![sandboxes[0].as_str()], "node-a holds its one");
    let mut on_b: Vec<String> = on("node-b").lines().map(str::to_owned).collect();
    on_b.sort();
    let mut expected = vec![sandboxes[1].clone(), sandboxes[2].clone()];
    expected.sort();
    assert_eq!(on_b, expected, "node-b holds the other two");
    assert_eq!(placement(&fleet, &ids[0]).await, json!({"name": "node-a", "reachable": true}));
    assert_eq!(placement(&fleet, &ids[1]).await, json!({"name": "node-b", "reachable": true}));
    let counts: Vec<(String, i64)> =
        fleet.nodes().iter().map(|n| (n["name"].as_str().unwrap().to_owned(), n["instances"].as_i64().unwrap())).collect();
    assert_eq!(counts, vec![("node-a".to_owned(), 1), ("node-b".to_owned(), 2)]);

    // An instance on node B, through either replica.
    let b = ids[1].clone();
    let ran = json(exec(&fleet, 0, &b, "hostname; cat /proc/1/cgroup | head -1").await, StatusCode::OK).await;
    assert_eq!(ran["exit_code"], 0, "{ran}");
    let written = fleet
        .api(1, Method::POST, &format!("/api/instances/{b}/files/write"))
        .json(&json!({"path": "/workspace/far.txt", "content": "on node b"}))
        .send()
        .await
        .unwrap();
    json(written, StatusCode::OK).await;
    let read = fleet.api(0, Method::GET, &format!("/api/instances/{b}/files/read")).query(&[("path", "/workspace/far.txt")]).send().await.unwrap();
    assert_eq!(json(read, StatusCode::OK).await["content"], "on node b");
    assert_eq!(
        node_docker(fleet.host("node-b"), &["exec", &sandboxes[1], "cat", "/workspace/far.txt"]),
        "on node b",
        "the file is on node b's engine"
    );

    let stream =
        fleet.api(1, Method::POST, &format!("/api/instances/{b}/chat/stream")).json(&json!({"message": "/echo far away node"})).send().await.unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let events = SseReader::new(stream).all(Duration::from_secs(60)).await;
    let answer: String = events.iter().filter_map(|e| e.data.get("delta").and_then(Value::as_str)).collect();
    assert!(answer.contains("far away node"), "{events:?}");
    assert_eq!(events.last().unwrap().event, "complete");

    // A model call from node B's sandbox: node B's relay, a replica's broker, the provider.
    assert_eq!(llm_turn(&fleet, 1, &b).await, crate::broker::ANSWER.concat());
    let usage = json(fleet.api(0, Method::GET, &format!("/api/instances/{b}/usage")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(usage["totals"], json!({"requests": 1, "prompt_tokens": 12, "completion_tokens": 5}), "metered for it: {usage}");
    // The relay names the sandbox that called: node B's sandbox with node A's token is refused.
    let a_token = node_env(&fleet, "node-a", &sandboxes[0], "OCAAS_LLM_API_KEY");
    let b_token = node_env(&fleet, "node-b", &sandboxes[1], "OCAAS_LLM_API_KEY");
    assert!(a_token.starts_with("ocb_") && b_token.starts_with("ocb_") && a_token != b_token);
    let (status, body) = broker_models(&fleet, &b, "/models", &a_token).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("another sandbox"), "{body}");
    let (status, body) = broker_models(&fleet, &b, "/models", &b_token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(crate::broker::MODEL), "{body}");
    // Only the broker's paths are relayed: nothing reaches the server's other routes.
    for path in ["/../../../api/instances", "/../../nodes/join", "/%2e%2e/%2e%2e/api/account"] {
        let (status, body) = broker_models(&fleet, &b, path, &b_token).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body.contains("the broker serves"), "{path}: {body}");
    }

    let term_url = format!("{}/api/instances/{b}/terminal/ws", fleet.bases[0].replacen("http", "ws", 1));
    let mut term = ws::open_with_key(&term_url, &fleet.key).await.expect("a terminal on node b");
    ws::send_bytes(&mut term, b"echo term-$((40+2)) $(cat /workspace/far.txt)\n").await;
    ws::read_until(&mut term, "term-42 on node b").await;
    drop(term);

    let urls = json(fleet.api(1, Method::GET, &format!("/api/instances/{b}/vnc-url")).send().await.unwrap(), StatusCode::OK).await;
    let mut vnc = ws::open(urls["ws_url"].as_str().unwrap(), &[("sec-websocket-protocol", "binary")]).await.expect("the desktop on node b");
    let greeting = crate::desktop::read_exact(&mut vnc, &mut Vec::new(), 12).await;
    assert!(String::from_utf8_lossy(&greeting).starts_with("RFB 003.00"), "{greeting:?}");
    drop(vnc);

    // The disk quota holds on node B (a loop-mounted ext4 there).
    let fill = json(exec(&fleet, 0, &b, "head -c 400000000 /dev/zero > /workspace/fill.bin; echo rc=$?").await, StatusCode::OK).await;
    assert!(fill["stdout"].as_str().unwrap().contains("rc=1") && fill["stderr"].as_str().unwrap().contains("No space left"), "{fill}");
    json(exec(&fleet, 0, &b, "rm /workspace/fill.bin").await, StatusCode::OK).await;

    // Egress on node B: the sandbox cannot reach a private address its node can.
    let port = fleet.bases[0].rsplit(':').next().unwrap().to_owned();
    let probe = format!("python3 -c \"import socket; socket.create_connection(('{}', {port}), 3); print('reached')\"", fleet.gateway);
    let blocked = json(exec(&fleet, 0, &b, &probe).await, StatusCode::OK).await;
    assert!(blocked["exit_code"] != 0 && !blocked["stdout"].as_str().unwrap().contains("reached"), "{blocked}");
    let from_node = crate::helpers::docker(&[
        "exec",
        &fleet.hosts[1].container,
        "bash",
        "-c",
        &format!("timeout 3 bash -c '</dev/tcp/{}/{port}' && echo open", fleet.gateway),
    ]);
    assert_eq!(from_node, "open", "the node itself reaches it: the sandbox was stopped by its egress rules");

    // The node's agent restarts: its sandboxes keep running, untouched.
    let started_at = |sandbox: &str| node_docker(fleet.host("node-b"), &["inspect", "-f", "{{.State.StartedAt}}", sandbox]);
    let before = started_at(&sandboxes[1]);
    stop_agent(fleet.host("node-b"));
    let (status, took, _) = timed_exec(&fleet, 1, &b).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < Duration::from_secs(5), "an agent that is down answers 503 within 5 s: {took:?}");
    start_agent(fleet.host("node-b"), None);
    until_exec_works(&fleet, &b, Duration::from_secs(20)).await;
    assert_eq!(started_at(&sandboxes[1]), before, "the sandbox was not restarted");

    // The dashboard, in Chromium through replica 0, says where the instance runs.
    let browser = crate::webdriver::Browser::start_reaching(&[&fleet.gateway]).await;
    let page = format!("{}/account", fleet.bases[0]);
    browser.goto_until_loaded(&page, "return !document.getElementById('auth').hidden", 3).await;
    browser.fill("#login-form input[name=email]", crate::fleet::EMAIL).await;
    browser.fill("#login-form input[name=password]", crate::helpers::PASSWORD).await;
    browser.click("#login-form button[type=submit]").await;
    let open = format!(".instance[data-instance-id='{b}'] button[data-action=open]");
    browser.wait_for(&format!("return document.querySelector(\"{open}\") !== null"), 20).await;
    browser.click(&open).await;
    let usage = "document.getElementById('panel-usage').textContent";
    browser.wait_for(&format!("return {usage}.startsWith('Host: node-b · ') && {usage}.includes('Model: 17 tokens')"), 20).await;

    // Node B stops (frozen): calls for its instances answer 503 quickly, node A's still work;
    // then node B is cut off the network instead. Each time it comes back by itself.
    let a = ids[0].clone();
    for (fault, heal) in [
        (vec!["pause", &fleet.hosts[1].container], vec!["unpause", &fleet.hosts[1].container]),
        (
            vec!["network", "disconnect", &fleet.network, &fleet.hosts[1].container],
            vec!["network", "connect", "--ip", &fleet.hosts[1].ip, &fleet.network, &fleet.hosts[1].container],
        ),
    ] {
        crate::helpers::docker(&fault);
        for server in [0, 1] {
            let (status, took, body) = timed_exec(&fleet, server, &b).await;
            assert_eq!((status, body["error"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("engine_unavailable")), "{fault:?}: {body}");
            assert!(took < Duration::from_secs(5), "{fault:?}: answered in {took:?}");
        }
        let (status, took, body) = timed_exec(&fleet, 1, &a).await;
        assert_eq!((status, body["stdout"].as_str()), (StatusCode::OK, Some("alive\n")), "node a is unaffected: {body}");
        assert!(took < Duration::from_secs(3), "{took:?}");
        let listed = fleet.api(0, Method::GET, "/api/instances").send().await.unwrap();
        assert_eq!(listed.status(), StatusCode::OK, "listing does not wait for a node");
        tokio::time::sleep(Duration::from_secs(16)).await;
        assert_eq!(placement(&fleet, &b).await, json!({"name": "node-b", "reachable": false}), "{fault:?}");
        browser.click(&open).await;
        browser.wait_for(&format!("return {usage}.startsWith('Host: node-b (not answering')"), 20).await;
        let row = json(fleet.api(0, Method::GET, &format!("/api/instances/{b}")).send().await.unwrap(), StatusCode::OK).await;
        assert_eq!(row["status"], "ready", "nothing was recreated or marked failed behind the user's back: {row}");
        crate::helpers::docker(&heal);
        let back = until_exec_works(&fleet, &b, Duration::from_secs(30)).await;
        eprintln!("{fault:?}: back after {back:?}");
        assert_eq!(started_at(&sandboxes[1]), before, "the sandbox was not restarted");
    }
}

/// A chat turn that the agent answers with the model (`/llm`); the answer.
async fn llm_turn(fleet: &Fleet, server: usize, id: &str) -> String {
    let turn = fleet.api(server, Method::POST, &format!("/api/instances/{id}/chat")).json(&json!({"message": "/llm hello from a node"})).send().await;
    let turn = json(turn.unwrap(), StatusCode::OK).await;
    turn["assistant_message"]["content"].as_str().unwrap_or_default().to_owned()
}

/// A variable of a sandbox's environment, as its node's engine has it.
fn node_env(fleet: &Fleet, node: &str, sandbox: &str, name: &str) -> String {
    let env = node_docker(fleet.host(node), &["inspect", "-f", "{{range .Config.Env}}{{println .}}{{end}}", sandbox]);
    env.lines().find_map(|l| l.strip_prefix(&format!("{name}="))).unwrap_or_default().to_owned()
}

/// From inside the sandbox: `GET {its broker}{path}` with `token`; (status, body).
async fn broker_models(fleet: &Fleet, id: &str, path: &str, token: &str) -> (u16, String) {
    let script = format!(
        "python3 - <<'EOF'\nimport os, urllib.request, urllib.error\n\
         req = urllib.request.Request(os.environ['OCAAS_LLM_BASE_URL'] + '{path}', headers={{'Authorization': 'Bearer {token}'}})\n\
         try:\n    r = urllib.request.urlopen(req, timeout=10); print(r.status, r.read().decode())\n\
         except urllib.error.HTTPError as e: print(e.code, e.read().decode())\nEOF"
    );
    let ran = json(exec(fleet, 0, id, &script).await, StatusCode::OK).await;
    let text = ran["stdout"].as_str().unwrap_or_default().trim().to_owned();
    let (status, body) = text.split_once(' ').unwrap_or_else(|| panic!("no answer from the broker: {ran}"));
    (status.parse().unwrap(), body.to_owned())
}

/// What a sandbox's files look like: every file's checksum, links and modes under /workspace.
async fn listing(fleet: &Fleet, server: usize, id: &str) -> String {
    let command = "cd /workspace && find . -printf '%p %y %m %l\\n' | sort && find . -type f -exec sha256sum {} + | sort";
    let ran = json(exec(fleet, server, id, command).await, StatusCode::OK).await;
    assert_eq!(ran["exit_code"], 0, "{ran}");
    ran["stdout"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_drained_node_is_emptied_by_moves_with_identical_files_and_a_replica_killed_mid_create_is_taken_over() {
    let mut fleet = Fleet::start(&[2, 3]).await;
    let first = json(create(&fleet, 0).await, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    let sandbox = until_ready(&fleet, &first).await["sandbox_id"].as_str().unwrap().to_owned();
    assert_eq!(placement(&fleet, &first).await["name"], "node-a");
    let made = "mkdir -p deep/er && head -c 3000000 /dev/urandom > deep/er/blob.bin && echo moved intact > keep.txt && ln -s keep.txt link && chmod 640 keep.txt";
    json(exec(&fleet, 0, &first, &format!("cd /workspace && {made}")).await, StatusCode::OK).await;
    let before = listing(&fleet, 1, &first).await;
    assert!(before.contains("./link l 777 keep.txt") && before.contains("./keep.txt f 640"), "{before}");

    // Draining: node A takes nothing new.
    fleet.admin(&["nodes", "drain", "node-a"]);
    let second = json(create(&fleet, 1).await, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    until_ready(&fleet, &second).await;
    assert_eq!(placement(&fleet, &second).await["name"], "node-b");

    // The move: the same files on node B, nothing left on node A, which can then be removed.
    let moved = fleet.admin(&["instances", "move", "--id", &first]);
    assert!(moved.contains("moved to node node-b"), "{moved}");
    let row = json(fleet.api(1, Method::GET, &format!("/api/instances/{first}")).send().await.unwrap(), StatusCode::OK).await;
    assert_eq!((row["status"].as_str(), row["sandbox_id"].as_str()), (Some("ready"), Some(sandbox.as_str())), "{row}");
    assert_eq!(placement(&fleet, &first).await["name"], "node-b");
    assert_eq!(listing(&fleet, 0, &first).await, before, "identical files, links and modes on node b");
    assert_eq!(node_docker(fleet.host("node-a"), &["ps", "-aq", "--filter", "label=ocaas.managed=true"]), "", "no sandbox left on node a");
    let leftover = crate::helpers::docker(&["exec", &fleet.hosts[0].container, "ls", "-A", "/var/lib/ocaas-node/instances"]);
    assert_eq!(leftover, "", "no storage left on node a");
    // The move's snapshot went through the bucket the replicas share, not a host's disk.
    let kept = crate::s3::objects(&fleet.bucket).await;
    assert!(kept.len() == 1 && kept[0].0.starts_with("fleet/") && kept[0].1 > 3_000_000, "{kept:?}");
    assert!(fleet.admin(&["nodes", "remove", "node-a"]).contains("removed"));
    assert_eq!(fleet.nodes().len(), 1);

    // A replica killed right after it accepted a create: the other takes the instance over.
    let third = json(create(&fleet, 0).await, StatusCode::CREATED).await["id"].as_str().unwrap().to_owned();
    drop(fleet.servers.remove(0));
    let ready = until_ready_on(&fleet, 1, &third).await;
    let containers = node_docker(
        fleet.host("node-b"),
        &["ps", "-a", "--format", "{{.Names}}", "--filter", &format!("name={}", ready["sandbox_id"].as_str().unwrap())],
    );
    assert_eq!(containers.lines().count(), 1, "exactly one sandbox for it: {containers}");
    let ran = json(exec(&fleet, 1, &third, "echo taken over").await, StatusCode::OK).await;
    assert_eq!(ran["stdout"], "taken over\n");
    // Its model calls: node B's relay finds the first replica gone and uses the other.
    assert_eq!(llm_turn(&fleet, 1, &third).await, crate::broker::ANSWER.concat());
    assert_eq!(llm_turn(&fleet, 1, &first).await, crate::broker::ANSWER.concat(), "the moved instance's too");

    // Node B's reconciler lease passes to the surviving replica, which removes a container of
    // this deployment that no instance knows (an orphan) from node B.
    let deployment = ocaas::db::deployment_id(&fleet.db).await.unwrap().to_string();
    let image = node_docker(fleet.host("node-b"), &["inspect", "-f", "{{.Config.Image}}", ready["sandbox_id"].as_str().unwrap()]);
    let orphan = format!("ocaas-orphan-{}", &deployment[..8]);
    let labels = ["ocaas.managed=true".to_owned(), format!("ocaas.deployment={deployment}"), format!("ocaas.instance={}", uuid::Uuid::new_v4())];
    let mut run = vec!["run", "-d", "--name", &orphan, "--entrypoint", "sleep"];
    for label in &labels {
        run.extend(["--label", label]);
    }
    run.extend([image.as_str(), "600"]);
    node_docker(fleet.host("node-b"), &run);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !node_docker(fleet.host("node-b"), &["ps", "-aq", "--filter", &format!("name={orphan}")]).is_empty() {
        assert!(Instant::now() < deadline, "the orphan on node b was not removed by the surviving replica");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let holders: Vec<(String, uuid::Uuid)> = sqlx::query_as("SELECT scope, holder FROM reconcile_leases").fetch_all(&fleet.db).await.unwrap();
    let node_b = fleet.nodes()[0]["id"].as_str().unwrap().to_owned();
    assert!(holders.iter().any(|(scope, _)| *scope == node_b), "node b is reconciled under a lease: {holders:?}");
}
