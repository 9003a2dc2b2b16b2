-- The flat tracker's tables, kept in their original shape.
--
-- quota_limits: one row per tenant (explicit limits, or the defaults written
--   on first use).
-- quota_usage: one row per tenant, period and quota type. Rows of finished
--   periods stay as history. `used` is the absolute value counted in the
--   period; the service writes it from memory on every flush.
-- Timestamps are RFC 3339 UTC text, as in the flat tracker.

CREATE TABLE IF NOT EXISTS quota_limits (
    tenant_id             TEXT    PRIMARY KEY NOT NULL,
    message_limit         INTEGER NOT NULL CHECK (message_limit >= 0),
    bandwidth_limit_bytes INTEGER NOT NULL CHECK (bandwidth_limit_bytes >= 0),
    created_at            TEXT    NOT NULL,
    updated_at            TEXT    NOT NULL
);

CREATE TABLE IF NOT EXISTS quota_usage (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    TEXT    NOT NULL,
    period       TEXT    NOT NULL,
    quota_type   TEXT    NOT NULL CHECK (quota_type IN ('message_count', 'bandwidth')),
    used         INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0),
    last_updated TEXT    NOT NULL,
    UNIQUE (tenant_id, period, quota_type)
);

-- Startup loads the latest period of each (tenant, quota type).
CREATE INDEX IF NOT EXISTS quota_usage_latest ON quota_usage (tenant_id, quota_type, period);
