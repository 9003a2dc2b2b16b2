-- The PostgreSQL schema: the same tables, columns and rules as the SQLite
-- migrations (migrations/sqlite/) after 0002, plus the flush log that makes
-- delta writes from several replicas idempotent.
--
-- Timestamps are RFC 3339 text, as in SQLite, so both stores hold the same
-- values and the same code reads them.

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
    node_id  TEXT   NOT NULL,
    resource TEXT   NOT NULL,
    max      BIGINT NOT NULL CHECK (max >= 0),
    "window" TEXT   NOT NULL CHECK ("window" IN ('minute', 'hour', 'day', 'month', 'none')),
    PRIMARY KEY (node_id, resource)
);

-- The flat tracker's limits table, as a view over the node tables.
CREATE VIEW quota_limits AS
    SELECT n.id AS tenant_id,
           m.max AS message_limit,
           b.max AS bandwidth_limit_bytes,
           n.created_at,
           n.updated_at
      FROM quota_nodes n
      JOIN quota_node_limits m ON m.node_id = n.id AND m.resource = 'messages'
      JOIN quota_node_limits b ON b.node_id = n.id AND b.resource = 'bandwidth';

CREATE TABLE quota_usage (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    TEXT   NOT NULL,
    period       TEXT   NOT NULL,
    quota_type   TEXT   NOT NULL,
    used         BIGINT NOT NULL DEFAULT 0 CHECK (used >= 0),
    last_updated TEXT   NOT NULL,
    UNIQUE (tenant_id, period, quota_type)
);
CREATE INDEX quota_usage_latest ON quota_usage (tenant_id, quota_type, period);

CREATE TABLE quota_claims (
    node_id     TEXT   NOT NULL,
    resource_id TEXT   NOT NULL,
    resource    TEXT   NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount >= 0),
    reason      TEXT   NOT NULL,
    created_at  TEXT   NOT NULL,
    PRIMARY KEY (node_id, resource_id)
);

CREATE TABLE quota_grants (
    node_id    TEXT NOT NULL,
    subject    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('reader', 'reporter', 'admin')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (node_id, subject, role)
);

CREATE TABLE quota_audit_logs (
    id      BIGSERIAL PRIMARY KEY,
    ts      TEXT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    node_id TEXT NOT NULL,
    before  TEXT,
    after   TEXT
);
CREATE INDEX quota_audit_logs_node ON quota_audit_logs (node_id, id);

CREATE FUNCTION quota_audit_logs_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'quota_audit_logs is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER quota_audit_logs_no_update BEFORE UPDATE ON quota_audit_logs
    FOR EACH ROW EXECUTE FUNCTION quota_audit_logs_append_only();
CREATE TRIGGER quota_audit_logs_no_delete BEFORE DELETE ON quota_audit_logs
    FOR EACH ROW EXECUTE FUNCTION quota_audit_logs_append_only();
CREATE TRIGGER quota_audit_logs_no_truncate BEFORE TRUNCATE ON quota_audit_logs
    FOR EACH STATEMENT EXECUTE FUNCTION quota_audit_logs_append_only();

-- Replicas add deltas to quota_usage. Each flush records (replica, seq) in
-- the same transaction, so a flush retried after an unknown outcome (the
-- commit may have happened) is recognised and not counted twice.
CREATE TABLE quota_flush_log (
    replica_id TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    applied_at TEXT   NOT NULL,
    PRIMARY KEY (replica_id, seq)
);
