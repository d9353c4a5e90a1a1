-- Instances: one sandbox container per row. The gateway token is needed in clear to call the
-- gateway; it never leaves the server (not returned by the API).
CREATE TABLE instances (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sandbox_id text NOT NULL UNIQUE,
    name text,
    status text NOT NULL CHECK (status IN ('provisioning', 'ready', 'rebooting', 'stopping', 'stopped', 'error', 'deleting')),
    last_error text,
    image text NOT NULL,
    gateway_token text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX instances_user_idx ON instances (user_id, created_at);
