//! Usage into the database: flush batches of deltas, and strict usage.
//!
//! A flush adds each counter's delta to its stored row
//! (`used = used + delta`), so replicas sharing a database never overwrite
//! each other. Adding is not idempotent, so every flush carries a sequence
//! number and records `(replica_id, seq)` in `quota_flush_log` in the same
//! transaction. A flush whose commit outcome is unknown is kept and sent
//! again with the next one: the log, read after taking the clock lock (so a
//! still-running earlier attempt has finished), says whether it was applied.
//!
//! Strict nodes skip the flush: each usage call adds to the row in the
//! database with the limit check in the same statement
//! ([`Store::add_within`]).

use super::{Sql, Store, StoreError, bump_clock, quota_type, to_count, to_sql};
use crate::counters::{DirtyBatch, UsageDelta};
use crate::domain::calendar::{rfc3339, rfc3339_stamp};
use crate::domain::window::Period;

/// How long flush log rows of other (long gone) replicas are kept.
const FLUSH_LOG_RETENTION_SECS: i64 = 7 * 86_400;

/// A flush batch with its sequence number (unique per replica).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SentBatch {
    pub seq: u64,
    pub batch: DirtyBatch,
}

/// What a flush wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    pub usage_rows: usize,
    pub new_tenants: usize,
    /// Earlier batches the flush log showed as applied (not written again).
    pub already_applied: Vec<u64>,
}

/// A strict addition that would pass a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictRefusal {
    pub resource: String,
    pub requested: u64,
    pub available: u64,
}

/// One strict addition: `amount` to the node's row of `resource` in
/// `period`, refused if the row would pass `cap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictAdd {
    pub resource: String,
    pub period: Period,
    pub amount: u64,
    pub cap: u64,
}

impl Store {
    /// Writes `current` and the `unconfirmed` earlier batches (whose writes
    /// failed with an unknown outcome) in one transaction, skipping those the
    /// flush log shows as applied.
    pub async fn write_flush(
        &self,
        replica: &str,
        unconfirmed: &[SentBatch],
        current: &SentBatch,
        now: i64,
    ) -> Result<FlushOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        // First: this waits for any earlier attempt still holding the lock.
        let version = bump_clock(&mut tx).await?;

        let mut already_applied = Vec::new();
        if !unconfirmed.is_empty() {
            let mut q = Sql::new(
                self.backend,
                "SELECT seq FROM quota_flush_log WHERE replica_id = ",
            );
            q.bind(replica.to_owned()).push(" AND seq IN (");
            for (i, b) in unconfirmed.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.bind(to_sql(b.seq));
            }
            q.push(")");
            let (sql, args) = q.into_parts();
            let applied: Vec<(i64,)> = sqlx::query_as_with(sql, args).fetch_all(&mut *tx).await?;
            already_applied = applied.into_iter().map(|(s,)| s as u64).collect();
        }
        let pending: Vec<&DirtyBatch> = unconfirmed
            .iter()
            .filter(|b| !already_applied.contains(&b.seq))
            .map(|b| &b.batch)
            .chain(std::iter::once(&current.batch))
            .collect();

        let mut new_tenants = 0;
        for b in &pending {
            new_tenants += b.new_tenants.len();
            super::write::insert_new_tenants(&mut tx, self.backend, &b.new_tenants, version)
                .await?;
        }
        let deltas = merge(pending.iter().flat_map(|b| b.usage.iter()));
        if !deltas.is_empty() {
            // One statement for the whole flush: the rows travel as one JSON
            // parameter (one round trip, no per-row parameters to bind), in
            // key order (merge sorts them): the upsert then walks the unique
            // index in order instead of at random (a third less time for a
            // million rows).
            let json = rows_json(&deltas)?;
            let mut q = Sql::new(
                self.backend,
                "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated, version)
                 SELECT value ->> 0, value ->> 1, value ->> 2, CAST(value ->> 3 AS BIGINT), value ->> 4, ",
            );
            q.bind(version).push(" FROM ");
            q.json_rows(json);
            // The version is what other replicas refresh by; a SQLite file
            // has no other replicas, and leaving the indexed column alone
            // saves an index update per row. (`WHERE true` lets SQLite parse
            // ON CONFLICT after a SELECT.)
            q.push(if self.backend.shared() {
                " WHERE true ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
                      used = quota_usage.used + excluded.used,
                      last_updated = excluded.last_updated, version = excluded.version"
            } else {
                " WHERE true ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
                      used = quota_usage.used + excluded.used,
                      last_updated = excluded.last_updated"
            });
            let (sql, args) = q.into_parts();
            sqlx::query_with(sql, args).execute(&mut *tx).await?;
        }

        sqlx::query(
            "INSERT INTO quota_flush_log (replica_id, seq, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(replica.to_owned())
        .bind(to_sql(current.seq))
        .bind(rfc3339(now))
        .execute(&mut *tx)
        .await?;
        // Only the latest row of this replica is ever asked about again.
        sqlx::query(
            "DELETE FROM quota_flush_log WHERE (replica_id = $1 AND seq < $2) OR applied_at < $3",
        )
        .bind(replica.to_owned())
        .bind(to_sql(current.seq))
        .bind(rfc3339(now - FLUSH_LOG_RETENTION_SECS))
        .execute(&mut *tx)
        .await?;
        tx.commit().await.map_err(StoreError::CommitUnknown)?;
        Ok(FlushOutcome {
            usage_rows: deltas.len(),
            new_tenants,
            already_applied,
        })
    }

    /// Adds every item to the node's stored rows, each only if the row stays
    /// within its `cap` (the check and the addition in one statement), all or
    /// nothing. Returns the new totals, in order, or the first refusal.
    pub async fn add_within(
        &self,
        node_id: &str,
        items: &[StrictAdd],
        now: i64,
    ) -> Result<Result<Vec<u64>, StrictRefusal>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut totals = Vec::with_capacity(items.len());
        for item in items {
            let refused = |used: u64| StrictRefusal {
                resource: item.resource.clone(),
                requested: item.amount,
                available: item.cap.saturating_sub(used),
            };
            if item.amount > item.cap {
                tx.rollback().await?;
                return Ok(Err(refused(0)));
            }
            let total: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated, version)
                 VALUES ($1, $2, $3, $4, $5, 0)
                 ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
                     used = quota_usage.used + excluded.used, last_updated = excluded.last_updated
                 WHERE quota_usage.used <= $6 - excluded.used
                 RETURNING used",
            )
            .bind(node_id.to_owned())
            .bind(item.period.key())
            .bind(quota_type(&item.resource).to_owned())
            .bind(to_sql(item.amount))
            .bind(rfc3339(now))
            .bind(to_sql(item.cap))
            .fetch_optional(&mut *tx)
            .await?;
            match total {
                Some((t,)) => totals.push(to_count("quota_usage", t)?),
                None => {
                    let (used,): (i64,) = sqlx::query_as(
                        "SELECT used FROM quota_usage WHERE tenant_id = $1 AND period = $2 AND quota_type = $3",
                    )
                    .bind(node_id.to_owned())
                    .bind(item.period.key())
                    .bind(quota_type(&item.resource).to_owned())
                    .fetch_one(&mut *tx)
                    .await?;
                    tx.rollback().await?;
                    return Ok(Err(refused(to_count("quota_usage", used)?)));
                }
            }
        }
        tx.commit().await.map_err(StoreError::CommitUnknown)?;
        Ok(Ok(totals))
    }
}

/// The merged rows as the JSON array of arrays the upsert reads
/// (`[["node","period key","quota type",delta,"last updated"],...]`),
/// written in one pass into one buffer: a million rows went through a
/// million-element vector of tuples and serde before.
fn rows_json(deltas: &[Merged<'_>]) -> Result<String, StoreError> {
    let mut out = Vec::with_capacity(deltas.len() * 72 + 2);
    out.push(b'[');
    for (i, m) in deltas.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        // Node ids are validated, but escape them as any text.
        serde_json::to_writer(&mut out, m.row.node_id.as_str()).map_err(|e| {
            StoreError::Corrupt {
                table: "(batch)",
                detail: format!("cannot encode rows as JSON: {e}"),
            }
        })?;
        // Stamps and quota types never hold a byte JSON escapes.
        out.extend_from_slice(b",\"");
        out.extend_from_slice(m.row.period.key_stamp().as_bytes());
        out.extend_from_slice(b"\",\"");
        out.extend_from_slice(quota_type(&m.row.resource).as_bytes());
        out.extend_from_slice(b"\",");
        out.extend_from_slice(itoa::Buffer::new().format(to_sql(m.delta)).as_bytes());
        out.extend_from_slice(b",\"");
        out.extend_from_slice(rfc3339_stamp(m.last_updated).as_bytes());
        out.extend_from_slice(b"\"]");
    }
    out.push(b']');
    String::from_utf8(out).map_err(|e| StoreError::Corrupt {
        table: "(batch)",
        detail: format!("rows are not UTF-8: {e}"),
    })
}

/// One stored row's total delta over the batches of a flush.
#[derive(Debug, PartialEq, Eq)]
struct Merged<'a> {
    /// The first delta of the row (its key).
    row: &'a UsageDelta,
    delta: u64,
    last_updated: i64,
}

/// Sums the deltas of the same row (node, resource, period), in key order.
/// Sorting, then folding neighbours: no hash map, no copy of the deltas (a
/// million-row flush spent a fifth of its time hashing and cloning here).
fn merge<'a>(deltas: impl Iterator<Item = &'a UsageDelta>) -> Vec<Merged<'a>> {
    let mut sorted: Vec<&UsageDelta> = deltas.collect();
    // The whole period is the key (its window too): periods of two windows
    // can start at the same second, and the fold merges neighbours only.
    fn key(d: &UsageDelta) -> (&str, &str, i64, u8) {
        (
            d.node_id.as_str(),
            &d.resource,
            d.period.start(),
            d.period.window() as u8,
        )
    }
    sorted.sort_unstable_by(|a, b| key(a).cmp(&key(b)));
    let mut out: Vec<Merged<'a>> = Vec::with_capacity(sorted.len());
    for d in sorted {
        match out.last_mut() {
            Some(m)
                if m.row.node_id == d.node_id
                    && m.row.resource == d.resource
                    && m.row.period == d.period =>
            {
                m.delta = m.delta.saturating_add(d.delta);
                m.last_updated = m.last_updated.max(d.last_updated);
            }
            _ => out.push(Merged {
                row: d,
                delta: d.delta,
                last_updated: d.last_updated,
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::window::Window;

    fn d(node: &str, period: Period, delta: u64, at: i64) -> UsageDelta {
        UsageDelta {
            node_id: node.into(),
            resource: "messages".into(),
            period,
            delta,
            last_updated: at,
        }
    }

    #[test]
    fn rows_are_the_json_serde_writes_for_them() {
        let today = Window::Day.period_at(86_400 * 20_000);
        let month = Window::Month.period_at(86_400 * 20_000);
        let mut bw = d("quo\"te", month, 512, 9);
        bw.resource = "bandwidth".into();
        let rows = [d("a", today, 3, 1), bw, d("b", today, u64::MAX / 2, 2)];
        let merged = merge(rows.iter());
        let expected: Vec<(&str, String, &str, i64, String)> = merged
            .iter()
            .map(|m| {
                (
                    m.row.node_id.as_str(),
                    m.row.period.key(),
                    quota_type(&m.row.resource),
                    to_sql(m.delta),
                    rfc3339(m.last_updated),
                )
            })
            .collect();
        assert_eq!(
            rows_json(&merged).unwrap_or_default(),
            serde_json::to_string(&expected).unwrap_or_default()
        );
        assert_eq!(rows_json(&[]).unwrap_or_default(), "[]");
    }

    #[test]
    fn merge_sums_the_same_row_and_keeps_others_apart() {
        let today = Window::Day.period_at(86_400 * 20_000);
        let tomorrow = Window::Day.period_at(86_400 * 20_001);
        let rows = [
            d("a", today, 3, 1),
            d("b", today, 1, 2),
            d("a", today, 4, 5),
            d("a", tomorrow, 2, 6),
        ];
        let merged: Vec<(&str, Period, u64, i64)> = merge(rows.iter())
            .into_iter()
            .map(|m| {
                (
                    m.row.node_id.as_str(),
                    m.row.period,
                    m.delta,
                    m.last_updated,
                )
            })
            .collect();
        assert_eq!(
            merged,
            vec![
                ("a", today, 7, 5),
                ("a", tomorrow, 2, 6),
                ("b", today, 1, 2)
            ]
        );
    }

    #[test]
    fn merge_keeps_periods_of_two_windows_apart_even_when_they_start_together() {
        let start = 86_400 * 20_000;
        let day = Window::Day.period_at(start);
        let hour = Window::Hour.period_at(start);
        assert_eq!(day.start(), hour.start());
        // Interleaved in every order the sort could meet them.
        let rows = [
            d("a", day, 1, 1),
            d("a", hour, 10, 2),
            d("a", day, 2, 3),
            d("a", hour, 20, 4),
            d("a", day, 4, 5),
        ];
        let mut merged: Vec<(Period, u64)> = merge(rows.iter())
            .into_iter()
            .map(|m| (m.row.period, m.delta))
            .collect();
        merged.sort_by_key(|(p, _)| p.window() as u8);
        assert_eq!(merged, vec![(hour, 30), (day, 7)]);
    }
}
