//! Test harness: the real app on 127.0.0.1:0 against a real PostgreSQL, one fresh database
//! per test. With `DATABASE_URL` unset, one private cluster (the same code as `ocaas serve`'s)
//! is started for the whole run under the temp dir and shared by all test processes.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ocaas::auth::service;
use ocaas::config::Settings;
use ocaas::db::{self, embedded::EmbeddedPostgres};
use ocaas::runtime::DockerRuntime;
use ocaas::serve::{self, start_background_tasks};
use ocaas::state::AppState;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

/// Where test databases are created, as (maintenance options, URL for a database name).
struct Server {
    admin: PgConnectOptions,
    url_for: Box<dyn Fn(&str) -> String + Send + Sync>,
    options_for: Box<dyn Fn(&str) -> PgConnectOptions + Send + Sync>,
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var("DATABASE_URL") {
        Ok(url) => {
            let base: PgConnectOptions = url.parse().expect("DATABASE_URL parses");
            let base_url = url::Url::parse(&url).expect("DATABASE_URL is a URL");
            let for_db = base.clone();
            Server {
                admin: base.clone(),
                url_for: Box::new(move |name| {
                    let mut url = base_url.clone();
                    url.set_path(name);
                    url.to_string()
                }),
                options_for: Box::new(move |name| for_db.clone().database(name)),
            }
        }
        Err(_) => {
            let dir = std::env::temp_dir().join(format!("ocaas-test-pg-{}", unsafe { libc::geteuid() }));
            let cluster = EmbeddedPostgres::new(&dir).expect("preparing the test cluster");
            cluster.ensure_running_blocking().expect("starting the test cluster");
            let (c1, c2) = (cluster.clone(), cluster.clone());
            Server {
                admin: cluster.connect_options("postgres"),
                url_for: Box::new(move |name| c1.url(name)),
                options_for: Box::new(move |name| c2.connect_options(name)),
            }
        }
    })
}

/// The server's defaults, made smaller and quicker for tests.
pub fn test_settings() -> Settings {
    // Tests that start sandboxes set the real image with `sandbox_image()`.
    let mut settings = Settings::defaults("ocaas-sandbox:not-built-for-this-test");
    // The server runs in the test process: its confined helper is the real binary.
    settings.helper_exe = env!("CARGO_BIN_EXE_ocaas").into();
    settings.bind = "127.0.0.1:0".parse().unwrap();
    settings.max_body_bytes = 64 * 1024;
    settings.session_hours = 24;
    settings.chat_timeout = Duration::from_secs(60);
    // `tests/run` runs the chat tests a second time over the gateway's HTTP door only.
    if std::env::var("OCAAS_GATEWAY_PROTOCOL").as_deref() == Ok("http") {
        settings.gateway_protocol = ocaas::config::GatewayProtocol::Http;
    }
    // Tests sign in often from 127.0.0.1; the limits have their own tests.
    settings.auth_per_minute_per_addr = std::num::NonZeroU32::new(10_000).unwrap();
    settings.login_per_minute_per_account = std::num::NonZeroU32::new(10_000).unwrap();
    // Scheduled backups have their own test; elsewhere they would freeze instances mid-test.
    settings.snapshots.backup_interval = Duration::ZERO;
    let instances = &mut settings.instances;
    instances.limits.memory_bytes = 512 << 20;
    instances.limits.pids = 256;
    instances.ready_timeout = Duration::from_secs(90);
    instances.reconcile_interval = Duration::from_secs(1);
    instances.max_upload_bytes = 64 << 20;
    // Small storage images (sparse; created per instance and removed with it).
    instances.disk_quota_bytes = 1 << 30;
    // A root per test server: its drop can unmount and remove everything under it.
    instances.disk_root = test_disk_root().join(Uuid::new_v4().simple().to_string());
    // The isolation tests' allowlisted listener; every test server puts the same policy in place.
    instances.egress.allow = vec![ALLOWLISTED_NET.parse().unwrap()];
    // Every test server has a broker; each binds the first free port of one shared range.
    instances.broker_ports = (18800, 18999);
    instances.egress.host_ports = vec![instances.broker_ports];
    settings
}

/// The brokers' port range of every test server (each binds its first free port).
pub const BROKER_PORTS: &str = "18800-18999";

/// The egress policy is one per host, put in place by every server that starts: an `ocaas
/// serve` a test runs must ask for the same one as the others (their brokers' ports, the
/// isolation tests' network), or the other tests' sandboxes lose their brokers while it runs.
pub fn same_host_policy(command: &mut std::process::Command) -> &mut std::process::Command {
    command.env("OCAAS_BROKER_PORT", BROKER_PORTS).env("OCAAS_EGRESS_ALLOW", ALLOWLISTED_NET)
}

/// A network the isolation tests put a listener in and every test server allowlists.
pub const ALLOWLISTED_NET: &str = "10.213.77.0/24";

/// Where test instances' storage lives (each test server has a directory of its own in it).
pub fn test_disk_root() -> std::path::PathBuf {
    std::env::temp_dir().join("ocaas-test-instances")
}

/// The offline sandbox image, built once for the whole run by `docker/offline/build.sh`.
/// Panics (the test fails, never skips) when the Docker engine is not there.
pub fn sandbox_image() -> String {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let ping = std::process::Command::new("docker").args(["version", "--format", "{{.Server.Version}}"]).output();
            assert!(
                ping.as_ref().is_ok_and(|o| o.status.success()),
                "these tests need the Docker engine (CI={}); `docker version` failed: {ping:?}",
                std::env::var("CI").unwrap_or_default()
            );
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/docker/offline/build.sh");
            ocaas::runtime::image::resolve(None, std::path::Path::new(script)).expect("building the offline sandbox image")
        })
        .clone()
}

/// A fresh, migrated database; returns its pool and URL.
pub async fn fresh_database() -> (PgPool, String) {
    let name = format!("t_{}", Uuid::new_v4().simple());
    let server = server();
    db::create_database_if_missing(&server.admin, &name).await.expect("creating the test database");
    let pool = db::pool((server.options_for)(&name)).await.expect("connecting to the test database");
    db::migrate(&pool).await.expect("migrating the test database");
    (pool, (server.url_for)(&name))
}

pub struct SeededUser {
    pub id: Uuid,
    pub email: String,
    pub key: String,
}

pub struct TestApp {
    pub address: String,
    pub db: PgPool,
    pub database_url: String,
    pub client: reqwest::Client,
    pub user: SeededUser,
    pub state: AppState,
    /// The first server of a test owns its storage root and clears it when dropped; a
    /// respawned one (same database, same root) leaves that to it.
    owns_storage: bool,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let (pool, database_url) = fresh_database().await;
    let mut settings = test_settings();
    configure(&mut settings);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let runtime = host_runtime(&settings).await;
    let state = AppState::new(pool.clone(), settings, runtime).await.expect("building the app state");
    start_background_tasks(&state);
    first_reconcile(&state).await;
    tokio::spawn(serve::serve(listener, state.clone(), std::future::pending()));

    let user = service::create_user(&pool, "seed@example.com", PASSWORD, None).await.expect("seeding a user");
    let key = service::create_api_key(&pool, user.id, Some("seed"), None).await.expect("seeding a key").key;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    TestApp { address, db: pool, database_url, client, user: SeededUser { id: user.id, email: user.email, key }, state, owns_storage: true }
}

/// Waits for the reconciler's first pass (it runs at start): rows a test inserts afterwards
/// are looked at one interval later, not by a pass that happened to be under way.
async fn first_reconcile(state: &AppState) {
    let passes = || ["ok", "error"].iter().map(|o| state.metrics.reconcile_passes.with_label_values(&[o]).get()).sum::<u64>();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while passes() == 0 {
        assert!(std::time::Instant::now() < deadline, "the reconciler's first pass did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The runtime a test server uses: this host's engine in process, or — the one switch,
/// `OCAAS_TEST_NODE=local` — the same engine behind an `ocaas node` served on loopback, reached
/// over its pinned-TLS link like a remote node, so the whole suite runs through the seam.
pub async fn host_runtime(settings: &Settings) -> Arc<dyn ocaas::runtime::Runtime> {
    let docker: Arc<dyn ocaas::runtime::Runtime> = Arc::new(DockerRuntime::connect().expect("a Docker client"));
    if std::env::var("OCAAS_TEST_NODE").as_deref() != Ok("local") {
        return docker;
    }
    let shutdown = tokio_util::sync::CancellationToken::new();
    Arc::new(ocaas::runtime::node::serve_loopback(docker, settings.instances.disk_root.clone(), shutdown).await.expect("a loopback node"))
}

/// A second server process on the same database as `app` (as after a restart).
pub async fn respawn(app: &TestApp) -> TestApp {
    respawn_with(app, |_| {}).await
}

/// `respawn` with changed settings (as after an upgrade).
pub async fn respawn_with(app: &TestApp, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let mut settings = (*app.state.settings).clone();
    settings.instances.reconcile_interval = Duration::from_secs(1);
    configure(&mut settings);
    let runtime = host_runtime(&settings).await;
    let state = AppState::new(app.db.clone(), settings, runtime).await.unwrap();
    start_background_tasks(&state);
    tokio::spawn(serve::serve(listener, state.clone(), std::future::pending()));
    let user = SeededUser { id: app.user.id, email: app.user.email.clone(), key: app.user.key.clone() };
    TestApp { address, db: app.db.clone(), database_url: app.database_url.clone(), client: app.client.clone(), user, state, owns_storage: false }
}

/// Grants the seeded user a plan, creates an instance over the API and waits until it is ready.
/// Returns (instance id, sandbox container name).
pub async fn ready_instance(app: &TestApp) -> (String, String) {
    service::grant_subscription(&app.db, &app.user.email, 5, None).await.unwrap();
    let response = app.api(Method::POST, "/api/instances").send().await.unwrap();
    let created = json(response, StatusCode::CREATED).await;
    let id = created["id"].as_str().unwrap().to_owned();
    until_ready(app, &id).await;
    (id, created["sandbox_id"].as_str().unwrap().to_owned())
}

/// Waits (up to 2 minutes) until the instance `id`, as the seeded user sees it, is `ready`.
pub async fn until_ready(app: &TestApp, id: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let body = json(app.api(Method::GET, &format!("/api/instances/{id}")).send().await.unwrap(), StatusCode::OK).await;
        match body["status"].as_str() {
            Some("ready") => return,
            Some("error") => panic!("instance failed: {body}"),
            _ => assert!(std::time::Instant::now() < deadline, "instance never became ready: {body}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Python package the test command installs (`.ci/run`); missing, the test fails and says so.
pub fn python_package(module: &str) {
    let found = std::process::Command::new("python3").args(["-c", &format!("import {module}")]).output();
    assert!(found.is_ok_and(|o| o.status.success()), "this test needs the Python package `{module}` (the test command `./.ci/run` installs it)");
}

/// Runs the docker CLI (the test's own view of the engine); its trimmed standard output.
pub fn docker(args: &[&str]) -> String {
    let output = std::process::Command::new("docker").args(args).output().expect("running docker");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs a shell script in the sandbox with `docker exec` (the test's own view, not ocaas's).
pub fn sandbox_sh(sandbox: &str, script: &str) -> String {
    let output = std::process::Command::new("docker").args(["exec", sandbox, "sh", "-c", script]).output().expect("docker exec");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// An app whose instances run the real offline sandbox image.
pub async fn spawn_app_with_docker(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let image = tokio::task::spawn_blocking(sandbox_image).await.unwrap();
    spawn_app_with(|settings| {
        settings.instances.image = image;
        configure(settings);
    })
    .await
}

impl TestApp {
    /// Waits until no instance is still being created, so nothing is created after the test.
    pub async fn settle(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let busy: i64 = sqlx::query_scalar("SELECT count(*) FROM instances WHERE status IN ('provisioning', 'rebooting', 'deleting')")
                .fetch_one(&self.db)
                .await
                .unwrap();
            if busy == 0 || std::time::Instant::now() > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for TestApp {
    /// Removes whatever containers and volumes this test's deployment left on the engine.
    fn drop(&mut self) {
        self.state.shutdown.cancel();
        let label = format!("label=ocaas.deployment={}", self.state.deployment_id);
        let list = |args: &[&str]| -> Vec<String> {
            std::process::Command::new("docker")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let containers = list(&["ps", "-aq", "--filter", &label]);
        let names = list(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]);
        if !containers.is_empty() {
            let _ = std::process::Command::new("docker").args(["rm", "-f", "-v"]).args(&containers).output();
        }
        // Their storage: unmounted and removed as deleting the instance would.
        let root = &self.state.settings.instances.disk_root;
        for name in names {
            let dir = root.join(&name);
            let _ = std::process::Command::new("umount").arg("-l").arg(&dir).output();
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_file(dir.with_extension("img"));
        }
        // And whatever else is mounted under the root (an instance whose container was gone).
        if self.owns_storage {
            unmount_under(root);
            let _ = std::fs::remove_dir_all(root);
        }
        let volumes = list(&["volume", "ls", "-q", "--filter", &label]);
        if !volumes.is_empty() {
            let _ = std::process::Command::new("docker").args(["volume", "rm", "-f"]).args(&volumes).output();
        }
    }
}

/// Removes the ocaas containers whose mounts come from under `root` (those of a server
/// process a test started with its data there), then unmounts what is left under it.
pub fn clear_server_dir(root: &std::path::Path) {
    let output = |args: &[&str]| -> String {
        std::process::Command::new("docker").args(args).output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    };
    let managed = output(&["ps", "-aq", "--filter", "label=ocaas.deployment"]);
    for id in managed.split_whitespace() {
        let sources = output(&["inspect", "--format", "{{range .Mounts}}{{.Source}}\n{{end}}", id]);
        if sources.lines().any(|source| std::path::Path::new(source).starts_with(root)) {
            let _ = std::process::Command::new("docker").args(["rm", "-f", "-v", id]).output();
        }
    }
    unmount_under(root);
}

/// Lazily unmounts every mount point at or below `root` (deepest first).
pub fn unmount_under(root: &std::path::Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Field 5 is the mount point, with spaces and the like written as octal escapes.
    let mut points: Vec<String> = mountinfo.lines().filter_map(|line| line.split(' ').nth(4)).map(|p| p.replace("\\040", " ")).collect();
    points.retain(|point| std::path::Path::new(point).starts_with(root));
    points.sort_by_key(|point| std::cmp::Reverse(point.len()));
    for point in points {
        let _ = std::process::Command::new("umount").arg("-l").arg(&point).output();
    }
}

impl TestApp {
    /// An instance row of the seeded user marked `ready`, with no container behind it: for
    /// checks that end before anything reaches a sandbox (body validation, limits).
    pub async fn ready_instance_row(&self) -> Uuid {
        let id = Uuid::new_v4();
        let sandbox = format!("sandy-{}", &Uuid::new_v4().simple().to_string()[..12]);
        sqlx::query("INSERT INTO instances (id, user_id, sandbox_id, status, image, gateway_token) VALUES ($1, $2, $3, 'ready', 'none', 'token')")
            .bind(id)
            .bind(self.user.id)
            .bind(sandbox)
            .execute(&self.db)
            .await
            .expect("inserting an instance row");
        // Like the server's own writes: its next list shows the row without waiting for the
        // database's notification.
        ocaas::state::user_data_written();
        id
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// A request authenticated as the seeded user.
    pub fn api(&self, method: Method, path: &str) -> RequestBuilder {
        self.with_key(method, path, &self.user.key)
    }

    pub fn with_key(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    /// A request without credentials.
    pub fn anon(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    /// Logs the seeded user in; returns the session cookie (`name=value`) and its CSRF token.
    pub async fn login(&self) -> (String, String) {
        let response = self
            .anon(Method::POST, "/api/account/login")
            .json(&serde_json::json!({"email": self.user.email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
        assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
        let cookie = set_cookie.split(';').next().unwrap().to_owned();
        let csrf = json(response, StatusCode::OK).await["csrf_token"].as_str().unwrap().to_owned();
        (cookie, csrf)
    }

    pub async fn invite(&self, uses: u32, max_instances: u32) -> String {
        let spec = service::InviteSpec { uses, max_instances, valid_days: None, subscription_days: None, monthly_tokens: None };
        service::create_invite(&self.db, &spec).await.unwrap()
    }
}

/// Asserts the response is the API's JSON error with `status` and `code`; returns the body.
/// Sends `request()` until it is answered 401; returns how long that took. A revocation made
/// behind the server's back (another process, SQL by hand) reaches its credential cache through
/// the database's notification, within the bound it states (1 s), not by the very next request.
pub async fn until_refused(request: impl Fn() -> RequestBuilder) -> Duration {
    let started = Instant::now();
    loop {
        if request().send().await.unwrap().status() == StatusCode::UNAUTHORIZED {
            return started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(35), "still accepted 35 s after the revocation");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub async fn assert_error(response: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let got = response.status();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "status for body {text}");
    assert!(content_type.starts_with("application/json"), "content type {content_type} for {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["error"], code, "error code in {body}");
    let message = body["message"].as_str().unwrap_or_else(|| panic!("no message in {body}"));
    assert!(message.len() > 10, "message should be a sentence: {body}");
    assert_eq!(body.as_object().unwrap().len(), 2, "flat error shape: {body}");
    body
}

pub async fn json(response: reqwest::Response, status: StatusCode) -> Value {
    let got = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "status for body {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A server process a test started (nginx, Caddy, Prometheus) and its scratch folder: killed
/// and removed however the test ends.
pub struct ChildGuard(pub std::process::Child, pub std::path::PathBuf);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

/// `ocaas serve` as its own process on `database_url` (the test's PostgreSQL).
pub struct ServerProcess {
    child: std::process::Child,
    pub port: u16,
    pub host: String,
}

pub fn serve_process(database_url: &str, data_dir: &std::path::Path, image: &str) -> ServerProcess {
    serve_process_with(database_url, data_dir, image, &[])
}

/// `serve_process` with more environment.
pub fn serve_process_with(database_url: &str, data_dir: &std::path::Path, image: &str, env: &[(&str, &str)]) -> ServerProcess {
    serve_process_on("127.0.0.1", database_url, data_dir, image, env)
}

/// `serve_process_with` listening on `host` (an address of a network the test made).
pub fn serve_process_on(host: &str, database_url: &str, data_dir: &std::path::Path, image: &str, env: &[(&str, &str)]) -> ServerProcess {
    let port = std::net::TcpListener::bind((host, 0)).unwrap().local_addr().unwrap().port();
    // The same egress policy as every other test server on this host.
    let child = same_host_policy(&mut std::process::Command::new(env!("CARGO_BIN_EXE_ocaas")))
        .env("DATABASE_URL", database_url)
        .env("OCAAS_DATA_DIR", data_dir)
        .env("OCAAS_SANDBOX_IMAGE", image)
        .env("OCAAS_READY_TIMEOUT_SECS", "12")
        .env("OCAAS_RECONCILE_SECS", "1")
        .env("OCAAS_INSTANCE_DISK", "1g")
        .env("OCAAS_AUTO_INSTALL", "false")
        .envs(env.iter().copied())
        .args(["serve", "--bind", &format!("{host}:{port}")])
        .spawn()
        .unwrap();
    ServerProcess { child, port, host: host.to_owned() }
}

impl ServerProcess {
    pub async fn ready(self) -> Self {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !matches!(reqwest::get(format!("http://{}:{}/readyz", self.host, self.port)).await, Ok(r) if r.status() == reqwest::StatusCode::OK) {
            assert!(Instant::now() < deadline, "ocaas serve did not become ready");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
