-- What each instance was made with. Later operations (start, upgrade, restore, snapshots,
-- files, the reconciler) read these, never the current settings: changing a setting affects
-- new instances only. NULL only for rows made before this migration, until the next server
-- start records them as they are on disk (`instances::facts::backfill`).
ALTER TABLE instances
    ADD COLUMN storage_kind text CHECK (storage_kind IN ('image', 'directory')),
    ADD COLUMN storage_dir text,
    ADD COLUMN disk_quota_bytes bigint CHECK (disk_quota_bytes >= 0),
    ADD COLUMN memory_bytes bigint CHECK (memory_bytes >= 0),
    ADD COLUMN nano_cpus bigint CHECK (nano_cpus >= 0),
    ADD COLUMN pids bigint CHECK (pids >= 0),
    ADD CONSTRAINT instances_facts_whole CHECK (
        (storage_kind IS NULL) = (storage_dir IS NULL)
        AND (storage_kind IS NULL) = (disk_quota_bytes IS NULL)
        AND (storage_kind IS NULL) = (memory_bytes IS NULL)
        AND (storage_kind IS NULL) = (nano_cpus IS NULL)
        AND (storage_kind IS NULL) = (pids IS NULL)
        AND (storage_kind IS DISTINCT FROM 'directory' OR disk_quota_bytes = 0)
        AND (storage_kind IS DISTINCT FROM 'image' OR disk_quota_bytes > 0));

-- Who drives an instance (creates, starts, stops, upgrades, restores, freezes it for a
-- snapshot): one holder at a time across every server process and admin command, renewed
-- while it works, taken over only once it expired (its holder died).
CREATE TABLE instance_leases (
    instance_id uuid PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    holder uuid NOT NULL,
    expires_at timestamptz NOT NULL
);

-- `ocaas admin instances migrate-storage` is audited as what it is.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_check CHECK (action IN (
    'login_succeeded', 'login_failed', 'logout', 'user_registered',
    'key_created', 'key_revoked',
    'instance_created', 'instance_deleted', 'instance_rebooted', 'instance_shut_down', 'instance_started',
    'admin_user_created', 'admin_key_created', 'admin_key_revoked', 'admin_invite_created', 'admin_subscription_granted',
    'admin_instances_upgraded', 'admin_storage_migrated'));
