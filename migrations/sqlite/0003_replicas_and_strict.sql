-- Delta flushes, views refreshed from the database, strict nodes.
--
-- Mirrors migrations/postgres/0002 so both stores keep the same columns.
--
-- quota_clock: one row; every write transaction increments it first, which
-- also serialises writers, so versions become visible in commit order.
-- Rows written get that version: a replica reads "everything with a version
-- above the last one I saw" to refresh its view (PostgreSQL; a SQLite file
-- has one writer, but keeps the same columns and rules).
CREATE TABLE quota_clock (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO quota_clock (id, version) VALUES (1, 0);

ALTER TABLE quota_nodes ADD COLUMN strict INTEGER NOT NULL DEFAULT 0 CHECK (strict IN (0, 1));
ALTER TABLE quota_nodes ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE quota_usage ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
CREATE INDEX quota_nodes_version ON quota_nodes (version);
CREATE INDEX quota_usage_version ON quota_usage (version);

-- Flushes add deltas. Each records (replica, seq) in the same transaction,
-- so a flush retried after an unknown outcome (the commit may have happened)
-- is recognised and not counted twice.
CREATE TABLE quota_flush_log (
    replica_id TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    applied_at TEXT    NOT NULL,
    PRIMARY KEY (replica_id, seq)
);
