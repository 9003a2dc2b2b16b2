//! Usage calls of the v1 API: consume and increment, in memory or, for a
//! strict node, in the database.

use super::*;

impl Quotas {
    /// Atomic check-and-increment over every resource in `usage`, answering
    /// what is left of each limit counted against when the RateLimit fields
    /// are on (empty otherwise). Awaits only for a strict node.
    pub async fn consume<'a>(
        &self,
        id: &str,
        usage: &[(&'a str, u64)],
    ) -> Result<Headrooms<'a>, QuotaError> {
        let headroom = self.ratelimit_fields;
        match self.counters.consume(id, usage, headroom) {
            Err(UsageError::Strict(_)) => {
                self.usage_strict(id, usage, true).await?;
                Ok(match headroom {
                    true => self.counters.headroom(id, usage),
                    false => Headrooms::new(),
                })
            }
            other => Ok(other?),
        }
    }

    /// Tracking increment over every resource in `usage` (batch). Awaits
    /// only for a strict node.
    pub async fn increment_node(&self, id: &str, usage: &[(&str, u64)]) -> Result<(), QuotaError> {
        match self.counters.increment(id, usage) {
            Err(UsageError::Strict(_)) => self.usage_strict(id, usage, false).await,
            other => Ok(other?),
        }
    }

    /// Usage of a strict node: added in the database, checked against
    /// `max - allocated` in the same statement when `enforce`; memory then
    /// takes the totals the database returned.
    pub(super) async fn usage_strict(
        &self,
        id: &str,
        usage: &[(&str, u64)],
        enforce: bool,
    ) -> Result<(), QuotaError> {
        let items = self.counters.plan_strict(id, usage, enforce)?;
        let adds: Vec<StrictAdd> = items
            .iter()
            .map(|i| StrictAdd {
                resource: i.resource.to_string(),
                period: i.period,
                amount: i.amount,
                cap: i.cap,
            })
            .collect();
        let now = self.now();
        match self.db.add_within(id, &adds, now).await {
            Err(e) => {
                self.flusher.record_failure(&e);
                Err(e.into())
            }
            Ok(Err(refused)) => {
                let period = items
                    .iter()
                    .find(|i| *i.resource == *refused.resource)
                    .map(|i| i.period);
                if enforce {
                    Err(Refusal::Exhausted {
                        resource: refused.resource,
                        requested: refused.requested,
                        available: refused.available,
                        retry_after_secs: period.and_then(|p| p.secs_until_end(now)),
                    }
                    .into())
                } else {
                    Err(Refusal::Overflow {
                        resource: refused.resource,
                    }
                    .into())
                }
            }
            Ok(Ok(totals)) => {
                let totals: Vec<(&str, Period, u64)> = items
                    .iter()
                    .zip(totals)
                    .map(|(i, t)| (&*i.resource, i.period, t))
                    .collect();
                self.counters.set_totals(id, &totals);
                Ok(())
            }
        }
    }
}
