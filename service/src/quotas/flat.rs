//! The flat API's operations: a tenant is a root node with the built-in
//! resources.

use super::*;

impl Quotas {
    /// Counts usage (always) and returns the tenant after it. Awaits only
    /// for a strict node.
    pub async fn increment(&self, tenant_id: &str, usage: Usage) -> Result<TenantView, QuotaError> {
        match self.counters.increment_flat(tenant_id, usage) {
            Err(UsageError::Strict(_)) => {
                let pairs = [(MESSAGES, usage.messages), (BANDWIDTH, usage.bytes)];
                let counted: Vec<(&str, u64)> = pairs.into_iter().filter(|(_, n)| *n > 0).collect();
                self.usage_strict(tenant_id, &counted, false).await?;
                self.counters
                    .flat(tenant_id)
                    .ok_or_else(|| QuotaError::NotFound(tenant_id.to_owned()))
            }
            other => Ok(other?),
        }
    }

    /// The tenant (or an unknown tenant's defaults). Changes nothing.
    pub fn check(&self, tenant_id: &str) -> TenantView {
        self.counters.flat_or_default(tenant_id)
    }

    pub fn get(&self, tenant_id: &str) -> Option<TenantView> {
        self.counters.flat(tenant_id)
    }

    pub fn list(&self) -> Vec<(String, TenantView)> {
        self.counters.flat_list()
    }

    /// Sets the `messages` and/or `bandwidth` limits of a tenant (created as
    /// a root node with the default limits if unknown), written through.
    pub async fn set_limits(
        &self,
        actor: &str,
        tenant_id: &str,
        update: LimitsUpdate,
    ) -> Result<TenantView, QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        let defaults = self.counters.default_limits();
        let mut spec = match self.counters.node(tenant_id) {
            Some(n) if n.state != NodeState::Deleted => spec_of(&n),
            _ => NodeSpec {
                limits: [
                    (
                        MESSAGES.to_owned(),
                        LimitSpec {
                            max: defaults.message_limit,
                            window: Some(Window::Day),
                        },
                    ),
                    (
                        BANDWIDTH.to_owned(),
                        LimitSpec {
                            max: defaults.bandwidth_limit_bytes,
                            window: Some(Window::Month),
                        },
                    ),
                ]
                .into(),
                ..NodeSpec::default()
            },
        };
        if let Some(m) = update.message_limit {
            spec.limits.insert(
                MESSAGES.to_owned(),
                LimitSpec {
                    max: m,
                    window: Some(Window::Day),
                },
            );
        }
        if let Some(b) = update.bandwidth_limit_bytes {
            spec.limits.insert(
                BANDWIDTH.to_owned(),
                LimitSpec {
                    max: b,
                    window: Some(Window::Month),
                },
            );
        }
        self.put_locked(actor, "limits", tenant_id, spec).await?;
        self.counters
            .flat(tenant_id)
            .ok_or_else(|| QuotaError::NotFound(tenant_id.to_owned()))
    }

    /// Zeroes the current periods of every counted resource of a node,
    /// written through. `Ok(None)` for an unknown node.
    pub async fn reset(
        &self,
        actor: &str,
        tenant_id: &str,
    ) -> Result<Option<TenantView>, QuotaError> {
        let _serialised = self.flusher.write_lock().await;
        let Some(node) = self
            .counters
            .node(tenant_id)
            .filter(|n| n.state != NodeState::Deleted)
        else {
            return Ok(None);
        };
        let now = self.now();
        let auto_reset = self.counters.auto_reset();
        let rows = usage_rows(tenant_id, &node, now, auto_reset, true);
        let before = usage_json(&node, now, auto_reset);
        let mut ops = Vec::new();
        if self.counters.is_unsaved(tenant_id) {
            // A flat tenant not flushed yet: its row must exist before its audit.
            ops.extend(node_ops(tenant_id, &node, now));
        }
        ops.push(WriteOp::Usage(rows));
        ops.push(self.audit(actor, "reset", tenant_id, Some(before), None));
        self.write(&ops).await?;
        let retired = self
            .counters
            .update(tenant_id, |n, _, now| n.reset_usage(now, auto_reset));
        self.counters.retire(tenant_id, retired.unwrap_or_default());
        self.counters.mark_dirty(tenant_id);
        Ok(self.counters.flat(tenant_id))
    }
}
