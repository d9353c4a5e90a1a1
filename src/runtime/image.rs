//! Which sandbox image to run: the configured one, or the offline image, built by
//! `docker/offline/build.sh` when its tag does not exist yet (the script is a no-op otherwise).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The offline image's build context, compiled into the binary so that an installed `ocaas`
/// (`cargo install`, a package, the server image) can build it without the source tree.
const BUILD_CONTEXT: &[(&str, &[u8], u32)] = &[
    ("offline/build.sh", include_bytes!("../../docker/offline/build.sh"), 0o755),
    ("offline/Dockerfile", include_bytes!("../../docker/offline/Dockerfile"), 0o644),
    ("offline/gateway.py", include_bytes!("../../docker/offline/gateway.py"), 0o644),
    ("offline/gateway_ws.py", include_bytes!("../../docker/offline/gateway_ws.py"), 0o644),
    ("offline/gateway_runs.py", include_bytes!("../../docker/offline/gateway_runs.py"), 0o644),
    ("offline/gateway_state.py", include_bytes!("../../docker/offline/gateway_state.py"), 0o644),
    ("offline/gateway_admin.py", include_bytes!("../../docker/offline/gateway_admin.py"), 0o644),
    ("offline/gateway_cron.py", include_bytes!("../../docker/offline/gateway_cron.py"), 0o644),
    ("offline/openclaw-config.schema.json", include_bytes!("../../docker/offline/openclaw-config.schema.json"), 0o644),
    ("offline/openclaw", include_bytes!("../../docker/offline/openclaw"), 0o755),
    ("sandbox/entrypoint.sh", include_bytes!("../../docker/sandbox/entrypoint.sh"), 0o755),
    ("sandbox/write_config.py", include_bytes!("../../docker/sandbox/write_config.py"), 0o644),
    ("sandbox/Dockerfile", include_bytes!("../../docker/sandbox/Dockerfile"), 0o644),
];

/// Writes the embedded build context under `dir` (replacing what is there) and returns the
/// path of its `build.sh`.
pub fn write_embedded_build_context(dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    for (name, content, mode) in BUILD_CONTEXT {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().expect("context files are in folders"))?;
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(dir.join("offline/build.sh"))
}

/// Whether the image `build_script` would build exists already (asked with `--print-tag`).
pub fn offline_image_exists(build_script: &Path) -> bool {
    let Ok(output) = Command::new(build_script).arg("--print-tag").stderr(Stdio::null()).output() else { return false };
    let tag = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    !tag.is_empty()
        && Command::new("docker").args(["image", "inspect", &tag]).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

pub fn resolve(configured: Option<&str>, build_script: &Path) -> anyhow::Result<String> {
    if let Some(image) = configured.filter(|i| !i.trim().is_empty()) {
        return Ok(image.trim().to_owned());
    }
    tracing::info!(script = %build_script.display(), "making sure the offline sandbox image exists (the first build takes a few minutes)");
    let output = Command::new(build_script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running the image build script {}", build_script.display()))?;
    if !output.status.success() {
        bail!("the image build script {} failed ({}); see its output above", build_script.display(), output.status);
    }
    let tag = String::from_utf8(output.stdout).context("the image build script printed non-UTF-8")?;
    let tag = tag.lines().last().unwrap_or("").trim().to_owned();
    if tag.is_empty() {
        bail!("the image build script {} printed no image tag", build_script.display());
    }
    Ok(tag)
}
