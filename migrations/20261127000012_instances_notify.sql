-- Servers cache each user's instance list; every change of an instance row tells every server
-- (whichever process or admin command made it) whose list to forget.
CREATE FUNCTION ocaas_instances_changed() RETURNS trigger AS $$
BEGIN
    IF TG_OP <> 'DELETE' AND NEW.user_id IS NOT NULL THEN
        PERFORM pg_notify('ocaas_instances', NEW.user_id::text);
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.user_id IS NOT NULL AND OLD.user_id IS DISTINCT FROM NEW.user_id THEN
        PERFORM pg_notify('ocaas_instances', OLD.user_id::text);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER instances_changed AFTER INSERT OR UPDATE OR DELETE ON instances
    FOR EACH ROW EXECUTE FUNCTION ocaas_instances_changed();
