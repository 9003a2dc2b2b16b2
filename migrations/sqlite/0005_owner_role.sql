-- Grants may give the role `owner` (the node's own limits, state, delete and
-- grants). SQLite cannot change a CHECK constraint in place: the table is
-- rebuilt with the new one and its rows copied as they are.

CREATE TABLE quota_grants_new (
    node_id    TEXT NOT NULL,
    subject    TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('reader', 'reporter', 'admin', 'owner')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (node_id, subject, role)
);

INSERT INTO quota_grants_new (node_id, subject, role, created_at)
    SELECT node_id, subject, role, created_at FROM quota_grants;

DROP TABLE quota_grants;

ALTER TABLE quota_grants_new RENAME TO quota_grants;
