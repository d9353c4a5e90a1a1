-- Servers cache who a key or session belongs to; any revocation, expiry change or deletion
-- tells every server (whichever process or admin command made it) to forget what it cached.
CREATE FUNCTION ocaas_auth_changed() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ocaas_auth', TG_TABLE_NAME);
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER api_keys_changed AFTER UPDATE OF revoked_at, expires_at, user_id OR DELETE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION ocaas_auth_changed();
CREATE TRIGGER browser_sessions_changed AFTER UPDATE OR DELETE ON browser_sessions
    FOR EACH STATEMENT EXECUTE FUNCTION ocaas_auth_changed();
