//! First-run set-up for `ocaas serve`: what it needs from Debian's packages — PostgreSQL's
//! binaries (for the private cluster), debootstrap (to build the offline sandbox image),
//! noVNC (the desktop page) and node-xterm (the dashboard's terminal). Missing ones are
//! installed with apt when ocaas runs as root on a machine that has apt, saying so first;
//! otherwise `serve` stops with one line naming the exact command to run.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// A Debian package `serve` needs, and whether it is there.
pub struct Need {
    pub package: &'static str,
    pub purpose: &'static str,
    pub present: bool,
}

/// What `serve` will need, given where it looks for things.
pub struct Wanted<'a> {
    pub embedded_postgres: bool,
    /// The offline image's tag does not exist yet and will be built.
    pub image_build: bool,
    pub novnc_dir: &'a Path,
    pub xterm_dir: &'a Path,
}

pub fn needs(wanted: &Wanted<'_>) -> Vec<Need> {
    let mut needs = Vec::new();
    if wanted.embedded_postgres {
        let present = crate::db::embedded::find_bin_dir().is_ok();
        needs.push(Need { package: "postgresql", purpose: "ocaas's private database (no DATABASE_URL)", present });
    }
    if wanted.image_build {
        needs.push(Need { package: "debootstrap", purpose: "building the offline sandbox image", present: on_path("debootstrap") });
    }
    let novnc = wanted.novnc_dir.join("core/rfb.js").is_file();
    needs.push(Need { package: "novnc", purpose: "the desktop page", present: novnc });
    let xterm = wanted.xterm_dir.join("lib/public/Terminal.js").is_file();
    needs.push(Need { package: "node-xterm", purpose: "the dashboard's terminal", present: xterm });
    needs
}

/// Installs what is missing (as root, with apt), or explains how.
pub fn ensure(needs: &[Need], auto_install: bool) -> anyhow::Result<()> {
    let missing: Vec<&Need> = needs.iter().filter(|n| !n.present).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    let command = format!("apt-get install -y --no-install-recommends {}", packages.join(" "));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !auto_install || !root || !on_path("apt-get") {
        bail!("missing Debian packages for {}: run `sudo {command}`", describe(&missing));
    }
    eprintln!("ocaas: installing {} (for {}) with apt", packages.join(", "), describe(&missing));
    run("apt-get", &["update", "-qq"])?;
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(&packages);
    run("apt-get", &args).with_context(|| format!("installing with `{command}`"))
}

fn describe(missing: &[&Need]) -> String {
    missing.iter().map(|n| format!("{} ({})", n.purpose, n.package)).collect::<Vec<_>>().join(", ")
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new(program)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("`{program} {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_missing_means_nothing_to_do_and_a_refusal_names_the_command() {
        let present = [Need { package: "novnc", purpose: "the desktop page", present: true }];
        assert!(ensure(&present, false).is_ok());
        let missing = [Need { package: "node-xterm", purpose: "the dashboard's terminal", present: false }];
        let error = ensure(&missing, false).unwrap_err().to_string();
        assert!(error.contains("apt-get install -y --no-install-recommends node-xterm"), "{error}");
    }
}
