-- Scoped keys: a key may carry scopes (NULL: everything its user can do) and be bound to one
-- instance (NULL: any of its user's). A key bound to an instance goes with it.
ALTER TABLE api_keys
    ADD COLUMN scopes text[] CHECK (scopes <@ ARRAY['instances:read', 'instances:write', 'chat', 'files:read', 'files:write', 'exec', 'snapshots', 'agent', 'account']::text[]),
    ADD COLUMN instance_id uuid REFERENCES instances (id) ON DELETE CASCADE;
