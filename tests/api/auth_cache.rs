//! Authenticated requests are served from an in-process credential cache, instance lists (and
//! the instance behind `/api/instances/{id}/…`) and account answers from per-user caches; a revocation, an instance change or a plan change made
//! through one server process (or the admin command, or straight in the database) reaches every
//! other at once through the database's notifications. Stated bound: a revoked key or ended
//! session is refused, and a changed list or account is answered, by another server process
//! within 1 s (in practice a few milliseconds); by the process that made the change, on the very
//! next request; an expired plan is answered inactive within 1 s of its expiry.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};

use crate::helpers::{ServerProcess, TestApp, json, serve_process, spawn_app, until_refused};

const BOUND: Duration = Duration::from_secs(1);

/// The app and a second `ocaas serve` process on the same database (its data folder removed
/// when dropped).
struct TwoProcesses {
    app: TestApp,
    other: Option<ServerProcess>,
    data_dir: std::path::PathBuf,
}

impl TwoProcesses {
    async fn start() -> TwoProcesses {
        let app = spawn_app().await;
        let data_dir = std::env::temp_dir().join(format!("ocaas-cache-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&data_dir).unwrap();
        let other = serve_process(&app.database_url, &data_dir, "ocaas-sandbox:not-needed").ready().await;
        TwoProcesses { app, other: Some(other), data_dir }
    }

    /// `path` on the other process.
    fn other_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.other.as_ref().expect("running").port)
    }
}

impl Drop for TwoProcesses {
    fn drop(&mut self) {
        drop(self.other.take()); // stopped before its folder goes
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

#[tokio::test]
async fn a_revoked_key_and_an_ended_session_are_refused_by_another_server_process_within_a_second() {
    let both = TwoProcesses::start().await;
    let (app, other_url) = (&both.app, |path: &str| both.other_url(path));
    let client = reqwest::Client::new();

    let created =
        json(app.api(Method::POST, "/api/account/keys").json(&serde_json::json!({"name": "short-lived"})).send().await.unwrap(), StatusCode::CREATED)
            .await;
    let (key, key_id) = (created["key"].as_str().unwrap().to_owned(), created["id"].as_str().unwrap().to_owned());
    // Used on the other process: now cached there.
    for _ in 0..3 {
        assert_eq!(client.get(other_url("/api/instances")).bearer_auth(&key).send().await.unwrap().status(), StatusCode::OK);
    }
    assert_eq!(app.api(Method::DELETE, &format!("/api/account/keys/{key_id}")).send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let took = until_refused(|| client.get(other_url("/api/instances")).bearer_auth(&key)).await;
    assert!(took < BOUND, "the revoked key was accepted for {took:?} by the other process");

    // A browser session ended on this process is ended on the other one too.
    let (cookie, csrf) = app.login().await;
    assert_eq!(client.get(other_url("/api/account")).header("cookie", &cookie).send().await.unwrap().status(), StatusCode::OK);
    let logout = app.anon(Method::POST, "/api/account/logout").header("cookie", &cookie).header("x-csrf-token", &csrf).send().await.unwrap();
    assert!(logout.status().is_success(), "{}", logout.status());
    let took = until_refused(|| client.get(other_url("/api/account")).header("cookie", &cookie)).await;
    assert!(took < BOUND, "the ended session was accepted for {took:?} by the other process");
}

/// Polls `url` until its JSON answer satisfies `done`; returns how long that took.
async fn until_listed(client: &reqwest::Client, url: &str, key: &str, done: impl Fn(&serde_json::Value) -> bool) -> Duration {
    until_answered(client, url, key, |status, body| status == StatusCode::OK && done(body)).await
}

/// Polls `url` until its status and JSON answer satisfy `done`; returns how long that took.
async fn until_answered(client: &reqwest::Client, url: &str, key: &str, done: impl Fn(StatusCode, &serde_json::Value) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        let response = client.get(url).bearer_auth(key).send().await.unwrap();
        let status = response.status();
        if done(status, &response.json().await.unwrap()) {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(15), "{url} did not change within 15 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn names(list: &serde_json::Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap_or("")).collect()
}

#[tokio::test]
async fn instance_lists_show_a_change_at_once_on_the_process_that_made_it_and_within_a_second_on_another() {
    let both = TwoProcesses::start().await;
    let (app, other_list) = (&both.app, both.other_url("/api/instances"));
    let (client, key) = (reqwest::Client::new(), app.user.key.clone());
    let id = uuid::Uuid::new_v4();
    // The instance as `/api/instances/{id}` (and every route under it) finds it on each process.
    let (here, there) = (app.url(&format!("/api/instances/{id}")), both.other_url(&format!("/api/instances/{id}")));
    let shown = |url: &str| {
        let request = client.get(url).bearer_auth(&key);
        async move {
            let response = request.send().await.unwrap();
            (response.status(), response.json::<serde_json::Value>().await.unwrap())
        }
    };

    // Both processes answer (and now cache) an empty list.
    for _ in 0..3 {
        assert_eq!(names(&json(client.get(&other_list).bearer_auth(&key).send().await.unwrap(), StatusCode::OK).await), Vec::<&str>::new());
        assert_eq!(json(app.api(Method::GET, "/api/instances").send().await.unwrap(), StatusCode::OK).await, serde_json::json!([]));
    }
    for url in [&here, &there] {
        assert_eq!(shown(url).await.0, StatusCode::NOT_FOUND);
    }
    // A row written behind both servers' backs (as an admin tool or another server would).
    sqlx::query("INSERT INTO instances (id, user_id, sandbox_id, status, name, image, gateway_token) VALUES ($1, $2, $3, 'stopped', 'first', 'none', 'token')")
        .bind(id)
        .bind(app.user.id)
        .bind(format!("sandy-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]))
        .execute(&app.db)
        .await
        .unwrap();
    // Found at once by both, even while their remembered lists may not show it yet.
    for url in [&here, &there] {
        let (status, body) = shown(url).await;
        assert_eq!((status, body["name"].as_str()), (StatusCode::OK, Some("first")), "{url}");
    }
    let took = until_listed(&client, &other_list, &key, |list| names(list) == ["first"]).await;
    assert!(took < BOUND, "the other process listed the old instances for {took:?}");
    let took = until_listed(&client, &app.url("/api/instances"), &key, |list| names(list) == ["first"]).await;
    assert!(took < BOUND, "this process listed the old instances for {took:?}");

    // Renamed through this process: its next list shows the new name, every time, without waiting.
    for n in 0..20 {
        let name = format!("name-{n}");
        let patch = app.api(Method::PATCH, &format!("/api/instances/{id}")).json(&serde_json::json!({"name": name})).send().await.unwrap();
        assert_eq!(patch.status(), StatusCode::OK);
        let listed = json(app.api(Method::GET, "/api/instances").send().await.unwrap(), StatusCode::OK).await;
        assert_eq!(names(&listed), [name.as_str()], "the list right after a rename through the same process");
        assert_eq!(shown(&here).await.1["name"], name.as_str(), "the instance right after a rename through the same process");
    }
    let took = until_listed(&client, &other_list, &key, |list| names(list) == ["name-19"]).await;
    assert!(took < BOUND, "the other process listed the old name for {took:?}");
    let took = until_answered(&client, &there, &key, |_, body| body["name"] == "name-19").await;
    assert!(took < BOUND, "the other process showed the old name for {took:?}");

    // Deleted behind their backs: gone from both lists.
    sqlx::query("DELETE FROM instances WHERE id = $1").bind(id).execute(&app.db).await.unwrap();
    for url in [other_list.clone(), app.url("/api/instances")] {
        let took = until_listed(&client, &url, &key, |list| list.as_array().unwrap().is_empty()).await;
        assert!(took < BOUND, "{url} still listed the deleted instance after {took:?}");
    }
    for url in [&here, &there] {
        let took = until_answered(&client, url, &key, |status, _| status == StatusCode::NOT_FOUND).await;
        assert!(took < BOUND, "{url} still found the deleted instance after {took:?}");
    }
}

#[tokio::test]
async fn an_account_answer_shows_a_plan_change_at_once_here_within_a_second_on_another_process_and_its_expiry_on_time() {
    let both = TwoProcesses::start().await;
    let (app, other_account) = (&both.app, both.other_url("/api/account"));
    let (client, key) = (reqwest::Client::new(), app.user.key.clone());

    // No plan yet, answered (and now cached) by both processes.
    for _ in 0..3 {
        assert!(json(client.get(&other_account).bearer_auth(&key).send().await.unwrap(), StatusCode::OK).await["subscription"].is_null());
        assert!(json(app.api(Method::GET, "/api/account").send().await.unwrap(), StatusCode::OK).await["subscription"].is_null());
    }
    // Granted in this process (as `ocaas admin grant` does): its very next answer shows it.
    ocaas::auth::service::grant_subscription(&app.db, &app.user.email, 3, None).await.unwrap();
    let here = json(app.api(Method::GET, "/api/account").send().await.unwrap(), StatusCode::OK).await;
    assert_eq!(here["subscription"]["max_instances"], 3, "{here}");
    let took = until_listed(&client, &other_account, &key, |account| account["subscription"]["max_instances"] == 3).await;
    assert!(took < BOUND, "the other process answered the old plan for {took:?}");

    // Changed by hand to expire in 2 s: both show it at once, and show it inactive once it has expired.
    sqlx::query("UPDATE subscriptions SET expires_at = now() + interval '2 seconds' WHERE user_id = $1")
        .bind(app.user.id)
        .execute(&app.db)
        .await
        .unwrap();
    let changed = Instant::now();
    for url in [other_account.clone(), app.url("/api/account")] {
        let took = until_listed(&client, &url, &key, |account| account["subscription"]["expires_at"].is_string()).await;
        assert!(took < BOUND, "{url} answered the old expiry for {took:?}");
        assert_eq!(json(client.get(&url).bearer_auth(&key).send().await.unwrap(), StatusCode::OK).await["subscription"]["active"], true);
    }
    for url in [other_account.clone(), app.url("/api/account")] {
        until_listed(&client, &url, &key, |account| account["subscription"]["active"] == false).await;
        let late = changed.elapsed().saturating_sub(Duration::from_secs(2));
        assert!(late < BOUND, "{url} called the expired plan active for {late:?} after it expired");
    }
}

/// PostgreSQL wakes every listening backend on each notifying commit (every chat message), so
/// each server process listens on all its channels through one connection.
#[tokio::test]
async fn each_server_process_listens_on_all_channels_through_one_connection() {
    let both = TwoProcesses::start().await;
    let listening = || async {
        sqlx::query_as::<_, (String,)>(
            "SELECT query FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE '%LISTEN%' AND pid <> pg_backend_pid()",
        )
        .fetch_all(&both.app.db)
        .await
        .unwrap()
    };
    let started = Instant::now();
    let mut queries = listening().await;
    while queries.len() < 2 && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        queries = listening().await;
    }
    assert_eq!(queries.len(), 2, "one listening connection per process: {queries:?}");
    for (query,) in &queries {
        for channel in ["ocaas_chat", "ocaas_auth", "ocaas_instances", "ocaas_accounts"] {
            assert!(query.contains(channel), "{channel} missing from {query}");
        }
    }
}
