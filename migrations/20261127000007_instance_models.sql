-- A user's own model for an instance ("bring your own key"). No row: the operator's provider.
-- The key is sealed with the server's secret key: nonce (12 bytes) || ChaCha20-Poly1305 output.
CREATE TABLE instance_models (
    instance_id UUID PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    base_url TEXT NOT NULL,
    model TEXT NOT NULL,
    api_key_sealed BYTEA NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
