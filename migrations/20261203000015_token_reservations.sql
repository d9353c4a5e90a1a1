-- Tokens set aside for model calls in flight. A call reserves what it may use (within the room
-- the monthly allowances leave) before it reaches the provider, and its usage row replaces the
-- reservation when it ends, so concurrent calls cannot all pass one check and overshoot
-- together. A reservation of a process that died expires by itself.
CREATE TABLE token_reservations (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    instance_id uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    tokens bigint NOT NULL CHECK (tokens > 0),
    expires_at timestamptz NOT NULL
);
CREATE INDEX token_reservations_user ON token_reservations (user_id, expires_at);
CREATE INDEX token_reservations_instance ON token_reservations (instance_id, expires_at);
