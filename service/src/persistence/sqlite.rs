//! The SQLite store: one file in WAL mode, migrations embedded in the binary.
//!
//! Writes are upserts of absolute values keyed by `(tenant_id, period,
//! quota_type)`: writing the same batch twice leaves the same rows, so a flush
//! that failed can simply be retried. Each batch is one transaction of
//! multi-row statements (1,000 rows per statement), not one statement per
//! counter.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};

use super::StoreError;
use crate::counters::{DirtyBatch, LoadedTenant, UsageRow};
use crate::domain::calendar::{parse_rfc3339, rfc3339};
use crate::domain::counter::{Counter, MAX_COUNT};
use crate::domain::tenant::{Limits, QuotaType};
use crate::domain::window::Period;

/// Rows per multi-row statement (5 parameters each, well under SQLite's
/// 32,766-parameter limit).
const ROWS_PER_STATEMENT: usize = 1_000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// A SQLite database holding the service's state.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating it and its directory on first run) and migrates the
    /// database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL survives a process crash (the OS has the
            // data); only a power loss may lose the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.display().to_string(),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore {
            pool,
            path: path.to_owned(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every tenant with its limits and the latest stored period of each
    /// counter.
    pub async fn load(&self) -> Result<Vec<LoadedTenant>, StoreError> {
        let limits: Vec<(String, i64, i64, String)> = sqlx::query_as(
            "SELECT tenant_id, message_limit, bandwidth_limit_bytes, updated_at FROM quota_limits",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut tenants: HashMap<String, LoadedTenant> = HashMap::with_capacity(limits.len());
        for (tenant_id, message_limit, bandwidth_limit_bytes, updated_at) in limits {
            let limits = Limits {
                message_limit: to_count("quota_limits", message_limit)?,
                bandwidth_limit_bytes: to_count("quota_limits", bandwidth_limit_bytes)?,
            };
            tenants.insert(
                tenant_id.clone(),
                LoadedTenant {
                    tenant_id,
                    limits,
                    messages: None,
                    bandwidth: None,
                    last_updated: parse_rfc3339(&updated_at),
                },
            );
        }

        let usage: Vec<(String, String, String, i64, String)> = sqlx::query_as(
            "SELECT u.tenant_id, u.quota_type, u.period, u.used, u.last_updated
               FROM quota_usage u
               JOIN (SELECT tenant_id, quota_type, MAX(period) AS period
                       FROM quota_usage GROUP BY tenant_id, quota_type) latest
                 ON u.tenant_id = latest.tenant_id
                AND u.quota_type = latest.quota_type
                AND u.period = latest.period",
        )
        .fetch_all(&self.pool)
        .await?;
        for (tenant_id, quota_type, period, used, last_updated) in usage {
            let corrupt = |detail: String| StoreError::Corrupt {
                table: "quota_usage",
                detail,
            };
            let quota_type = QuotaType::parse(&quota_type)
                .ok_or_else(|| corrupt(format!("unknown quota_type {quota_type:?}")))?;
            let period = Period::parse_key(quota_type.window(), &period)
                .ok_or_else(|| corrupt(format!("bad period {period:?} for {tenant_id}")))?;
            let counter = Counter {
                period,
                used: to_count("quota_usage", used)?,
            };
            // A usage row without a limits row cannot be written by the
            // service; skip it rather than invent limits.
            let Some(t) = tenants.get_mut(&tenant_id) else {
                continue;
            };
            match quota_type {
                QuotaType::Messages => t.messages = Some(counter),
                QuotaType::Bandwidth => t.bandwidth = Some(counter),
            }
            let ts = parse_rfc3339(&last_updated);
            t.last_updated = t.last_updated.max(ts);
        }
        Ok(tenants.into_values().collect())
    }

    /// Creates or replaces a tenant's limits (write-through).
    pub async fn upsert_limits(
        &self,
        tenant_id: &str,
        limits: Limits,
        now: i64,
    ) -> Result<(), StoreError> {
        let ts = rfc3339(now);
        sqlx::query(
            "INSERT INTO quota_limits (tenant_id, message_limit, bandwidth_limit_bytes, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (tenant_id) DO UPDATE SET
                 message_limit = excluded.message_limit,
                 bandwidth_limit_bytes = excluded.bandwidth_limit_bytes,
                 updated_at = excluded.updated_at",
        )
        .bind(tenant_id.to_owned())
        .bind(to_sql(limits.message_limit))
        .bind(to_sql(limits.bandwidth_limit_bytes))
        .bind(ts.clone())
        .bind(ts)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes a flush batch in one transaction: missing limits rows first
    /// (never overwriting explicit limits), then usage rows (for a row that
    /// appears twice, the later value wins).
    pub async fn write_batch(&self, batch: &DirtyBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;

        for chunk in batch.new_tenants.chunks(ROWS_PER_STATEMENT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO quota_limits (tenant_id, message_limit, bandwidth_limit_bytes, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, row| {
                let ts = rfc3339(row.created_at);
                b.push_bind(row.tenant_id.clone())
                    .push_bind(to_sql(row.limits.message_limit))
                    .push_bind(to_sql(row.limits.bandwidth_limit_bytes))
                    .push_bind(ts.clone())
                    .push_bind(ts);
            });
            q.push(" ON CONFLICT (tenant_id) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }

        let rows = latest_per_row(&batch.usage);
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) ",
            );
            q.push_values(chunk, |mut b, row| {
                b.push_bind(row.tenant_id.clone())
                    .push_bind(row.period.key())
                    .push_bind(row.quota_type.as_str())
                    .push_bind(to_sql(row.used))
                    .push_bind(rfc3339(row.last_updated));
            });
            q.push(
                " ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
                      used = excluded.used, last_updated = excluded.last_updated",
            );
            q.build().execute(&mut *tx).await?;
        }

        tx.commit().await?;
        Ok(())
    }

    /// Stored usage of one row (tests and tools).
    pub async fn stored_usage(
        &self,
        tenant_id: &str,
        quota_type: QuotaType,
        period: &str,
    ) -> Result<Option<u64>, StoreError> {
        let used: Option<(i64,)> = sqlx::query_as(
            "SELECT used FROM quota_usage WHERE tenant_id = ? AND quota_type = ? AND period = ?",
        )
        .bind(tenant_id.to_owned())
        .bind(quota_type.as_str())
        .bind(period.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        used.map(|(u,)| to_count("quota_usage", u)).transpose()
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Keeps the last occurrence of every `(tenant, quota type, period)`.
fn latest_per_row(rows: &[UsageRow]) -> Vec<&UsageRow> {
    let mut index: HashMap<(&str, QuotaType, Period), usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<&UsageRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match index.entry((row.tenant_id.as_str(), row.quota_type, row.period)) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = row,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(row);
            }
        }
    }
    out
}

fn to_sql(n: u64) -> i64 {
    // Counters and limits never pass MAX_COUNT (= i64::MAX).
    i64::try_from(n.min(MAX_COUNT)).unwrap_or(i64::MAX)
}

fn to_count(table: &'static str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt {
        table,
        detail: format!("negative value {n}"),
    })
}
