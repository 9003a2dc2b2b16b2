//! Capacity claims: idempotent per `resource_id`, released explicitly.

use super::*;

impl Quotas {
    /// Claims capacity; idempotent per `resource_id` (the same claim again
    /// answers as the first time). Returns the claim and whether it is new.
    pub async fn claim(
        &self,
        actor: &str,
        id: &str,
        spec: ClaimSpec,
    ) -> Result<(Claim, bool), QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        self.counters.check_usable(id, &[])?;
        if let Some(existing) = self
            .counters
            .claims(id)
            .and_then(|c| c.get(&spec.resource_id).cloned())
        {
            if existing.resource == spec.resource && existing.amount == spec.amount {
                return Ok((existing, false));
            }
            return Err(QuotaError::Conflict {
                kind: Conflict::ClaimIdTaken,
                message: format!(
                    "resource_id {:?} already claims {} of {:?}; release it before claiming something else under that id",
                    spec.resource_id, existing.amount, existing.resource
                ),
            });
        }
        self.counters.check_usable(id, &[&spec.resource])?;
        let now = self.now();
        // 1. Take the capacity.
        self.counters
            .try_update(id, |n, _| n.claim(&spec.resource, spec.amount, now))
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))??;
        let claim = Claim {
            resource: spec.resource.clone(),
            amount: spec.amount,
            reason: spec.reason.clone(),
            created_at: now,
        };
        // 2. Write it.
        let ops = [
            WriteOp::Touch { node_id: id.to_owned(), at: now },
            WriteOp::InsertClaim { node_id: id.to_owned(), resource_id: spec.resource_id.clone(), claim: claim.clone() },
            self.audit(actor, "claim", id, None, Some(json!({"resource_id": spec.resource_id, "resource": spec.resource, "amount": spec.amount, "reason": spec.reason}))),
        ];
        if let Err(e) = self.write(&ops).await {
            self.counters
                .update(id, |n, _, now| n.release(&spec.resource, spec.amount, now));
            return Err(e.into());
        }
        // 3. Record it.
        self.counters.update(id, |_, claims, _| {
            claims.insert(spec.resource_id.clone(), claim.clone())
        });
        Ok((claim, true))
    }

    /// Releases a claim.
    pub async fn release(
        &self,
        actor: &str,
        id: &str,
        resource_id: &str,
    ) -> Result<Claim, QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        let claims = self
            .counters
            .claims(id)
            .ok_or_else(|| QuotaError::NotFound(id.to_owned()))?;
        let claim = claims.get(resource_id).cloned().ok_or_else(|| QuotaError::Conflict {
            kind: Conflict::ClaimNotFound,
            message: format!("{id:?} holds no claim {resource_id:?} (claims of a deleted node move to its parent)"),
        })?;
        let now = self.now();
        let ops = [
            WriteOp::Touch { node_id: id.to_owned(), at: now },
            WriteOp::DeleteClaim { node_id: id.to_owned(), resource_id: resource_id.to_owned() },
            self.audit(actor, "release", id, Some(json!({"resource_id": resource_id, "resource": claim.resource, "amount": claim.amount, "reason": claim.reason})), None),
        ];
        self.write(&ops).await?;
        // At the time the row was touched with: memory and the database agree.
        self.counters.update(id, |n, claims, _| {
            claims.remove(resource_id);
            n.release(&claim.resource, claim.amount, now);
        });
        Ok(claim)
    }
}
