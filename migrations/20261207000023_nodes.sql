-- Docker hosts that run sandboxes for this server (`ocaas node`), and where each instance runs.
CREATE TABLE nodes (
    id uuid PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    -- host:port the API replicas dial.
    address text NOT NULL CHECK (length(address) BETWEEN 3 AND 255),
    -- SHA-256 (hex) of the node's own certificate: the replicas pin it.
    fingerprint text NOT NULL CHECK (fingerprint ~ '^[0-9a-f]{64}$'),
    -- The credential the replicas present to it, sealed with the server's secret key.
    credential bytea NOT NULL,
    capacity integer NOT NULL CHECK (capacity >= 0),
    labels jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(labels) = 'object'),
    draining boolean NOT NULL DEFAULT false,
    last_seen timestamptz,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One-use tokens an operator hands to a new node (`ocaas admin nodes join-token`).
CREATE TABLE node_join_tokens (
    token_hash bytea PRIMARY KEY,
    name text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    capacity integer NOT NULL CHECK (capacity >= 0),
    labels jsonb NOT NULL DEFAULT '{}'::jsonb,
    expires_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- NULL: the server's own engine (a one-box deployment). Sticky: storage is local to a node.
ALTER TABLE instances ADD COLUMN node_id uuid REFERENCES nodes (id) ON DELETE RESTRICT;
CREATE INDEX instances_node ON instances (node_id) WHERE node_id IS NOT NULL;
