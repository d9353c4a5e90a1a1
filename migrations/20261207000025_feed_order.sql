-- Feeds resume by id (`Last-Event-ID`, a reader's cursor): within one feed, an id must never
-- become visible after a larger one, or a reader that saw the larger one skips it for good.
-- Ids from a sequence are handed out in one order and committed in another, so each feed's
-- ids are now taken under a lock held until commit: a chat session's row for its messages'
-- event ids, an advisory lock per instance for its agent feed. Writers of one feed queue for
-- a moment; writers of different feeds do not meet.

CREATE OR REPLACE FUNCTION chat_message_touch() RETURNS trigger AS $$
BEGIN
    PERFORM 1 FROM chat_sessions WHERE id = NEW.session_id FOR UPDATE;
    NEW.event_id := nextval('chat_event_seq');
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

DROP TRIGGER chat_message_touch ON chat_messages;
CREATE TRIGGER chat_message_touch BEFORE INSERT OR UPDATE ON chat_messages
    FOR EACH ROW EXECUTE FUNCTION chat_message_touch();

CREATE FUNCTION agent_event_order() RETURNS trigger AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended('agent_events ' || NEW.instance_id::text, 0));
    NEW.id := nextval(pg_get_serial_sequence('agent_events', 'id'));
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER agent_event_order BEFORE INSERT ON agent_events
    FOR EACH ROW EXECUTE FUNCTION agent_event_order();
