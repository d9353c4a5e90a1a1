//! What an instance is made with, recorded in its row at create: where and how its storage
//! lives (a quota'd image or a plain directory, its size) and its container's limits. Every
//! later operation reads these, so changing `OCAAS_INSTANCE_DISK` or the limits affects new
//! instances only and never hides an existing instance's data behind a fresh, empty image.
//! Rows older than the record get it at the next server start, as found on disk (`backfill`).

use std::path::{Path, PathBuf};

use sqlx::PgPool;

use super::models::StorageKind;
use super::repo::{self, InstanceRow};
use crate::config::InstanceSettings;
use crate::runtime::Limits;
use crate::runtime::disk::DiskSpec;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub storage_kind: StorageKind,
    pub storage_dir: String,
    /// 0 for a plain directory.
    pub disk_quota_bytes: i64,
    pub memory_bytes: i64,
    pub nano_cpus: i64,
    pub pids: i64,
}

impl Facts {
    /// What a new instance is made with: the current settings.
    pub fn for_new(settings: &InstanceSettings, sandbox_id: &str) -> Facts {
        let quota = i64::try_from(settings.disk_quota_bytes).unwrap_or(i64::MAX);
        Facts {
            storage_kind: if quota > 0 { StorageKind::Image } else { StorageKind::Directory },
            storage_dir: settings.disk_root.join(sandbox_id).to_string_lossy().into_owned(),
            disk_quota_bytes: quota,
            memory_bytes: settings.limits.memory_bytes,
            nano_cpus: settings.limits.nano_cpus,
            pids: settings.limits.pids,
        }
    }

    /// The instance's recorded facts; a row not yet recorded (made before the record, and the
    /// backfill has not reached it yet) is taken as it is found on disk (two metadata reads).
    pub fn of(instance: &InstanceRow, settings: &InstanceSettings) -> Facts {
        let recorded =
            (&instance.storage_kind, &instance.storage_dir, instance.disk_quota_bytes, instance.memory_bytes, instance.nano_cpus, instance.pids);
        match recorded {
            (Some(kind), Some(dir), Some(quota), Some(memory_bytes), Some(nano_cpus), Some(pids)) => {
                Facts { storage_kind: *kind, storage_dir: dir.clone(), disk_quota_bytes: quota, memory_bytes, nano_cpus, pids }
            }
            _ => found_on_disk(settings, &instance.sandbox_id),
        }
    }

    pub fn disk(&self) -> DiskSpec {
        let quota = match self.storage_kind {
            StorageKind::Image => u64::try_from(self.disk_quota_bytes).unwrap_or(0),
            StorageKind::Directory => 0,
        };
        DiskSpec { dir: PathBuf::from(&self.storage_dir), quota_bytes: quota }
    }

    /// The container's limits; the log cap stays the server's (it is not the tenant's).
    pub fn limits(&self, settings: &InstanceSettings) -> Limits {
        Limits { memory_bytes: self.memory_bytes, nano_cpus: self.nano_cpus, pids: self.pids, ..settings.limits }
    }
}

/// An instance made before facts were recorded, as its storage is on disk: an image file
/// next to its directory means a quota of that image's size; a directory alone means none.
/// Nothing at all (never started) means what the current settings would make.
fn found_on_disk(settings: &InstanceSettings, sandbox_id: &str) -> Facts {
    let mut facts = Facts::for_new(settings, sandbox_id);
    let dir = Path::new(&facts.storage_dir);
    let image = dir.with_extension("img");
    // Metadata of paths under the server's own root, named by the server: never tenant-chosen.
    if let Ok(meta) = std::fs::symlink_metadata(&image)
        && meta.is_file()
    {
        facts.storage_kind = StorageKind::Image;
        facts.disk_quota_bytes = i64::try_from(meta.len()).unwrap_or(i64::MAX).max(1);
    } else if std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()) {
        facts.storage_kind = StorageKind::Directory;
        facts.disk_quota_bytes = 0;
    }
    facts
}

/// Records, for every instance made before the record, its facts as found on disk. Run at
/// start, before anything drives an instance; returns how many were recorded.
pub async fn backfill(db: &PgPool, settings: &InstanceSettings) -> sqlx::Result<u64> {
    let mut recorded = 0;
    for (id, sandbox) in repo::unrecorded(db).await? {
        let settings = settings.clone();
        let Ok(facts) = tokio::task::spawn_blocking(move || found_on_disk(&settings, &sandbox)).await else { continue };
        if repo::record_facts(db, id, &facts).await? {
            tracing::info!(%id, kind = %facts.storage_kind, dir = %facts.storage_dir, "recorded the facts of an older instance");
            recorded += 1;
        }
    }
    Ok(recorded)
}
