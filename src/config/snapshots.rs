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
    /// Keep snapshot archives in an S3-compatible bucket (AWS S3, MinIO, Ceph) instead of
    /// `OCAAS_DATA_DIR/snapshots`: `https://s3.example.com/bucket[/prefix]`, addressed path
    /// style. What replicas and nodes on several hosts share. Unset: the local directory.
    #[arg(long, env = "OCAAS_SNAPSHOT_S3_URL")]
    pub snapshot_s3_url: Option<String>,
    #[arg(long, env = "OCAAS_SNAPSHOT_S3_REGION", default_value = "us-east-1")]
    pub snapshot_s3_region: String,
    #[arg(long, env = "OCAAS_SNAPSHOT_S3_ACCESS_KEY_ID", default_value = "")]
    pub snapshot_s3_access_key_id: String,
    #[arg(long, env = "OCAAS_SNAPSHOT_S3_SECRET_ACCESS_KEY", default_value = "", hide_env_values = true, value_parser = super::instances::secret)]
    pub snapshot_s3_secret_access_key: secrecy::SecretString,
}

/// Where in an S3-compatible store snapshot archives go: the bucket, the credentials that
/// sign requests to it, and a prefix for the keys.
#[derive(Debug, Clone)]
pub struct S3Location {
    pub bucket: std::sync::Arc<rusty_s3::Bucket>,
    pub credentials: std::sync::Arc<rusty_s3::Credentials>,
    /// Empty, or ending in `/`.
    pub prefix: String,
}

impl S3Location {
    /// From `http(s)://host[:port]/bucket[/prefix]` and the credentials.
    pub fn parse(url: &str, region: &str, access_key_id: &str, secret_access_key: &str) -> Result<Self, String> {
        // The URL is not quoted back: it might hold credentials.
        let bad = |why: &str| format!("OCAAS_SNAPSHOT_S3_URL: {why} (like https://s3.example.com/bucket or http://127.0.0.1:9000/bucket/prefix)");
        let parsed = url::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.query().is_some() || !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("no query, user name or password (the keys have variables of their own)"));
        }
        let mut parts = parsed.path_segments().into_iter().flatten().filter(|p| !p.is_empty());
        let bucket = parts.next().ok_or_else(|| bad("no bucket"))?.to_owned();
        let prefix: String = parts.map(|p| format!("{p}/")).collect();
        let mut endpoint = parsed.clone();
        endpoint.set_path("/");
        let bucket = rusty_s3::Bucket::new(endpoint, rusty_s3::UrlStyle::Path, bucket, region.to_owned()).map_err(|e| bad(&e.to_string()))?;
        if access_key_id.is_empty() || secret_access_key.is_empty() {
            return Err("OCAAS_SNAPSHOT_S3_URL needs OCAAS_SNAPSHOT_S3_ACCESS_KEY_ID and OCAAS_SNAPSHOT_S3_SECRET_ACCESS_KEY".into());
        }
        let credentials = rusty_s3::Credentials::new(access_key_id.to_owned(), secret_access_key.to_owned());
        Ok(S3Location { bucket: std::sync::Arc::new(bucket), credentials: std::sync::Arc::new(credentials), prefix })
    }
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
    /// The bucket instead, when configured.
    pub s3: Option<S3Location>,
}

impl SnapshotSettings {
    pub fn from_args(args: &SnapshotArgs) -> Result<Self, String> {
        let s3 = args
            .snapshot_s3_url
            .as_deref()
            .filter(|u| !u.is_empty())
            .map(|url| {
                use secrecy::ExposeSecret;
                S3Location::parse(url, &args.snapshot_s3_region, &args.snapshot_s3_access_key_id, args.snapshot_s3_secret_access_key.expose_secret())
            })
            .transpose()?;
        Ok(SnapshotSettings {
            backup_interval: args.backup_interval,
            backup_keep: args.backup_keep,
            backup_concurrency: args.backup_concurrency,
            quota_bytes: args.snapshot_quota as u64,
            root: std::env::temp_dir().join("ocaas-snapshots"),
            s3,
        })
    }
}
