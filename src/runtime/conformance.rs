//! What every `Runtime` must do, as checks any implementation can be run through: the
//! in-memory one and the node link over it (unit tests), Docker and the node link over Docker
//! (`tests/api/seams.rs`). The domains above rely on exactly these answers — a missing
//! sandbox is `NotFound`, creating or removing twice is fine, a paused sandbox still counts as
//! running and can be stopped, a stopped one cannot be connected to — so a new backend
//! (Kubernetes, see `docs/nodes.md`) is done when it passes them.

use super::{LABEL_DEPLOYMENT, Runtime, RuntimeError, SandboxSpec};

/// A sandbox for the checks: `name` from `image`, its storage under `root`, labelled managed
/// for `deployment`, with what a gateway needs to start (a token and a model endpoint that is
/// never called).
pub fn spec(name: &str, image: &str, root: &std::path::Path, deployment: &str) -> SandboxSpec {
    use std::collections::HashMap;
    let labels = HashMap::from([(super::LABEL_MANAGED.to_owned(), "true".to_owned()), (LABEL_DEPLOYMENT.to_owned(), deployment.to_owned())]);
    let env = [
        "OPENCLAW_GATEWAY_TOKEN=conformance",
        "HOME=/home/sandbox",
        "OCAAS_STATE_DIR=/agent-state",
        "OCAAS_LLM_BASE_URL=http://127.0.0.1:9/v1",
        "OCAAS_LLM_API_KEY=none",
        "OCAAS_LLM_MODEL=none",
    ];
    SandboxSpec {
        name: name.to_owned(),
        image: image.to_owned(),
        disk: super::disk::DiskSpec { dir: root.join(name), quota_bytes: 0 },
        labels,
        env: env.map(String::from).to_vec(),
        limits: super::Limits { memory_bytes: 512 << 20, nano_cpus: 1_000_000_000, pids: 256, log_bytes: 1 << 20 },
    }
}

/// A failed check: which, and what the runtime answered.
#[derive(Debug)]
pub struct Failed(pub String);

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), Failed> {
    if ok { Ok(()) } else { Err(Failed(what())) }
}

/// The lifecycle of one sandbox made from `spec` (which must be labelled managed, with a
/// deployment, and name no existing container): create, list, start, pause, stop, connect,
/// remove. `port` is one the sandbox listens on once running (its gateway for real images).
pub async fn lifecycle(runtime: &dyn Runtime, spec: &SandboxSpec, port: u16) -> Result<(), Failed> {
    let name = spec.name.as_str();
    let missing = runtime.inspect(name).await;
    check(matches!(missing, Err(RuntimeError::NotFound(_))), || format!("inspect before create: {missing:?}"))?;
    let started = runtime.start(name).await;
    check(matches!(started, Err(RuntimeError::NotFound(_))), || format!("start before create: {started:?}"))?;

    runtime.create_sandbox(spec).await.map_err(|e| Failed(format!("create: {e}")))?;
    runtime.create_sandbox(spec).await.map_err(|e| Failed(format!("create again (kept): {e}")))?;
    let info = runtime.inspect(name).await.map_err(|e| Failed(format!("inspect after create: {e}")))?;
    check(info.managed && !info.running && !info.paused, || format!("created, not running: {info:?}"))?;
    let deployment = spec.labels.get(LABEL_DEPLOYMENT).cloned().unwrap_or_default();
    let listed = runtime.list_managed(&deployment).await.map_err(|e| Failed(format!("list: {e}")))?;
    let labelled = |c: &super::ManagedContainer| spec.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v));
    check(listed.iter().any(|c| c.name == name && labelled(c)), || format!("listed with its labels: {listed:?}"))?;
    let other = runtime.list_managed("another-deployment").await.map_err(|e| Failed(format!("list another: {e}")))?;
    check(other.iter().all(|c| c.name != name), || "listed under another deployment".into())?;
    let refused = runtime.connect(name, port).await;
    check(refused.is_err(), || "connected to a sandbox that is not running".into())?;

    runtime.start(name).await.map_err(|e| Failed(format!("start: {e}")))?;
    let info = runtime.inspect(name).await.map_err(|e| Failed(format!("inspect running: {e}")))?;
    check(info.running && !info.paused, || format!("running: {info:?}"))?;
    connects(runtime, name, port).await?;

    runtime.pause(name).await.map_err(|e| Failed(format!("pause: {e}")))?;
    let info = runtime.inspect(name).await.map_err(|e| Failed(format!("inspect paused: {e}")))?;
    check(info.running && info.paused, || format!("paused counts as running: {info:?}"))?;
    runtime.unpause(name).await.map_err(|e| Failed(format!("unpause: {e}")))?;
    runtime.unpause(name).await.map_err(|e| Failed(format!("unpause when not paused: {e}")))?;
    let info = runtime.inspect(name).await.map_err(|e| Failed(format!("inspect thawed: {e}")))?;
    check(info.running && !info.paused, || format!("thawed: {info:?}"))?;

    runtime.pause(name).await.map_err(|e| Failed(format!("pause again: {e}")))?;
    runtime.stop(name, 1).await.map_err(|e| Failed(format!("stop while paused: {e}")))?;
    let info = runtime.inspect(name).await.map_err(|e| Failed(format!("inspect stopped: {e}")))?;
    check(!info.running && !info.paused, || format!("stopped: {info:?}"))?;
    let refused = runtime.connect(name, port).await;
    check(refused.is_err(), || "connected to a stopped sandbox".into())?;

    runtime.remove_sandbox(name, &spec.disk).await.map_err(|e| Failed(format!("remove: {e}")))?;
    runtime.remove_sandbox(name, &spec.disk).await.map_err(|e| Failed(format!("remove again: {e}")))?;
    runtime.remove_container(name).await.map_err(|e| Failed(format!("remove a missing container: {e}")))?;
    let gone = runtime.inspect(name).await;
    check(matches!(gone, Err(RuntimeError::NotFound(_))), || format!("inspect after remove: {gone:?}"))?;
    let listed = runtime.list_managed(&deployment).await.map_err(|e| Failed(format!("list after remove: {e}")))?;
    check(listed.iter().all(|c| c.name != name), || "listed after remove".into())
}

/// A running sandbox can be connected to on `port` (a real gateway may take a while to listen).
async fn connects(runtime: &dyn Runtime, name: &str, port: u16) -> Result<(), Failed> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match runtime.connect(name, port).await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() > deadline => return Err(Failed(format!("connect to a running sandbox: {error}"))),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(250)).await,
        }
    }
}

/// Commands in a running sandbox made from `spec` (created and removed here): output apart
/// by stream, exit codes, a bounded output, a timeout; files in and out as tar.
pub async fn processes(runtime: &dyn Runtime, spec: &SandboxSpec) -> Result<(), Failed> {
    use super::ExecRequest;
    let name = spec.name.as_str();
    runtime.create_sandbox(spec).await.map_err(|e| Failed(format!("create: {e}")))?;
    runtime.start(name).await.map_err(|e| Failed(format!("start: {e}")))?;
    let run = |cmd: &str, max_output: usize, timeout: Option<std::time::Duration>| ExecRequest {
        cmd: vec!["sh".into(), "-c".into(), cmd.into()],
        max_output,
        timeout,
        ..Default::default()
    };
    let out = runtime.exec(name, run("echo out; echo err >&2; exit 3", 1024, None)).await.map_err(|e| Failed(format!("exec: {e}")))?;
    check(out.stdout == b"out\n" && out.stderr == b"err\n" && out.exit_code == Some(3), || format!("exec output: {out:?}"))?;
    let big = runtime.exec(name, run("head -c 100000 /dev/zero", 1000, None)).await.map_err(|e| Failed(format!("exec big: {e}")))?;
    check(big.truncated && big.stdout.len() <= 1000, || format!("bounded output: {} bytes, truncated {}", big.stdout.len(), big.truncated))?;
    let slow = runtime.exec(name, run("sleep 30", 1024, Some(std::time::Duration::from_secs(1)))).await;
    check(slow.as_ref().is_ok_and(|o| o.timed_out), || format!("timed out: {slow:?}"))?;
    let missing = runtime.exec("no-such-sandbox-conformance", run("true", 16, None)).await;
    check(matches!(missing, Err(RuntimeError::NotFound(_))), || format!("exec in a missing sandbox: {missing:?}"))?;
    let removed = runtime.remove_sandbox(name, &spec.disk).await;
    removed.map_err(|e| Failed(format!("remove: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runtime::memory::MemoryRuntime;
    use crate::runtime::sandbox::GATEWAY_PORT;

    fn spec(name: &str) -> SandboxSpec {
        super::spec(name, "none", std::path::Path::new("/srv/instances"), "conformance")
    }

    #[tokio::test]
    async fn the_in_memory_runtime_passes_the_lifecycle_checks() {
        lifecycle(&MemoryRuntime::default(), &spec("sandy-conformance"), GATEWAY_PORT).await.unwrap();
    }

    #[tokio::test]
    async fn the_node_link_passes_them_in_front_of_it() {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let memory = Arc::new(MemoryRuntime::default());
        let remote = crate::runtime::node::serve_loopback(memory, "/srv/node-root".into(), shutdown.clone()).await.unwrap();
        lifecycle(&remote, &spec("sandy-conformance"), GATEWAY_PORT).await.unwrap();
        shutdown.cancel();
    }
}
