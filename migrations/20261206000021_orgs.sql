-- Organisations: members with roles, invitations by email, instances that belong to one, and
-- the organisation's own plan (instances at once, monthly model tokens).

CREATE TABLE orgs (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    -- The organisation's plan, set by the operator (`ocaas admin org plan`).
    max_instances integer NOT NULL DEFAULT 1 CHECK (max_instances >= 0),
    monthly_tokens bigint CHECK (monthly_tokens >= 0),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE org_members (
    org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user_idx ON org_members (user_id);

CREATE TABLE org_invitations (
    id uuid PRIMARY KEY,
    org_id uuid NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email text NOT NULL,
    role text NOT NULL CHECK (role IN ('admin', 'member', 'viewer')),
    invited_by uuid REFERENCES users (id) ON DELETE SET NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    UNIQUE (org_id, email)
);
CREATE INDEX org_invitations_email_idx ON org_invitations (lower(email));

-- An instance of an organisation: `user_id` is who created it; what members may do with it is
-- their role's. An organisation with instances cannot be deleted.
ALTER TABLE instances ADD COLUMN org_id uuid REFERENCES orgs (id) ON DELETE RESTRICT;
CREATE INDEX instances_org_idx ON instances (org_id) WHERE org_id IS NOT NULL;

-- Model usage remembers the organisation its instance belonged to (the allowance it counts
-- against), set as it is recorded.
ALTER TABLE model_usage ADD COLUMN org_id uuid;
CREATE INDEX model_usage_org_time ON model_usage (org_id, created_at) WHERE org_id IS NOT NULL;
CREATE FUNCTION model_usage_org() RETURNS trigger AS $$
BEGIN
    NEW.org_id := (SELECT org_id FROM instances WHERE id = NEW.instance_id);
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER model_usage_org BEFORE INSERT ON model_usage FOR EACH ROW EXECUTE FUNCTION model_usage_org();

-- The monthly allowance a model call of `instance` counts against — its organisation's, or its
-- user's own (which their use of organisations' instances does not touch) — with what was used
-- and is reserved this month. One definition for the broker's check and its reservation.
CREATE FUNCTION token_allowance(owner uuid, instance uuid) RETURNS TABLE (allowance bigint, used bigint, reserved bigint) AS $$
DECLARE
    org uuid := (SELECT org_id FROM instances WHERE id = instance);
    since timestamptz := date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
BEGIN
    IF org IS NULL THEN
        RETURN QUERY SELECT
            (SELECT monthly_tokens FROM subscriptions WHERE user_id = owner),
            (SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM model_usage
              WHERE user_id = owner AND org_id IS NULL AND created_at >= since)::bigint,
            (SELECT coalesce(sum(r.tokens), 0) FROM token_reservations r JOIN instances i ON i.id = r.instance_id
              WHERE r.user_id = owner AND i.org_id IS NULL AND r.expires_at > now())::bigint;
    ELSE
        RETURN QUERY SELECT
            (SELECT monthly_tokens FROM orgs WHERE id = org),
            (SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM model_usage WHERE org_id = org AND created_at >= since)::bigint,
            (SELECT coalesce(sum(r.tokens), 0) FROM token_reservations r JOIN instances i ON i.id = r.instance_id
              WHERE i.org_id = org AND r.expires_at > now())::bigint;
    END IF;
END $$ LANGUAGE plpgsql STABLE;

-- Instance lists are cached per user: a change of an organisation's instance is news to every
-- member, and a change of membership to that member.
CREATE OR REPLACE FUNCTION ocaas_instances_changed() RETURNS trigger AS $$
DECLARE
    new_org uuid;
    old_org uuid;
    member uuid;
BEGIN
    IF TG_OP <> 'DELETE' THEN
        new_org := NEW.org_id;
        IF NEW.user_id IS NOT NULL THEN
            PERFORM pg_notify('ocaas_instances', NEW.user_id::text);
        END IF;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        old_org := OLD.org_id;
        IF OLD.user_id IS NOT NULL AND (TG_OP = 'DELETE' OR OLD.user_id IS DISTINCT FROM NEW.user_id) THEN
            PERFORM pg_notify('ocaas_instances', OLD.user_id::text);
        END IF;
    END IF;
    IF new_org IS NOT NULL OR old_org IS NOT NULL THEN
        FOR member IN SELECT DISTINCT user_id FROM org_members WHERE org_id IN (new_org, old_org) LOOP
            PERFORM pg_notify('ocaas_instances', member::text);
        END LOOP;
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE FUNCTION org_members_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('ocaas_instances', OLD.user_id::text);
    ELSE
        PERFORM pg_notify('ocaas_instances', NEW.user_id::text);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER org_members_changed AFTER INSERT OR UPDATE OR DELETE ON org_members
    FOR EACH ROW EXECUTE FUNCTION org_members_changed();

ALTER TABLE audit_events DROP CONSTRAINT audit_events_action_check;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_action_check CHECK (action IN (
    'login_succeeded', 'login_failed', 'logout', 'user_registered',
    'key_created', 'key_revoked',
    'instance_created', 'instance_deleted', 'instance_rebooted', 'instance_shut_down', 'instance_started',
    'admin_user_created', 'admin_key_created', 'admin_key_revoked', 'admin_invite_created', 'admin_subscription_granted',
    'admin_instances_upgraded', 'admin_storage_migrated',
    'config_patched', 'config_rolled_back', 'channel_set', 'channel_removed', 'approval_resolved',
    'webhook_created', 'webhook_deleted', 'webhook_secret_rotated',
    'org_created', 'org_deleted', 'org_member_invited', 'org_member_joined', 'org_member_changed', 'org_member_removed'));
