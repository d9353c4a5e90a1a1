-- Security-relevant events: who (user, or the email tried), from where, what, on what.
CREATE TABLE audit_events (
    id            BIGSERIAL PRIMARY KEY,
    at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_user_id UUID REFERENCES users (id) ON DELETE SET NULL,
    actor_email   TEXT,
    client_addr   TEXT,
    action        TEXT NOT NULL CHECK (action IN (
        'login_succeeded', 'login_failed', 'logout', 'user_registered',
        'key_created', 'key_revoked',
        'instance_created', 'instance_deleted', 'instance_rebooted', 'instance_shut_down', 'instance_started',
        'admin_user_created', 'admin_key_created', 'admin_key_revoked', 'admin_invite_created', 'admin_subscription_granted')),
    target        TEXT
);
CREATE INDEX audit_events_actor ON audit_events (actor_user_id, id DESC);
CREATE INDEX audit_events_at ON audit_events (at);
