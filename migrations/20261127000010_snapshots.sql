-- Snapshots (workspace + agent state of an instance, compressed, in the snapshot store),
-- restore, clone, scheduled backups and upgrades that roll back by themselves.
CREATE TABLE snapshots (
    id uuid PRIMARY KEY,
    instance_id uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name text,
    -- manual: its user's; scheduled: the backup schedule's; safety: taken before a restore;
    -- upgrade: taken before an upgrade (its rollback point).
    kind text NOT NULL CHECK (kind IN ('manual', 'scheduled', 'safety', 'upgrade')),
    status text NOT NULL CHECK (status IN ('creating', 'ready', 'failed')),
    size_bytes bigint NOT NULL DEFAULT 0,
    sha256 text,
    -- The image the instance ran when the snapshot was taken.
    image text NOT NULL,
    error text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX snapshots_instance_idx ON snapshots (instance_id, created_at);
CREATE INDEX snapshots_user_idx ON snapshots (user_id);

ALTER TABLE instances DROP CONSTRAINT instances_status_check;
ALTER TABLE instances ADD CONSTRAINT instances_status_check CHECK (
    status IN ('provisioning', 'ready', 'rebooting', 'stopping', 'stopped', 'error', 'deleting', 'paused', 'pooled',
               'restoring', 'upgrading', 'rolling_back'));
-- What the gateway reports (`openclaw --version`), recorded each time the instance turns ready.
ALTER TABLE instances ADD COLUMN openclaw_version text;
-- The snapshot the running operation puts into the storage: a clone's source (provisioning),
-- a restore's (restoring), an upgrade's rollback point (upgrading, rolling_back).
ALTER TABLE instances ADD COLUMN pending_snapshot_id uuid REFERENCES snapshots (id) ON DELETE SET NULL;
-- The image an upgrade started from (where a rollback goes back to).
ALTER TABLE instances ADD COLUMN upgrade_from_image text;

-- A plan's backups and snapshot storage; NULL: the server's defaults. 0 interval: no backups.
ALTER TABLE subscriptions ADD COLUMN backup_interval_secs integer CHECK (backup_interval_secs >= 0);
ALTER TABLE subscriptions ADD COLUMN backup_keep integer CHECK (backup_keep >= 1);
ALTER TABLE subscriptions ADD COLUMN snapshot_quota_bytes bigint CHECK (snapshot_quota_bytes >= 0);

ALTER TABLE audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_check CHECK (action IN (
    'login_succeeded', 'login_failed', 'logout', 'user_registered',
    'key_created', 'key_revoked',
    'instance_created', 'instance_deleted', 'instance_rebooted', 'instance_shut_down', 'instance_started',
    'admin_user_created', 'admin_key_created', 'admin_key_revoked', 'admin_invite_created', 'admin_subscription_granted',
    'admin_instances_upgraded'));
