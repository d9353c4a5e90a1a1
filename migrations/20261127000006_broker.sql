-- The model broker: each instance's broker token (SHA-256 of it; the token itself lives only
-- in the sandbox's environment, replaced whenever the container is created) and one row per
-- upstream model call, kept when the instance is deleted so account totals stay right.
ALTER TABLE instances ADD COLUMN broker_token_hash BYTEA;
CREATE UNIQUE INDEX instances_broker_token_hash ON instances (broker_token_hash);

CREATE TABLE model_usage (
    id BIGSERIAL PRIMARY KEY,
    instance_id UUID REFERENCES instances (id) ON DELETE SET NULL,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    model TEXT NOT NULL,
    prompt_tokens BIGINT NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens BIGINT NOT NULL CHECK (completion_tokens >= 0),
    -- The upstream sent no usage: the counts are estimated from the bytes exchanged.
    estimated BOOLEAN NOT NULL,
    duration_ms BIGINT NOT NULL,
    -- `ok`, `upstream_error` (the provider answered an error) or `failed` (unreachable, cut off).
    status TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX model_usage_user_time ON model_usage (user_id, created_at);
CREATE INDEX model_usage_instance_time ON model_usage (instance_id, created_at);
