//! Which sandbox image to run: the configured one, or the offline image, built by
//! `docker/offline/build.sh` when its tag does not exist yet (the script is a no-op otherwise).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

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
