-- Found in review of the platform work.

-- A new organisation has no plan until the operator gives it one: no instances, no model
-- tokens (otherwise any account could make organisations for free instances and tokens).
ALTER TABLE orgs ALTER COLUMN max_instances SET DEFAULT 0, ALTER COLUMN monthly_tokens SET DEFAULT 0;

-- Deliveries in flight, so one endpoint that stalls takes at most one attempt at a time and
-- cannot hold up every other tenant's deliveries.
ALTER TABLE webhook_deliveries ADD COLUMN claimed_until timestamptz;
CREATE INDEX webhook_deliveries_claimed_idx ON webhook_deliveries (endpoint_id) WHERE claimed_until IS NOT NULL;

-- An organisation's instance's events go to its creator's endpoints only while the creator is
-- still a member (one removed learns nothing more of it).
CREATE OR REPLACE FUNCTION webhook_emit(owner uuid, kind text, data jsonb) RETURNS void AS $$
DECLARE
    message text := 'msg_' || replace(gen_random_uuid()::text, '-', '');
    org uuid;
BEGIN
    IF owner IS NULL THEN
        RETURN;
    END IF;
    IF data ? 'instance_id' THEN
        org := (SELECT org_id FROM instances WHERE id = (data->>'instance_id')::uuid);
        IF org IS NOT NULL AND NOT EXISTS (SELECT 1 FROM org_members WHERE org_id = org AND user_id = owner) THEN
            RETURN;
        END IF;
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
