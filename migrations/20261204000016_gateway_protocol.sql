-- The gateway's own protocol: ocaas's device identity per instance, tool steps in messages,
-- aborted turns, and sessions that are the agent's (imported from the gateway).

-- One device identity per instance: the Ed25519 seed and the gateway's device token, both
-- sealed with the server's key (secrets.rs).
CREATE TABLE gateway_devices (
    instance_id uuid PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    device_id text NOT NULL,
    seed_sealed bytea NOT NULL,
    device_token_sealed bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    paired_at timestamptz
);

-- A session's key on the gateway: NULL for ocaas's own (the key is the session id); the
-- gateway's canonical key for one imported from it.
ALTER TABLE chat_sessions
    ADD COLUMN gateway_key text,
    ADD COLUMN origin text NOT NULL DEFAULT 'api' CHECK (origin IN ('api', 'gateway'));
CREATE UNIQUE INDEX chat_sessions_gateway_key_idx ON chat_sessions (instance_id, gateway_key) WHERE gateway_key IS NOT NULL;

-- Tool steps of an assistant message (a JSON array, bounded by the server), the gateway's
-- run a message belongs to (`user:<runId>`, `run:<runId>`: imports and replicas never insert
-- a turn twice), and the aborted state.
ALTER TABLE chat_messages
    ADD COLUMN tools jsonb NOT NULL DEFAULT '[]',
    ADD COLUMN gateway_ref text;
CREATE UNIQUE INDEX chat_messages_gateway_ref_idx ON chat_messages (session_id, gateway_ref) WHERE gateway_ref IS NOT NULL;
ALTER TABLE chat_messages DROP CONSTRAINT chat_messages_status_check;
ALTER TABLE chat_messages ADD CONSTRAINT chat_messages_status_check CHECK (status IN ('complete', 'streaming', 'error', 'aborted'));
