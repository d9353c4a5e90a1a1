-- Servers cache each user's account answer; every change of a user or a subscription row tells
-- every server (whichever process or admin command made it) whose answer to forget.
CREATE FUNCTION ocaas_account_changed() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'users' THEN
        PERFORM pg_notify('ocaas_accounts', OLD.id::text);
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('ocaas_accounts', OLD.user_id::text);
    ELSE
        PERFORM pg_notify('ocaas_accounts', NEW.user_id::text);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER users_changed AFTER UPDATE OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION ocaas_account_changed();
CREATE TRIGGER subscriptions_changed AFTER INSERT OR UPDATE OR DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION ocaas_account_changed();
