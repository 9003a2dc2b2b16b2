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

use super::key_order::KeyOrder;
use super::row_json::{rows_json, rows_jsonb};
use super::{Backend, Sql, Store, StoreError, bump_clock, quota_type, to_count, to_sql};
use crate::domain::calendar::rfc3339;
use crate::domain::counter::RowId;
use crate::domain::resource::ResourceName;
use crate::domain::window::Period;
use crate::rows::{DirtyBatch, StoredRows, UsageDelta, UsageDeltas};
use sqlx::error::ErrorKind;

/// How long flush log rows of other (long gone) replicas are kept.
const FLUSH_LOG_RETENTION_SECS: i64 = 7 * 86_400;

/// Usage rows per chunk of a flush (about 2.5 MB of JSON).
pub(super) const CHUNK: usize = 50_000;

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
    /// Ids of rows written by key (SQLite), for the counters to remember.
    pub learned: StoredRows,
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
    pub async fn write_flush<'a>(
        &self,
        replica: &str,
        unconfirmed: &'a [SentBatch],
        current: &'a SentBatch,
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
        let usage: Vec<&UsageDeltas> = pending.iter().map(|b| &b.usage).collect();
        // The rows go in chunks, in key order, and the next chunk is sorted
        // and written while SQLite (its own worker thread) or PostgreSQL
        // adds this one: the two halves of a big flush run side by side
        // instead of one after the other, and no chunk needs one huge
        // buffer (a 1,000,000-row flush as one statement spent a sixth of
        // its time having the kernel zero fresh pages for its 72 MB of JSON).
        let mut chunks = KeyOrder::new(&usage, self.flush_chunk);
        let mut usage_rows = 0;
        let mut learned = StoredRows::default();
        let mut prepare = |chunk: Vec<UsageDelta<'a>>| {
            usage_rows += chunk.len();
            usage_statements(self.backend, &chunk, version)
        };
        let mut next = chunks.next().map(&mut prepare).transpose()?;
        while let Some(statements) = next.take() {
            // `join` polls in order: the first poll hands the chunk's first
            // statement to the database, then the next chunk is written
            // meanwhile.
            let (added, prepared) = futures::future::join(
                async {
                    for statement in statements {
                        statement.execute(&mut tx, &mut learned).await?;
                    }
                    Ok::<_, sqlx::Error>(())
                },
                async { chunks.next().map(&mut prepare).transpose() },
            )
            .await;
            added?;
            next = prepared?;
        }

        move_deleted_children(&mut tx, self.backend, &pending, version, now).await?;

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
            usage_rows,
            new_tenants,
            already_applied,
            learned,
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

/// One statement of a flush chunk, with what to do with its answer.
enum UsageStatement<'a> {
    /// Adds to the rows, found by key, inserting those not stored yet;
    /// on SQLite then learns their ids ([`Learn`]).
    ByKey { q: Sql, learn: Option<Learn<'a>> },
    /// SQLite: adds to rows addressed by the ids the counters remember.
    /// If an id is another key's row (never, unless the table was changed
    /// behind the service's back), the statement fails on the `used >= 0`
    /// check (it sets -1), or, an id no row has, on the unique key its
    /// insert would break; either way it changes nothing and `by_key`
    /// writes the same rows by key, learning their ids again.
    ById {
        q: Sql,
        by_key: Box<UsageStatement<'a>>,
    },
}

/// The rows of a by-key statement whose ids the counters should learn:
/// those of `resource` in `period`, node ids in the statement's order.
///
/// SQLite inserts the rows of `INSERT ... SELECT` in the order the SELECT
/// yields them (here `jsonb_each`, in the object's order), and, holding
/// the only write lock, gives the `i`th row id `start + 1 + i`, `start`
/// being the largest id handed out before (AUTOINCREMENT; a row that
/// turns into an update uses up its number too). So when the statement
/// left exactly as many rows above `start` as it had, the first and last
/// of them being the first and last node, all were inserted and their ids
/// follow from their places; otherwise one SELECT reads the ids by key.
/// `RETURNING` every row through sqlx cost more than the rest of a large
/// first flush (docs/perf-history/04-fourth-pass-rows-by-id.md). (An id
/// learned wrong would only cost speed: the flush checks every id it uses.)
struct Learn<'a> {
    resource: ResourceName,
    period: Period,
    qtype: String,
    node_ids: Vec<&'a str>,
}

// === impl UsageStatement ===

impl UsageStatement<'_> {
    async fn execute(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        learned: &mut StoredRows,
    ) -> Result<(), sqlx::Error> {
        match self {
            UsageStatement::ByKey { q, learn } => {
                let start = match &learn {
                    Some(_) => last_row_id(tx).await?,
                    None => 0,
                };
                let (sql, args) = q.into_parts();
                sqlx::query_with(sql, args).execute(&mut **tx).await?;
                if let Some(learn) = learn {
                    learn.read_ids(tx, start, learned).await?;
                }
            }
            UsageStatement::ById { q, by_key } => {
                let (sql, args) = q.into_parts();
                match sqlx::query_with(sql, args).execute(&mut **tx).await {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e))
                        if matches!(
                            e.kind(),
                            ErrorKind::CheckViolation | ErrorKind::UniqueViolation
                        ) =>
                    {
                        tracing::warn!(
                            error = %e,
                            "stored row ids did not match their rows; writing the rows by key"
                        );
                        Box::pin(by_key.execute(tx, learned)).await?;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

// === impl Learn ===

impl Learn<'_> {
    /// Adds the rows' ids to `learned`, `start` being the largest id
    /// handed out before the statement ([`last_row_id`]).
    async fn read_ids(
        self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        start: i64,
        learned: &mut StoredRows,
    ) -> Result<(), sqlx::Error> {
        learned.start_group(&self.resource, self.period);
        let n = i64::try_from(self.node_ids.len()).unwrap_or(i64::MAX);
        let (above, first, last): (i64, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM quota_usage WHERE id > $1),
                    (SELECT tenant_id FROM quota_usage WHERE id = $2),
                    (SELECT tenant_id FROM quota_usage WHERE id = $3)",
        )
        .bind(start)
        .bind(start.saturating_add(1))
        .bind(start.saturating_add(n))
        .fetch_one(&mut **tx)
        .await?;
        let all_inserted = above == n
            && first.as_deref() == self.node_ids.first().copied()
            && last.as_deref() == self.node_ids.last().copied();
        if all_inserted {
            for (id, row) in self.node_ids.iter().zip(start.saturating_add(1)..) {
                if let Some(row) = RowId::new(row) {
                    learned.push(id, row);
                }
            }
            return Ok(());
        }
        let ids = serde_json::to_string(&self.node_ids).unwrap_or_default();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT u.tenant_id, u.id FROM json_each($1) AS j
               JOIN quota_usage u ON u.tenant_id = j.value AND u.period = $2 AND u.quota_type = $3",
        )
        .bind(ids)
        .bind(self.period.key())
        .bind(self.qtype)
        .fetch_all(&mut **tx)
        .await?;
        for (id, row) in rows {
            if let Some(row) = RowId::new(row) {
                learned.push(&id, row);
            }
        }
        Ok(())
    }
}

/// The largest `quota_usage` id handed out so far (SQLite): the next
/// insert gets the one after it.
/// Usage this flush added to children that another replica deleted
/// meanwhile (the delete moved their rows to the parent before these
/// deltas arrived): moved to the parent the same way, so a deleted child's
/// usage ends up charged to its parent wherever it was counted. Only the
/// current period's rows (the delete moved those); the deltas' nodes with
/// a parent are asked about (`DirtyBatch::children`), flat tenants never.
async fn move_deleted_children(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    backend: Backend,
    batches: &[&DirtyBatch],
    version: i64,
    now: i64,
) -> Result<(), StoreError> {
    let mut children: Vec<&str> = batches
        .iter()
        .flat_map(|b| b.children.iter().map(String::as_str))
        .collect();
    if children.is_empty() {
        return Ok(());
    }
    children.sort_unstable();
    children.dedup();
    let mut q = Sql::new(
        backend,
        "SELECT id, parent_id FROM quota_nodes WHERE state = 'deleted' AND parent_id IS NOT NULL AND id IN (",
    );
    for (i, id) in children.iter().enumerate() {
        if i > 0 {
            q.push(", ");
        }
        q.bind((*id).to_owned());
    }
    q.push(")");
    let (sql, args) = q.into_parts();
    let deleted: Vec<(String, String)> =
        sqlx::query_as_with(sql, args).fetch_all(&mut **tx).await?;
    for (child, parent) in deleted {
        let mut rows: Vec<crate::rows::UsageRow> = Vec::new();
        for d in batches.iter().flat_map(|b| b.usage.iter()) {
            let current = d.period == d.period.window().period_at(now);
            let seen = rows
                .iter()
                .any(|r| r.resource == *d.resource && r.period == d.period);
            if d.node_id == child && current && !seen {
                rows.push(crate::rows::UsageRow {
                    node_id: child.clone(),
                    resource: d.resource.clone(),
                    period: d.period,
                    used: 0,
                    last_updated: d.last_updated,
                });
            }
        }
        super::write::move_usage(tx, backend, &parent, &rows, version).await?;
    }
    Ok(())
}

async fn last_row_id(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> Result<i64, sqlx::Error> {
    let (id,): (i64,) = sqlx::query_as(
        "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'quota_usage'), 0),
                    coalesce((SELECT max(id) FROM quota_usage), 0))",
    )
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// The statements adding one chunk of merged rows: per period and quota
/// type in it (usually one or two), `used = used + delta` for its rows.
///
/// The rows travel as one JSON object keyed by node id (see
/// [`rows_json`]): one round trip, no per-row parameters to bind, and
/// per row SQLite extracts two or three values instead of five (a third
/// of the statement's time went to `->>`). The chunk is in key order
/// (merge sorts it), so the statements walk the unique index in order
/// instead of at random, and the statements of one chunk find its pages
/// still in the cache.
///
/// On SQLite, rows whose ids the counters know are upserted by id: one
/// B-tree seek per row instead of the unique index and then the table
/// (statements 0.7x the time). The rest go by key, and their ids are
/// learned for the next flush ([`Learn`]).
/// PostgreSQL always goes by key.
fn usage_statements<'a>(
    backend: Backend,
    chunk: &[UsageDelta<'a>],
    version: i64,
) -> Result<Vec<UsageStatement<'a>>, StoreError> {
    let mut out = Vec::new();
    for (period, qtype, rows) in by_statement(chunk) {
        let resource = rows.first().map(|m| m.resource.clone());
        let (by_id, by_key): (Vec<_>, Vec<_>) = match backend {
            Backend::Sqlite => rows.into_iter().partition(|m| m.stored_row.is_some()),
            Backend::Postgres => (Vec::new(), rows),
        };
        let learn = |rows: &[&UsageDelta<'a>]| match (backend, &resource) {
            (Backend::Sqlite, Some(resource)) => Some(Learn {
                resource: resource.clone(),
                period,
                qtype: qtype.to_owned(),
                node_ids: rows.iter().map(|m| m.node_id).collect(),
            }),
            _ => None,
        };
        if !by_id.is_empty() {
            let blob = rows_jsonb(&by_id, true)?;
            let mut q = Sql::new(
                backend,
                "INSERT INTO quota_usage (id, tenant_id, period, quota_type, used, last_updated, version)
                 SELECT j.value ->> 0, j.key, ",
            );
            q.bind(period.key())
                .push(", ")
                .bind(qtype.to_owned())
                .push(", j.value ->> 1, j.value ->> 2, ")
                .bind(version)
                .push(" FROM jsonb_each(")
                .bind(blob.clone())
                .push(
                    ") AS j WHERE true ON CONFLICT (id) DO UPDATE SET
                         used = CASE WHEN quota_usage.tenant_id = excluded.tenant_id
                                      AND quota_usage.period = excluded.period
                                      AND quota_usage.quota_type = excluded.quota_type
                                THEN quota_usage.used + excluded.used ELSE -1 END,
                         last_updated = excluded.last_updated",
                );
            let mut fallback = insert_rows(backend, period, qtype, version, 1);
            fallback.push("jsonb_each(").bind(blob).push(") AS j");
            out.push(UsageStatement::ById {
                q,
                by_key: Box::new(UsageStatement::ByKey {
                    q: upsert_by_key(fallback, backend),
                    learn: learn(&by_id),
                }),
            });
        }
        if !by_key.is_empty() {
            let mut q = insert_rows(backend, period, qtype, version, 0);
            match backend {
                Backend::Postgres => {
                    q.push("json_each(CAST(")
                        .bind(rows_json(&by_key)?)
                        .push(" AS json)) AS j");
                }
                // Bound as JSONB, SQLite's binary JSON, which it reads
                // without parsing (text took a tenth of the statement).
                Backend::Sqlite => {
                    q.push("jsonb_each(")
                        .bind(rows_jsonb(&by_key, false)?)
                        .push(") AS j");
                }
            }
            out.push(UsageStatement::ByKey {
                q: upsert_by_key(q, backend),
                learn: learn(&by_key),
            });
        }
    }
    Ok(out)
}

/// `INSERT INTO quota_usage ... SELECT ... FROM ` for rows of one period
/// and quota type, the row source (`j`, keyed by node id, values arrays
/// with the delta and stamp from index `at`) still to append.
fn insert_rows(backend: Backend, period: Period, qtype: &str, version: i64, at: usize) -> Sql {
    let mut q = Sql::new(
        backend,
        "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated, version)
         SELECT j.key, ",
    );
    q.bind(period.key())
        .push(", ")
        .bind(qtype.to_owned())
        .push(&format!(
            ", CAST(j.value ->> {at} AS BIGINT), j.value ->> {}, ",
            at + 1
        ))
        .bind(version)
        .push(" FROM ");
    q
}

/// Finishes [`insert_rows`] as an upsert on the key.
fn upsert_by_key(mut q: Sql, backend: Backend) -> Sql {
    // The version is what other replicas refresh by; a SQLite file has no
    // other replicas, and leaving the indexed column alone saves an index
    // update per row. (`WHERE true` lets SQLite parse ON CONFLICT after a
    // SELECT.)
    q.push(if backend.shared() {
        " WHERE true ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
              used = quota_usage.used + excluded.used,
              last_updated = excluded.last_updated, version = excluded.version"
    } else {
        " WHERE true ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
              used = quota_usage.used + excluded.used,
              last_updated = excluded.last_updated"
    });
    q
}

/// The rows of a chunk grouped by period and quota type, groups in the
/// order the chunk first meets them, rows in chunk order.
type Group<'c, 'a> = (Period, &'c str, Vec<&'c UsageDelta<'a>>);

fn by_statement<'c, 'a>(chunk: &'c [UsageDelta<'a>]) -> Vec<Group<'c, 'a>> {
    let mut groups: Vec<Group<'c, 'a>> = Vec::new();
    for m in chunk {
        let qtype = quota_type(m.resource);
        match groups
            .iter_mut()
            .find(|(p, q, _)| *p == m.period && *q == qtype)
        {
            Some((_, _, rows)) => rows.push(m),
            None => groups.push((m.period, qtype, vec![m])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::domain::resource::ResourceName;
    use crate::domain::window::Window;
    use crate::rows::messages_delta as d;

    static BANDWIDTH: LazyLock<ResourceName> = LazyLock::new(|| "bandwidth".into());

    #[test]
    fn a_chunk_makes_one_statement_per_period_and_quota_type() {
        let today = Window::Day.period_at(86_400 * 20_000);
        let yesterday = Window::Day.period_at(86_400 * 19_999);
        let month = Window::Month.period_at(86_400 * 20_000);
        let mut bw = d("a", month, 5, 1);
        bw.resource = &BANDWIDTH;
        let deltas: UsageDeltas = [
            d("b", today, 3, 1),
            bw,
            d("a", yesterday, 2, 1),
            d("a", today, 1, 1),
        ]
        .into_iter()
        .collect();
        let chunk: Vec<UsageDelta<'_>> = KeyOrder::new(&[&deltas], 100).flatten().collect();
        type Rows<'a> = Vec<(&'a str, u64)>;
        let groups: Vec<(Period, &str, Rows<'_>)> = by_statement(&chunk)
            .into_iter()
            .map(|(p, q, rows)| (p, q, rows.iter().map(|m| (m.node_id, m.delta)).collect()))
            .collect();
        // In the order the chunk first meets them (a's rows sort by
        // resource, then period), each in key order.
        assert_eq!(
            groups,
            vec![
                (month, "bandwidth", vec![("a", 5)]),
                (yesterday, "message_count", vec![("a", 2)]),
                (today, "message_count", vec![("a", 1), ("b", 3)]),
            ]
        );
        let statements = usage_statements(Backend::Sqlite, &chunk, 7).unwrap_or_default();
        assert_eq!(statements.len(), 3);
    }
}
