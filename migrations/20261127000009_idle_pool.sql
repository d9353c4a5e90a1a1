-- Idle policy, pause/resume and the warm pool.
-- `paused`: the engine froze the sandbox (memory kept). `pooled`: a warm sandbox owned by
-- nobody (user_id NULL) waiting for the next create, which makes it a user's.
ALTER TABLE instances DROP CONSTRAINT instances_status_check;
ALTER TABLE instances ADD CONSTRAINT instances_status_check CHECK (
    status IN ('provisioning', 'ready', 'rebooting', 'stopping', 'stopped', 'error', 'deleting', 'paused', 'pooled'));
ALTER TABLE instances ALTER COLUMN user_id DROP NOT NULL;
-- Only a pool sandbox (warming, waiting, failed or being removed) has no owner.
ALTER TABLE instances ADD CONSTRAINT instances_owner_check CHECK (
    user_id IS NOT NULL OR status IN ('pooled', 'provisioning', 'error', 'deleting'));
-- Last time a user or the agent used the instance (written at most once a minute per instance).
ALTER TABLE instances ADD COLUMN last_active_at timestamptz NOT NULL DEFAULT now();
-- Why a paused or stopped instance is so: NULL (its user), or 'idle' (the idle policy).
ALTER TABLE instances ADD COLUMN stop_reason text CHECK (stop_reason IN ('idle'));
-- Pinned awake by its user: the idle policy leaves it alone.
ALTER TABLE instances ADD COLUMN keep_awake boolean NOT NULL DEFAULT false;
CREATE INDEX instances_pool_idx ON instances (created_at) WHERE status = 'pooled';

-- A plan's idle policy; NULL: the server's defaults (OCAAS_IDLE_PAUSE_AFTER, …). 0: never.
ALTER TABLE subscriptions ADD COLUMN pause_after_secs integer CHECK (pause_after_secs >= 0);
ALTER TABLE subscriptions ADD COLUMN stop_after_secs integer CHECK (stop_after_secs >= 0);
ALTER TABLE subscriptions ADD COLUMN keep_awake_max integer CHECK (keep_awake_max >= 0);
