-- Grants may give the role `owner` (the node's own limits, state, delete and
-- grants).

ALTER TABLE quota_grants DROP CONSTRAINT quota_grants_role_check;

ALTER TABLE quota_grants
    ADD CONSTRAINT quota_grants_role_check CHECK (role IN ('reader', 'reporter', 'admin', 'owner'));
