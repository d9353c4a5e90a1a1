-- Which API replica reconciles which host: 'local' (the servers' own engine) or a node's id.
-- A replica claims each scope for a few reconcile intervals and renews it every pass; one that
-- dies loses its scopes when they expire, and another replica takes them over.
CREATE TABLE reconcile_leases (
    scope text PRIMARY KEY,
    holder uuid NOT NULL,
    expires_at timestamptz NOT NULL
);
