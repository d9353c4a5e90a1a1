-- Outbound webhooks (Standard Webhooks): endpoints per user, and a durable queue of deliveries
-- that any server process claims. Events are queued by the database itself, in the transaction
-- that made them happen (triggers below, and `webhook_emit` for events decided in the server),
-- so no status change, message or snapshot is missed whichever process or path caused it.

CREATE TABLE webhook_endpoints (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url text NOT NULL,
    events text[] NOT NULL,
    description text,
    -- `whsec_…`, sealed with the server's key (signing needs it in clear).
    secret_sealed bytea NOT NULL,
    -- After a rotation the previous secret also signs until `previous_until` (overlap).
    previous_secret_sealed bytea,
    previous_until timestamptz,
    disabled boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_user_idx ON webhook_endpoints (user_id);

CREATE TABLE webhook_deliveries (
    id uuid PRIMARY KEY,
    endpoint_id uuid NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    -- `webhook-id`: one per event, the same on every retry.
    message_id text NOT NULL,
    event_type text NOT NULL,
    payload jsonb NOT NULL,
    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts integer NOT NULL DEFAULT 0,
    -- When it is due; while an attempt runs, pushed past it (the claim).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status_code integer,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint_idx ON webhook_deliveries (endpoint_id, created_at DESC);

-- Every attempt of a delivery: when, the answer's status code or the error, how long.
CREATE TABLE webhook_attempts (
    delivery_id uuid NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    at timestamptz NOT NULL DEFAULT now(),
    status_code integer,
    error text,
    duration_ms integer NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Queues the event `kind` for each of `owner`'s endpoints subscribed to it, in the caller's
-- transaction, and wakes the deliverers.
CREATE FUNCTION webhook_emit(owner uuid, kind text, data jsonb) RETURNS void AS $$
DECLARE
    message text := 'msg_' || replace(gen_random_uuid()::text, '-', '');
BEGIN
    IF owner IS NULL THEN
        RETURN;
    END IF;
    INSERT INTO webhook_deliveries (id, endpoint_id, message_id, event_type, payload)
    SELECT gen_random_uuid(), e.id, message, kind, jsonb_build_object(
               'type', kind,
               'timestamp', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
               'data', data)
      FROM webhook_endpoints e
     WHERE e.user_id = owner AND NOT e.disabled AND kind = ANY (e.events);
    IF FOUND THEN
        PERFORM pg_notify('ocaas_webhooks', '');
    END IF;
END $$ LANGUAGE plpgsql;

-- instance.status_changed on every change of a user's instance's status (a warm sandbox's
-- states are the server's own); instance.idle when the idle policy paused or stopped it.
CREATE FUNCTION instances_webhooks() RETURNS trigger AS $$
DECLARE
    previous text;
BEGIN
    IF NEW.user_id IS NULL OR NEW.status = 'pooled' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        IF OLD.status = NEW.status AND OLD.user_id IS NOT DISTINCT FROM NEW.user_id THEN
            RETURN NULL;
        END IF;
        IF OLD.user_id IS NOT NULL THEN
            previous := OLD.status;
        END IF;
    END IF;
    PERFORM webhook_emit(NEW.user_id, 'instance.status_changed', jsonb_build_object(
        'instance_id', NEW.id, 'name', NEW.name, 'status', NEW.status, 'previous_status', previous));
    IF NEW.stop_reason = 'idle' AND NEW.status IN ('paused', 'stopped') THEN
        PERFORM webhook_emit(NEW.user_id, 'instance.idle', jsonb_build_object(
            'instance_id', NEW.id, 'name', NEW.name, 'status', NEW.status));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER instances_webhooks AFTER INSERT OR UPDATE OF status, user_id ON instances
    FOR EACH ROW EXECUTE FUNCTION instances_webhooks();

-- chat.message.completed when an assistant message ends (or arrives ended, e.g. a scheduled
-- run's); chat.tool.completed for each of its tool steps that ends. The message's text is
-- carried up to 16 KiB (`content_truncated`).
CREATE FUNCTION chat_webhooks() RETURNS trigger AS $$
DECLARE
    owner uuid;
    instance uuid;
    ended boolean;
    step jsonb;
    before jsonb := '[]';
BEGIN
    IF NEW.role <> 'assistant' THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        before := OLD.tools;
    END IF;
    ended := NEW.status <> 'streaming' AND (TG_OP = 'INSERT' OR OLD.status = 'streaming');
    IF NOT ended AND NEW.tools = before THEN
        RETURN NULL;
    END IF;
    SELECT i.user_id, i.id INTO owner, instance
      FROM chat_sessions s JOIN instances i ON i.id = s.instance_id
     WHERE s.id = NEW.session_id;
    IF owner IS NULL OR NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE user_id = owner) THEN
        RETURN NULL;
    END IF;
    FOR step IN SELECT value FROM jsonb_array_elements(NEW.tools) LOOP
        IF step->>'status' <> 'running' AND NOT EXISTS (
            SELECT 1 FROM jsonb_array_elements(before) o
             WHERE o->>'tool_call_id' = step->>'tool_call_id' AND o->>'status' = step->>'status') THEN
            PERFORM webhook_emit(owner, 'chat.tool.completed', jsonb_build_object(
                'instance_id', instance, 'session_id', NEW.session_id, 'message_id', NEW.id,
                'tool_call_id', step->>'tool_call_id', 'name', step->>'name', 'status', step->>'status'));
        END IF;
    END LOOP;
    IF ended THEN
        PERFORM webhook_emit(owner, 'chat.message.completed', jsonb_build_object(
            'instance_id', instance, 'session_id', NEW.session_id, 'message_id', NEW.id,
            'status', NEW.status, 'content', left(NEW.content, 16384),
            'content_truncated', length(NEW.content) > 16384, 'error', NEW.error));
    END IF;
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER chat_webhooks AFTER INSERT OR UPDATE ON chat_messages
    FOR EACH ROW EXECUTE FUNCTION chat_webhooks();

-- snapshot.ready / snapshot.failed when a snapshot ends.
CREATE FUNCTION snapshots_webhooks() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'creating' OR (TG_OP = 'UPDATE' AND OLD.status = NEW.status) THEN
        RETURN NULL;
    END IF;
    PERFORM webhook_emit(NEW.user_id, 'snapshot.' || NEW.status, jsonb_build_object(
        'snapshot_id', NEW.id, 'instance_id', NEW.instance_id, 'name', NEW.name, 'kind', NEW.kind,
        'size_bytes', NEW.size_bytes, 'error', NEW.error));
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER snapshots_webhooks AFTER INSERT OR UPDATE OF status ON snapshots
    FOR EACH ROW EXECUTE FUNCTION snapshots_webhooks();

ALTER TABLE audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_check CHECK (action IN (
    'login_succeeded', 'login_failed', 'logout', 'user_registered',
    'key_created', 'key_revoked',
    'instance_created', 'instance_deleted', 'instance_rebooted', 'instance_shut_down', 'instance_started',
    'admin_user_created', 'admin_key_created', 'admin_key_revoked', 'admin_invite_created', 'admin_subscription_granted',
    'admin_instances_upgraded', 'admin_storage_migrated',
    'config_patched', 'config_rolled_back', 'channel_set', 'channel_removed', 'approval_resolved',
    'webhook_created', 'webhook_deleted', 'webhook_secret_rotated'));
