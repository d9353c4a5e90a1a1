//! Flags and settings of snapshots and scheduled backups.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::idle::parse_duration;
use super::instances::parse_size;

/// Flags about snapshots.
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// How often each instance is backed up (a `scheduled` snapshot); plans may say otherwise.
    /// `0`: no scheduled backups. Like `24h`, `6h`.
    #[arg(long, env = "OCAAS_BACKUP_INTERVAL", default_value = "24h", value_parser = parse_duration)]
    pub backup_interval: Duration,
    /// Scheduled snapshots kept per instance (older ones are deleted).
    #[arg(long, env = "OCAAS_BACKUP_KEEP", default_value_t = 7, value_parser = super::instances::at_least_one::<u32>)]
    pub backup_keep: u32,
    /// Snapshots taken at once by the schedule.
    #[arg(long, env = "OCAAS_BACKUP_CONCURRENCY", default_value_t = 1, value_parser = super::instances::at_least_one::<usize>)]
    pub backup_concurrency: usize,
    /// Snapshot storage per user (compressed bytes, or with a k/m/g suffix) when the plan does
    /// not say; past it new snapshots are refused.
    #[arg(long, env = "OCAAS_SNAPSHOT_QUOTA", default_value = "20g", value_parser = parse_size)]
    pub snapshot_quota: i64,
}

#[derive(Debug, Clone)]
pub struct SnapshotSettings {
    /// Zero: no scheduled backups.
    pub backup_interval: Duration,
    pub backup_keep: u32,
    pub backup_concurrency: usize,
    pub quota_bytes: u64,
    /// Where the local snapshot store keeps its files (`OCAAS_DATA_DIR/snapshots` for `ocaas serve`).
    pub root: PathBuf,
}

impl From<&SnapshotArgs> for SnapshotSettings {
    fn from(args: &SnapshotArgs) -> Self {
        SnapshotSettings {
            backup_interval: args.backup_interval,
            backup_keep: args.backup_keep,
            backup_concurrency: args.backup_concurrency,
            quota_bytes: args.snapshot_quota as u64,
            root: std::env::temp_dir().join("ocaas-snapshots"),
        }
    }
}
