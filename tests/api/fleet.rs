//! A fleet for multi-host tests: Docker hosts of their own (a container per node, each with
//! its own Docker engine and address on a bridge network the test creates, built from Debian's
//! packages by `tests/fixtures/node-image.sh`), `ocaas node` joined on each, and two `ocaas serve`
//! replicas on one database listening on that network. Nodes run as the measured recipe in
//! `../shared/notes/multi-host-testing.md` says (no `--privileged` on this kind of machine).
//! Everything is removed when the fleet is dropped.

use std::process::Command;
use std::time::{Duration, Instant};

use ocaas::auth::service;
use serde_json::Value;

use crate::helpers::{PASSWORD, ServerProcess, docker, fresh_database, sandbox_image, serve_process_on};

/// The capabilities a node's engine needs: this machine's bounding set without SYS_RESOURCE.
const CAPS: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
];

pub struct Host {
    pub name: String,
    pub container: String,
    pub ip: String,
}

pub struct Fleet {
    pub db: sqlx::PgPool,
    pub database_url: String,
    pub key: String,
    pub bases: Vec<String>,
    pub servers: Vec<ServerProcess>,
    pub hosts: Vec<Host>,
    pub network: String,
    pub gateway: String,
    data_dir: std::path::PathBuf,
    image: String,
    /// The operator's model provider the replicas' brokers call (on this host's loopback).
    pub provider: crate::broker::Provider,
    /// The snapshot store the replicas and admin commands share: an S3 bucket (moto).
    pub bucket: crate::s3::Moto,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.servers.clear();
        for host in &self.hosts {
            let _ = Command::new("docker").args(["rm", "-f", "-v", &host.container]).output();
            let _ = Command::new("docker")
                .args(["volume", "rm", "-f", &format!("{}-engine", host.container), &format!("{}-data", host.container)])
                .output();
        }
        let _ = Command::new("docker").args(["network", "rm", &self.network]).output();
        crate::helpers::clear_server_dir(&self.data_dir);
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The node image's tag (built from Debian's packages the first time).
fn node_image() -> String {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/node-image.sh");
    run(script, &[]).lines().last().unwrap_or_default().to_owned()
}

/// The sandbox image saved once as a tar the nodes load (`docker save | docker load`).
fn image_tar(image: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join("ocaas-fleet-images");
    std::fs::create_dir_all(&dir).unwrap();
    let tar = dir.join(format!("{}.tar", image.replace([':', '/'], "_")));
    if !tar.exists() {
        // Each test runs in a process of its own and the multi-host tests start together: each
        // writes its own part, and the renames (atomic) put one whole tar in place.
        let part = tar.with_extension(format!("{}.part", std::process::id()));
        run("docker", &["save", "-o", part.to_str().unwrap(), image]);
        std::fs::rename(&part, &tar).unwrap();
    }
    tar
}

/// The fleet's one user.
pub const EMAIL: &str = "fleet@example.com";

impl Fleet {
    /// `capacities.len()` nodes (named node-a, node-b, …) with those capacities, joined.
    pub async fn start(capacities: &[u32]) -> Fleet {
        let image = tokio::task::spawn_blocking(sandbox_image).await.unwrap();
        let (node_image, tar) = {
            let image = image.clone();
            tokio::task::spawn_blocking(move || (node_image(), image_tar(&image))).await.unwrap()
        };
        let (db, database_url) = fresh_database().await;
        let id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        let network = format!("ocaas-fleet-{id}");
        let octet = 16 + u8::from_str_radix(&id[..2], 16).unwrap() % 200;
        let subnet = format!("10.239.{octet}.0/24");
        let gateway = format!("10.239.{octet}.1");
        run("docker", &["network", "create", "--subnet", &subnet, "--gateway", &gateway, &network]);
        let data_dir = std::env::temp_dir().join(format!("ocaas-fleet-{id}"));
        std::fs::create_dir_all(&data_dir).unwrap();
        let provider = crate::broker::scripted_provider().await;
        let bucket = crate::s3::moto().await;
        let mut fleet = Fleet {
            provider,
            bucket,
            db,
            database_url,
            key: String::new(),
            bases: Vec::new(),
            servers: Vec::new(),
            hosts: Vec::new(),
            network,
            gateway,
            data_dir,
            image,
        };
        for (i, _) in capacities.iter().enumerate() {
            let name = format!("node-{}", (b'a' + i as u8) as char);
            let host = Host { container: format!("{}-{name}", fleet.network), ip: format!("10.239.{octet}.{}", 11 + i), name };
            fleet.run_host(&host, &node_image, &tar, i);
            fleet.hosts.push(host);
        }
        // Both nodes load the sandbox image at once.
        let loads: Vec<_> = fleet
            .hosts
            .iter()
            .map(|h| {
                let (container, file) = (h.container.clone(), format!("/images/{}", tar.file_name().unwrap().to_string_lossy()));
                tokio::task::spawn_blocking(move || {
                    wait_for_engine(&container);
                    run("docker", &["exec", &container, "docker", "load", "-q", "-i", &file]);
                })
            })
            .collect();
        for load in loads {
            load.await.unwrap();
        }
        let user = service::create_user(&fleet.db, EMAIL, PASSWORD, None).await.unwrap();
        fleet.key = service::create_api_key(&fleet.db, user.id, None, None).await.unwrap().key;
        service::grant_subscription(&fleet.db, EMAIL, 10, None).await.unwrap();
        for _ in 0..2 {
            fleet.add_server().await;
        }
        for (host, capacity) in fleet.hosts.iter().zip(capacities) {
            let token = fleet.admin(&["nodes", "join-token", "--name", &host.name, "--capacity", &capacity.to_string()]);
            // Both replicas: the node's model broker relay tries the second when the first is gone.
            start_agent(host, Some((&token, &fleet.bases.join(","))));
        }
        fleet.until_nodes_up(capacities.len()).await;
        fleet
    }

    fn run_host(&self, host: &Host, node_image: &str, tar: &std::path::Path, index: usize) {
        let entry = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/node-entry.sh");
        let mut args: Vec<String> = ["run", "-d", "--name", &host.container, "--hostname", &host.name, "--network", &self.network, "--ip", &host.ip]
            .map(str::to_owned)
            .to_vec();
        args.extend(CAPS.iter().flat_map(|c| ["--cap-add".to_owned(), (*c).to_owned()]));
        for opt in ["seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"] {
            args.extend(["--security-opt".to_owned(), opt.to_owned()]);
        }
        args.extend(["--device-cgroup-rule", "a *:* rwm", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw", "--tmpfs", "/run"].map(str::to_owned));
        args.extend(["-v".to_owned(), format!("{}-engine:/var/lib/docker", host.container)]);
        args.extend(["-v".to_owned(), format!("{}-data:/var/lib/ocaas-node", host.container)]);
        args.extend(["-v".to_owned(), format!("{}:/usr/local/bin/ocaas:ro", env!("CARGO_BIN_EXE_ocaas"))]);
        args.extend(["-v".to_owned(), format!("{entry}:/entry.sh:ro")]);
        args.extend(["-v".to_owned(), format!("{}:/images:ro", tar.parent().unwrap().display())]);
        args.extend([node_image.to_owned(), "/usr/bin/tini".into(), "--".into(), "/entry.sh".into()]);
        args.extend([format!("10.{}.0.1/24", 240 + index), format!("{}-engine", host.container)]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("docker", &refs);
    }

    /// Another `ocaas serve` replica on the fleet's database and network.
    pub async fn add_server(&mut self) {
        let env = [
            ("OCAAS_READY_TIMEOUT_SECS", "90"),
            ("OCAAS_WARM_POOL", "0"),
            ("OCAAS_INSTANCE_DISK", "256m"),
            ("OCAAS_DRIVER_LEASE_SECS", "3"),
            ("OCAAS_LLM_BASE_URL", &self.provider.url),
            ("OCAAS_SNAPSHOT_S3_URL", &self.bucket_url()),
            ("OCAAS_SNAPSHOT_S3_ACCESS_KEY_ID", "testing"),
            ("OCAAS_SNAPSHOT_S3_SECRET_ACCESS_KEY", "testing"),
            ("OCAAS_LLM_API_KEY", crate::broker::OPERATOR_KEY),
            ("OCAAS_LLM_MODEL", crate::broker::MODEL),
        ];
        let server = serve_process_on(&self.gateway, &self.database_url, &self.data_dir, &self.image, &env).ready().await;
        self.bases.push(format!("http://{}:{}", self.gateway, server.port));
        self.servers.push(server);
    }

    /// Where the fleet keeps snapshots.
    pub fn bucket_url(&self) -> String {
        format!("{}/{}/fleet", self.bucket.url, crate::s3::BUCKET)
    }

    /// `ocaas admin …` on the fleet's database; its output.
    pub fn admin(&self, args: &[&str]) -> String {
        let output = Command::new(env!("CARGO_BIN_EXE_ocaas"))
            .arg("admin")
            .args(args)
            .env("DATABASE_URL", &self.database_url)
            // The replicas' data dir: its secret key opens the nodes' credentials.
            .env("OCAAS_DATA_DIR", &self.data_dir)
            .env("OCAAS_SANDBOX_IMAGE", &self.image)
            .env("OCAAS_INSTANCE_DISK", "256m")
            .env("OCAAS_SNAPSHOT_S3_URL", self.bucket_url())
            .env("OCAAS_SNAPSHOT_S3_ACCESS_KEY_ID", "testing")
            .env("OCAAS_SNAPSHOT_S3_SECRET_ACCESS_KEY", "testing")
            .output()
            .unwrap();
        assert!(output.status.success(), "ocaas admin {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `ocaas admin nodes list --json`.
    pub fn nodes(&self) -> Vec<Value> {
        serde_json::from_str::<Vec<Value>>(&self.admin(&["nodes", "list", "--json"])).unwrap()
    }

    pub async fn until_nodes_up(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let fresh = chrono::Utc::now() - chrono::Duration::seconds(10);
            let up = self
                .nodes()
                .iter()
                .filter(|n| n["last_seen"].as_str().and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok()).is_some_and(|t| t > fresh))
                .count();
            if up >= count {
                return;
            }
            let logs: Vec<String> =
                self.hosts.iter().map(|h| docker(&["exec", &h.container, "tail", "-n", "20", "/var/log/ocaas-node.log"])).collect();
            assert!(Instant::now() < deadline, "{up} of {count} nodes answer: {:?}\n{logs:?}", self.nodes());
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
    }

    pub fn api(&self, server: usize, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client().request(method, format!("{}{path}", self.bases[server])).bearer_auth(&self.key)
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).expect("a host of that name")
    }
}

fn wait_for_engine(container: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !Command::new("docker").args(["exec", container, "docker", "info"]).output().is_ok_and(|o| o.status.success()) {
        let log = Command::new("docker")
            .args(["exec", container, "tail", "-n", "30", "/var/log/dockerd.log"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        assert!(Instant::now() < deadline, "the engine of {container} did not start: {log:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Starts (or restarts) `ocaas node` on `host`; `join` on its first start: (token, API base).
pub fn start_agent(host: &Host, join: Option<(&str, &str)>) {
    let mut command = format!("exec ocaas node --dir /var/lib/ocaas-node --listen 0.0.0.0:7443 --advertise {}:7443", host.ip);
    if let Some((token, api)) = join {
        // The test's own bridge network: plain HTTP, allowed for it explicitly.
        command.push_str(&format!(" --join {token} --api {api} --insecure-join"));
    }
    command.push_str(" >>/var/log/ocaas-node.log 2>&1");
    run("docker", &["exec", "-d", &host.container, "sh", "-c", &command]);
}

/// Stops `ocaas node` on `host` (its sandboxes keep running).
pub fn stop_agent(host: &Host) {
    let _ = Command::new("docker").args(["exec", &host.container, "pkill", "-f", "ocaas node"]).output();
}

/// `docker …` inside a node (its own engine).
pub fn node_docker(host: &Host, args: &[&str]) -> String {
    let mut all = vec!["exec", host.container.as_str(), "docker"];
    all.extend_from_slice(args);
    docker(&all)
}
