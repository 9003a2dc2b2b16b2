-- Views refreshed from the database, strict nodes. Mirrors
-- migrations/sqlite/0003 so both stores keep the same columns.
--
-- quota_clock: one row; every write transaction increments it first, which
-- also serialises writers (the row stays locked until commit), so versions
-- become visible in commit order. Rows written get that version: a replica
-- reads "everything with a version above the last one I saw" to refresh its
-- view of what the other replicas wrote.
CREATE TABLE quota_clock (
    id      BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO quota_clock (id, version) VALUES (1, 0);

ALTER TABLE quota_nodes ADD COLUMN strict BIGINT NOT NULL DEFAULT 0 CHECK (strict IN (0, 1));
ALTER TABLE quota_nodes ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE quota_usage ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
CREATE INDEX quota_nodes_version ON quota_nodes (version);
CREATE INDEX quota_usage_version ON quota_usage (version);
