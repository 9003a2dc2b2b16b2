-- Hierarchical quotas.
--
-- quota_nodes / quota_node_limits are the source of truth for every quota
-- (a flat tenant is a root node with resources 'messages' (day) and
-- 'bandwidth' (month)). quota_limits, the flat tracker's table, becomes a
-- view over them with the same columns, so readers of the old table keep
-- working and limits live in exactly one place.
--
-- quota_usage keeps its columns and its unique (tenant_id, period,
-- quota_type); tenant_id now holds any node id and quota_type any resource
-- ('message_count' for messages, as before). It is rebuilt only to drop the
-- CHECK that allowed just the two flat types.

CREATE TABLE quota_nodes (
    id          TEXT PRIMARY KEY NOT NULL,
    parent_id   TEXT,
    state       TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'deleted')),
    name        TEXT,
    description TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX quota_nodes_parent ON quota_nodes (parent_id);

CREATE TABLE quota_node_limits (
    node_id  TEXT    NOT NULL,
    resource TEXT    NOT NULL,
    max      INTEGER NOT NULL CHECK (max >= 0),
    window   TEXT    NOT NULL CHECK (window IN ('minute', 'hour', 'day', 'month', 'none')),
    PRIMARY KEY (node_id, resource)
);

INSERT INTO quota_nodes (id, parent_id, state, name, description, created_at, updated_at)
    SELECT tenant_id, NULL, 'active', NULL, NULL, created_at, updated_at FROM quota_limits;
INSERT INTO quota_node_limits (node_id, resource, max, window)
    SELECT tenant_id, 'messages', message_limit, 'day' FROM quota_limits;
INSERT INTO quota_node_limits (node_id, resource, max, window)
    SELECT tenant_id, 'bandwidth', bandwidth_limit_bytes, 'month' FROM quota_limits;
DROP TABLE quota_limits;

CREATE VIEW quota_limits AS
    SELECT n.id AS tenant_id,
           m.max AS message_limit,
           b.max AS bandwidth_limit_bytes,
           n.created_at,
           n.updated_at
      FROM quota_nodes n
      JOIN quota_node_limits m ON m.node_id = n.id AND m.resource = 'messages'
      JOIN quota_node_limits b ON b.node_id = n.id AND b.resource = 'bandwidth';

CREATE TABLE quota_usage_v2 (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT    NOT NULL,
    period       TEXT    NOT NULL,
    quota_type   TEXT    NOT NULL,
    used         INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    last_updated TEXT    NOT NULL,
    UNIQUE (tenant_id, period, quota_type)
);
INSERT INTO quota_usage_v2 (id, tenant_id, period, quota_type, used, last_updated)
    SELECT id, tenant_id, period, quota_type, used, last_updated FROM quota_usage;
DROP TABLE quota_usage;
ALTER TABLE quota_usage_v2 RENAME TO quota_usage;
CREATE INDEX quota_usage_latest ON quota_usage (tenant_id, quota_type, period);

-- Capacity claims (window 'none'): the usage of a capacity is the sum of its
-- claims, written through; idempotent per (node, resource_id).
CREATE TABLE quota_claims (
    node_id     TEXT    NOT NULL,
    resource_id TEXT    NOT NULL,
    resource    TEXT    NOT NULL,
    amount      INTEGER NOT NULL CHECK (amount >= 0),
    reason      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    PRIMARY KEY (node_id, resource_id)
);

CREATE TABLE quota_grants (
    node_id    TEXT NOT NULL,
    subject    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('reader', 'reporter', 'admin')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (node_id, subject, role)
);

-- The audit trail: append-only. The triggers refuse every UPDATE and DELETE.
CREATE TABLE quota_audit_logs (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    node_id TEXT NOT NULL,
    before  TEXT,
    after   TEXT
);
CREATE INDEX quota_audit_logs_node ON quota_audit_logs (node_id, id);

CREATE TRIGGER quota_audit_logs_no_update BEFORE UPDATE ON quota_audit_logs
BEGIN
    SELECT RAISE(ABORT, 'quota_audit_logs is append-only');
END;

CREATE TRIGGER quota_audit_logs_no_delete BEFORE DELETE ON quota_audit_logs
BEGIN
    SELECT RAISE(ABORT, 'quota_audit_logs is append-only');
END;
