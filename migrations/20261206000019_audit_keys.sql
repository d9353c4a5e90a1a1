-- The audit log names the API key behind each action (NULL: a browser session, an admin
-- command or the server itself).
ALTER TABLE audit_events ADD COLUMN key_id uuid REFERENCES api_keys (id) ON DELETE SET NULL;
