-- Chat: sessions per instance, messages with a per-session sequence, and an event id on every
-- insert/update of a message (from one sequence, so `id:` lines of chat/events resume in
-- order). A trigger announces every change on channel `ocaas_chat` for all server processes.
CREATE TABLE chat_sessions (
    id uuid PRIMARY KEY,
    instance_id uuid NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    title text,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_activity_at timestamptz NOT NULL DEFAULT now(),
    next_seq bigint NOT NULL DEFAULT 1,
    -- The assistant message of the turn in progress; one turn per session at a time.
    active_turn uuid
);
CREATE INDEX chat_sessions_instance_idx ON chat_sessions (instance_id, last_activity_at DESC);

CREATE SEQUENCE chat_event_seq;

CREATE TABLE chat_messages (
    id uuid PRIMARY KEY,
    session_id uuid NOT NULL REFERENCES chat_sessions (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    role text NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content text NOT NULL,
    status text NOT NULL CHECK (status IN ('complete', 'streaming', 'error')),
    error text,
    event_id bigint NOT NULL DEFAULT nextval('chat_event_seq'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, seq)
);
CREATE INDEX chat_messages_events_idx ON chat_messages (session_id, event_id);
CREATE INDEX chat_messages_streaming_idx ON chat_messages (updated_at) WHERE status = 'streaming';

CREATE FUNCTION chat_message_touch() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        NEW.event_id := nextval('chat_event_seq');
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER chat_message_touch BEFORE UPDATE ON chat_messages
    FOR EACH ROW EXECUTE FUNCTION chat_message_touch();

CREATE FUNCTION chat_message_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('ocaas_chat', NEW.session_id::text || ' ' || NEW.event_id::text);
    RETURN NULL;
END $$ LANGUAGE plpgsql;

CREATE TRIGGER chat_message_notify AFTER INSERT OR UPDATE ON chat_messages
    FOR EACH ROW EXECUTE FUNCTION chat_message_notify();
