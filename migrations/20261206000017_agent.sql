-- The always-on agent: its configuration kept safe, its channels' secrets, what the idle policy
-- needs to know about its schedules and channels, its approval requests, and a per-instance feed.

-- The last configuration the gateway was seen ready with (sealed: it holds secrets), and a
-- patch on probation: until `pending_until` the gateway must come back ready, or the last good
-- configuration is put back (claimed by one process with a guarded update).
CREATE TABLE gateway_configs (
    instance_id uuid PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    last_good_sealed bytea,
    last_good_at timestamptz,
    pending_since timestamptz,
    pending_until timestamptz,
    rolled_back_at timestamptz,
    rollback_reason text
);

-- A token-based channel's secret, sealed with the server's key: never returned, only "set".
CREATE TABLE channel_secrets (
    instance_id uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('telegram', 'discord', 'slack')),
    secret_sealed bytea NOT NULL,
    set_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (instance_id, kind)
);

-- What the idle policy knows of an instance's agent, as last read from its gateway: when its
-- next schedule runs, when one last ran, and its connected socket channels.
CREATE TABLE agent_wakeups (
    instance_id uuid PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    next_run_at timestamptz,
    last_run_at timestamptz,
    live_channels text[] NOT NULL DEFAULT '{}',
    checked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_wakeups_next_run_idx ON agent_wakeups (next_run_at) WHERE next_run_at IS NOT NULL;

-- The agent's approval requests, as its gateway broadcast them (every replica hears them; the
-- key makes them one row).
CREATE TABLE approvals (
    instance_id uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    id text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('exec', 'plugin')),
    status text NOT NULL CHECK (status IN ('pending', 'allowed', 'denied', 'expired')),
    command text NOT NULL,
    cwd text,
    session_key text,
    decision text,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    resolved_at timestamptz,
    PRIMARY KEY (instance_id, id)
);

-- The instance's agent feed (`GET …/agent/events`): approvals, schedule runs and notices, each
-- written once (`dedupe`), replayed after a `Last-Event-ID`.
CREATE TABLE agent_events (
    id bigserial PRIMARY KEY,
    instance_id uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    kind text NOT NULL CHECK (kind IN ('approval', 'schedule_run', 'system_notification')),
    dedupe text NOT NULL,
    data jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (instance_id, dedupe)
);

CREATE FUNCTION agent_event_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ocaas_agent', NEW.instance_id::text || ' ' || NEW.id::text);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER agent_event_notify AFTER INSERT ON agent_events
    FOR EACH ROW EXECUTE FUNCTION agent_event_notify();

ALTER TABLE audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_check CHECK (action IN (
    'login_succeeded', 'login_failed', 'logout', 'user_registered',
    'key_created', 'key_revoked',
    'instance_created', 'instance_deleted', 'instance_rebooted', 'instance_shut_down', 'instance_started',
    'admin_user_created', 'admin_key_created', 'admin_key_revoked', 'admin_invite_created', 'admin_subscription_granted',
    'admin_instances_upgraded', 'admin_storage_migrated',
    'config_patched', 'config_rolled_back', 'channel_set', 'channel_removed', 'approval_resolved'));
