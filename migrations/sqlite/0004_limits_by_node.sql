-- quota_node_limits stored in its key's order (WITHOUT ROWID).
--
-- Every read of limits is by node: a load reads them by ranges of node ids,
-- a write-through call by one node. In a rowid table each of those rows was
-- found in the primary key's index and then fetched from the table by its
-- rowid; clustered by (node_id, resource), a range is one sequential walk.
-- Reading the limits of 1,000,000 nodes took 2.2 s of SQLite's time before,
-- 1.2 s after (BENCHMARKS.md, "Startup load, fifth pass"). Same columns,
-- constraints and rows; quota_limits, the view over it, is recreated as it
-- was.

DROP VIEW quota_limits;

CREATE TABLE quota_node_limits_by_node (
    node_id  TEXT    NOT NULL,
    resource TEXT    NOT NULL,
    max      INTEGER NOT NULL CHECK (max >= 0),
    window   TEXT    NOT NULL CHECK (window IN ('minute', 'hour', 'day', 'month', 'none')),
    PRIMARY KEY (node_id, resource)
) WITHOUT ROWID;
INSERT INTO quota_node_limits_by_node (node_id, resource, max, window)
    SELECT node_id, resource, max, window FROM quota_node_limits;
DROP TABLE quota_node_limits;
ALTER TABLE quota_node_limits_by_node RENAME TO quota_node_limits;

CREATE VIEW quota_limits AS
    SELECT n.id AS tenant_id,
           m.max AS message_limit,
           b.max AS bandwidth_limit_bytes,
           n.created_at,
           n.updated_at
      FROM quota_nodes n
      JOIN quota_node_limits m ON m.node_id = n.id AND m.resource = 'messages'
      JOIN quota_node_limits b ON b.node_id = n.id AND b.resource = 'bandwidth';
