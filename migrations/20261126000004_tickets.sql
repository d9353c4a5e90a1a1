-- Short-lived, single-use tickets that let a browser open an instance's websockets
-- (browsers cannot set an Authorization header on a websocket handshake).
CREATE TABLE ws_tickets (
    ticket_hash BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    instance_id UUID NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ
);
CREATE INDEX ws_tickets_expires_at ON ws_tickets (expires_at);
