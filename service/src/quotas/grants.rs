//! Grants, the audit trail, and snapshots of what changed.

use super::*;

impl Quotas {
    /// Stores a grant, and mirrors it in memory for the access checks.
    pub async fn grant(
        &self,
        actor: &str,
        id: &str,
        subject: &str,
        role: Role,
    ) -> Result<bool, QuotaError> {
        validate_subject(subject)?;
        let _serialised = self.flusher.write_lock().await;
        self.counters
            .node(id)
            .filter(|n| n.state != NodeState::Deleted)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))?;
        if self.counters.has_grant(id, subject, role) {
            return Ok(false);
        }
        let ops = self.grant_ops(actor, id, subject, role);
        self.write(&ops).await?;
        self.counters.add_grant(id, subject, role);
        Ok(true)
    }

    /// The rows a grant writes: the grant and its audit record.
    pub(super) fn grant_ops(
        &self,
        actor: &str,
        id: &str,
        subject: &str,
        role: Role,
    ) -> [WriteOp; 2] {
        let role = role.as_str();
        [
            WriteOp::InsertGrant {
                node_id: id.to_owned(),
                subject: subject.to_owned(),
                role: role.to_owned(),
                created_at: self.now(),
            },
            self.audit(
                actor,
                "grant",
                id,
                None,
                Some(json!({"subject": subject, "role": role})),
            ),
        ]
    }

    /// Removes a grant.
    pub async fn revoke(
        &self,
        actor: &str,
        id: &str,
        subject: &str,
        role: Role,
    ) -> Result<(), QuotaError> {
        validate_subject(subject)?;
        let _serialised = self.flusher.write_lock().await;
        if !self.counters.contains(id) {
            return Err(QuotaError::NotFound(id.to_owned()));
        }
        let stored_role = role.as_str();
        if !self.counters.has_grant(id, subject, role) {
            return Err(QuotaError::Conflict {
                kind: Conflict::GrantNotFound,
                message: format!("{id:?} has no grant of role {stored_role:?} to {subject:?}"),
            });
        }
        let ops = [
            WriteOp::DeleteGrant {
                node_id: id.to_owned(),
                subject: subject.to_owned(),
                role: stored_role.to_owned(),
            },
            self.audit(
                actor,
                "revoke",
                id,
                Some(json!({"subject": subject, "role": stored_role})),
                None,
            ),
        ];
        self.write(&ops).await?;
        self.counters.remove_grant(id, subject, role);
        Ok(())
    }

    pub async fn grants(&self, id: &str) -> Result<Vec<GrantRow>, QuotaError> {
        if !self.counters.contains(id) {
            return Err(QuotaError::NotFound(id.to_owned()));
        }
        Ok(self.db.grants(id).await?)
    }

    /// The audit trail of a node, newest first.
    pub async fn audit_log(
        &self,
        id: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, QuotaError> {
        if !self.counters.contains(id) {
            return Err(QuotaError::NotFound(id.to_owned()));
        }
        Ok(self.db.audit_page(id, limit, before).await?)
    }

    /// Nodes changed since version `since`, and the version to ask from next.
    pub fn snapshot(&self, since: u64) -> (u64, Vec<NodeView>) {
        self.counters.changed_since(since)
    }
}

pub(super) fn validate_subject(subject: &str) -> Result<(), QuotaError> {
    if subject.is_empty()
        || subject.chars().count() > quota_api::rules::MAX_SUBJECT_CHARS
        || subject.chars().any(char::is_control)
    {
        return Err(QuotaError::Invalid(
            "subject must be 1-512 characters, none of them a control character".into(),
        ));
    }
    Ok(())
}
