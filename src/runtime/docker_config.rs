//! The engine-side confinement of a sandbox container: who it runs as, what it may write and
//! how much, what it may use. Everything a tenant could use to fill the host is capped here.

use std::collections::HashMap;

use bollard::models::{HostConfig, HostConfigLogConfig, Mount, MountBindOptions, MountType};

use super::SandboxSpec;
use super::sandbox::{HOME_DIR, NETWORK, STATE_DIR, WORKSPACE_DIR};

/// `/tmp` and the home directory are memory (tmpfs, counted against the container's memory
/// limit), so the read-only root filesystem leaves the tenant no unbounded place to write.
const TMP_BYTES: u64 = 512 << 20;
const HOME_BYTES: u64 = 256 << 20;

fn bind(source: std::path::PathBuf, target: &str) -> Mount {
    Mount {
        target: Some(target.into()),
        source: Some(source.to_string_lossy().into_owned()),
        typ: Some(MountType::BIND),
        // A missing source (storage not mounted) is an error, never an empty host directory.
        bind_options: Some(MountBindOptions { create_mountpoint: Some(false), ..Default::default() }),
        ..Default::default()
    }
}

pub(super) fn host_config(spec: &SandboxSpec) -> HostConfig {
    let uid = super::sandbox::USER.split(':').next().unwrap_or("1000");
    let tmpfs = HashMap::from([
        ("/tmp".to_owned(), format!("rw,nosuid,nodev,size={TMP_BYTES},mode=1777")),
        (HOME_DIR.to_owned(), format!("rw,nosuid,nodev,size={HOME_BYTES},uid={uid},gid={uid},mode=0700")),
    ]);
    // json-file rotates at half the cap, keeping two files.
    let log_config = HostConfigLogConfig {
        typ: Some("json-file".into()),
        config: Some(HashMap::from([
            ("max-size".to_owned(), (spec.limits.log_bytes / 2).max(4096).to_string()),
            ("max-file".to_owned(), "2".to_owned()),
        ])),
    };
    HostConfig {
        mounts: Some(vec![bind(spec.disk.workspace(), WORKSPACE_DIR), bind(spec.disk.state(), STATE_DIR)]),
        readonly_rootfs: Some(true),
        tmpfs: Some(tmpfs),
        log_config: Some(log_config),
        cap_drop: Some(vec!["ALL".into()]),
        security_opt: Some(vec!["no-new-privileges:true".into()]),
        memory: Some(spec.limits.memory_bytes),
        memory_swap: Some(spec.limits.memory_bytes),
        nano_cpus: Some(spec.limits.nano_cpus),
        pids_limit: Some(spec.limits.pids),
        network_mode: Some(NETWORK.into()),
        shm_size: Some(256 * 1024 * 1024),
        ..Default::default()
    }
}
