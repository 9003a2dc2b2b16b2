//! The SQLite store: one file in WAL mode, migrations embedded in the binary.
//!
//! Two kinds of writes:
//! - **flush batches** of usage counters: upserts of absolute values keyed by
//!   `(tenant_id, period, quota_type)`, so writing the same batch twice leaves
//!   the same rows and a failed flush can simply be retried; one transaction
//!   of multi-row statements (1,000 rows each), not one statement per counter;
//! - **write-through operations** ([`WriteOp`]): nodes, limits, states,
//!   claims, grants and their audit records, one transaction per API call,
//!   committed before the call answers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool, Transaction};

use super::StoreError;
use crate::counters::{Claim, DirtyBatch, LoadedNode, UsageRow};
use crate::domain::calendar::{parse_rfc3339, rfc3339};
use crate::domain::counter::{Counter, MAX_COUNT};
use crate::domain::node::{Limit, Node, NodeState};
use crate::domain::resource::MESSAGES;
use crate::domain::window::{Period, Window};

/// Rows per multi-row statement (at most 7 parameters each, well under
/// SQLite's 32,766-parameter limit).
const ROWS_PER_STATEMENT: usize = 1_000;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");

/// One change written through to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Creates or replaces a node row.
    UpsertNode {
        id: String,
        parent: Option<String>,
        state: NodeState,
        name: Option<String>,
        description: Option<String>,
        created_at: i64,
        updated_at: i64,
    },
    /// Replaces all of a node's limits.
    ReplaceLimits {
        node_id: String,
        limits: Vec<(String, Limit)>,
    },
    InsertClaim {
        node_id: String,
        resource_id: String,
        claim: Claim,
    },
    DeleteClaim {
        node_id: String,
        resource_id: String,
    },
    /// Re-homes every claim of `from` to `to` (a deleted child's claims).
    MoveClaims {
        from: String,
        to: String,
    },
    InsertGrant {
        node_id: String,
        subject: String,
        role: String,
        created_at: i64,
    },
    DeleteGrant {
        node_id: String,
        subject: String,
        role: String,
    },
    /// Usage rows (absolute values), e.g. a reset.
    Usage(Vec<UsageRow>),
    /// Moves a node's `updated_at` (a change that is not in its row, e.g. a claim).
    Touch {
        node_id: String,
        at: i64,
    },
    Audit(AuditRecord),
}

/// One audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub ts: i64,
    pub actor: String,
    pub action: String,
    pub node_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// An audit row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    pub id: i64,
    pub record: AuditRecord,
}

/// A grant as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRow {
    pub subject: String,
    pub role: String,
    pub created_at: i64,
}

/// A SQLite database holding the service's state.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

/// `quota_usage.quota_type` of a resource (the flat tracker named messages
/// `message_count`).
fn quota_type(resource: &str) -> &str {
    if resource == MESSAGES {
        "message_count"
    } else {
        resource
    }
}

fn resource_of(quota_type: &str) -> &str {
    if quota_type == "message_count" {
        MESSAGES
    } else {
        quota_type
    }
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

    /// Every node with its limits, the latest stored period of each counted
    /// resource, and its claims (a capacity's usage is the sum of its claims).
    pub async fn load(&self, now: i64) -> Result<Vec<LoadedNode>, StoreError> {
        type NodeRow = (
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
            String,
            String,
        );
        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT id, parent_id, state, name, description, created_at, updated_at FROM quota_nodes",
        )
        .fetch_all(&self.pool)
        .await?;

        let limit_rows: Vec<(String, String, i64, String)> =
            sqlx::query_as("SELECT node_id, resource, max, window FROM quota_node_limits")
                .fetch_all(&self.pool)
                .await?;
        let mut limits: HashMap<String, Vec<(String, Limit)>> = HashMap::new();
        for (node_id, resource, max, window) in limit_rows {
            let window: Window = window
                .parse()
                .map_err(|e| corrupt("quota_node_limits", format!("{e}")))?;
            limits.entry(node_id).or_default().push((
                resource,
                Limit {
                    max: to_count("quota_node_limits", max)?,
                    window,
                },
            ));
        }

        let mut nodes: HashMap<String, LoadedNode> = HashMap::with_capacity(rows.len());
        for (id, parent, state, name, description, created_at, updated_at) in rows {
            let state = NodeState::parse(&state).ok_or_else(|| {
                corrupt("quota_nodes", format!("unknown state {state:?} of {id}"))
            })?;
            let created = parse_rfc3339(&created_at).unwrap_or(now);
            let mut node = Node::new(
                parent.as_deref(),
                limits.get(&id).map(Vec::as_slice).unwrap_or(&[]),
                created,
            );
            node.state = state;
            node.name = name;
            node.description = description;
            node.last_updated = parse_rfc3339(&updated_at);
            nodes.insert(
                id.clone(),
                LoadedNode {
                    id,
                    node,
                    claims: BTreeMap::new(),
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
        for (node_id, qtype, period, used, last_updated) in usage {
            let Some(n) = nodes.get_mut(&node_id) else {
                continue;
            };
            let resource = resource_of(&qtype);
            let Some(r) = n.node.resources.iter_mut().find(|r| *r.name == *resource) else {
                continue; // the resource was removed from the node's limits
            };
            // A row of another window (the limit's window changed) is history.
            if let Some(period) = Period::parse_key(r.window(), &period)
                && r.window() != Window::None
            {
                r.counter = Counter {
                    period,
                    used: to_count("quota_usage", used)?,
                };
            }
            n.node.last_updated = n.node.last_updated.max(parse_rfc3339(&last_updated));
        }

        let claims: Vec<(String, String, String, i64, String, String)> = sqlx::query_as(
            "SELECT node_id, resource_id, resource, amount, reason, created_at FROM quota_claims",
        )
        .fetch_all(&self.pool)
        .await?;
        for (node_id, resource_id, resource, amount, reason, created_at) in claims {
            let Some(n) = nodes.get_mut(&node_id) else {
                continue;
            };
            let amount = to_count("quota_claims", amount)?;
            if let Some(r) = n.node.resources.iter_mut().find(|r| *r.name == *resource) {
                r.counter.used = r.counter.used.saturating_add(amount);
            }
            n.claims.insert(
                resource_id,
                Claim {
                    resource,
                    amount,
                    reason,
                    created_at: parse_rfc3339(&created_at).unwrap_or(now),
                },
            );
        }
        Ok(nodes.into_values().collect())
    }

    /// Writes write-through operations in one transaction.
    pub async fn apply(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for op in ops {
            apply_op(&mut tx, op).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Writes a flush batch in one transaction: flat tenants created on first
    /// use (never overwriting a node that exists), then usage rows (for a row
    /// that appears twice, the later value wins).
    pub async fn write_batch(&self, batch: &DirtyBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;

        for chunk in batch.new_tenants.chunks(ROWS_PER_STATEMENT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO quota_nodes (id, parent_id, state, name, description, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, row| {
                let ts = rfc3339(row.created_at);
                b.push_bind(row.tenant_id.clone())
                    .push_bind(None::<String>)
                    .push_bind("active")
                    .push_bind(None::<String>)
                    .push_bind(None::<String>)
                    .push_bind(ts.clone())
                    .push_bind(ts);
            });
            q.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
            let inserted: Vec<(String,)> = q.build_query_as().fetch_all(&mut *tx).await?;
            if inserted.is_empty() {
                continue;
            }
            let created: std::collections::HashSet<String> =
                inserted.into_iter().map(|(id,)| id).collect();
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO quota_node_limits (node_id, resource, max, window) ",
            );
            let limit_rows = chunk
                .iter()
                .filter(|r| created.contains(&r.tenant_id))
                .flat_map(|r| {
                    [
                        (
                            r.tenant_id.clone(),
                            "messages",
                            r.limits.message_limit,
                            "day",
                        ),
                        (
                            r.tenant_id.clone(),
                            "bandwidth",
                            r.limits.bandwidth_limit_bytes,
                            "month",
                        ),
                    ]
                });
            q.push_values(limit_rows, |mut b, (id, resource, max, window)| {
                b.push_bind(id)
                    .push_bind(resource)
                    .push_bind(to_sql(max))
                    .push_bind(window);
            });
            q.push(" ON CONFLICT (node_id, resource) DO NOTHING");
            q.build().execute(&mut *tx).await?;
        }

        write_usage(&mut tx, &batch.usage).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Audit rows of a node, newest first: at most `limit`, with ids below
    /// `before` when given.
    pub async fn audit_page(
        &self,
        node_id: &str,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, ts, actor, action, node_id, before, after FROM quota_audit_logs
              WHERE node_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind(node_id.to_owned())
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let json = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        Ok(rows
            .into_iter()
            .map(
                |(id, ts, actor, action, node_id, before, after)| AuditEntry {
                    id,
                    record: AuditRecord {
                        ts: parse_rfc3339(&ts).unwrap_or_default(),
                        actor,
                        action,
                        node_id,
                        before: json(before),
                        after: json(after),
                    },
                },
            )
            .collect())
    }

    /// The grants on a node, sorted by subject and role.
    pub async fn grants(&self, node_id: &str) -> Result<Vec<GrantRow>, StoreError> {
        let rows: Vec<(String, String, String)> = sqlx::query_as(
            "SELECT subject, role, created_at FROM quota_grants WHERE node_id = ? ORDER BY subject, role",
        )
        .bind(node_id.to_owned())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(subject, role, created_at)| GrantRow {
                subject,
                role,
                created_at: parse_rfc3339(&created_at).unwrap_or_default(),
            })
            .collect())
    }

    /// Stored usage of one row (tests and tools).
    pub async fn stored_usage(
        &self,
        node_id: &str,
        resource: &str,
        period: &str,
    ) -> Result<Option<u64>, StoreError> {
        let used: Option<(i64,)> = sqlx::query_as(
            "SELECT used FROM quota_usage WHERE tenant_id = ? AND quota_type = ? AND period = ?",
        )
        .bind(node_id.to_owned())
        .bind(quota_type(resource).to_owned())
        .bind(period.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        used.map(|(u,)| to_count("quota_usage", u)).transpose()
    }

    /// The pool (tests run raw SQL against the real file).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn apply_op(tx: &mut Transaction<'_, Sqlite>, op: &WriteOp) -> Result<(), StoreError> {
    match op {
        WriteOp::UpsertNode {
            id,
            parent,
            state,
            name,
            description,
            created_at,
            updated_at,
        } => {
            sqlx::query(
                "INSERT INTO quota_nodes (id, parent_id, state, name, description, created_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, state = excluded.state,
                     created_at = excluded.created_at,
                     name = excluded.name, description = excluded.description, updated_at = excluded.updated_at",
            )
            .bind(id.clone())
            .bind(parent.clone())
            .bind(state.as_str())
            .bind(name.clone())
            .bind(description.clone())
            .bind(rfc3339(*created_at))
            .bind(rfc3339(*updated_at))
            .execute(&mut **tx)
            .await?;
        }
        WriteOp::ReplaceLimits { node_id, limits } => {
            sqlx::query("DELETE FROM quota_node_limits WHERE node_id = ?")
                .bind(node_id.clone())
                .execute(&mut **tx)
                .await?;
            if !limits.is_empty() {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                    "INSERT INTO quota_node_limits (node_id, resource, max, window) ",
                );
                q.push_values(limits, |mut b, (resource, limit)| {
                    b.push_bind(node_id.clone())
                        .push_bind(resource.clone())
                        .push_bind(to_sql(limit.max))
                        .push_bind(limit.window.as_str());
                });
                q.build().execute(&mut **tx).await?;
            }
        }
        WriteOp::InsertClaim {
            node_id,
            resource_id,
            claim,
        } => {
            sqlx::query(
                "INSERT INTO quota_claims (node_id, resource_id, resource, amount, reason, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(node_id.clone())
            .bind(resource_id.clone())
            .bind(claim.resource.clone())
            .bind(to_sql(claim.amount))
            .bind(claim.reason.clone())
            .bind(rfc3339(claim.created_at))
            .execute(&mut **tx)
            .await?;
        }
        WriteOp::DeleteClaim {
            node_id,
            resource_id,
        } => {
            sqlx::query("DELETE FROM quota_claims WHERE node_id = ? AND resource_id = ?")
                .bind(node_id.clone())
                .bind(resource_id.clone())
                .execute(&mut **tx)
                .await?;
        }
        WriteOp::MoveClaims { from, to } => {
            sqlx::query("UPDATE quota_claims SET node_id = ? WHERE node_id = ?")
                .bind(to.clone())
                .bind(from.clone())
                .execute(&mut **tx)
                .await?;
        }
        WriteOp::InsertGrant {
            node_id,
            subject,
            role,
            created_at,
        } => {
            sqlx::query(
                "INSERT INTO quota_grants (node_id, subject, role, created_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (node_id, subject, role) DO NOTHING",
            )
            .bind(node_id.clone())
            .bind(subject.clone())
            .bind(role.clone())
            .bind(rfc3339(*created_at))
            .execute(&mut **tx)
            .await?;
        }
        WriteOp::DeleteGrant {
            node_id,
            subject,
            role,
        } => {
            sqlx::query("DELETE FROM quota_grants WHERE node_id = ? AND subject = ? AND role = ?")
                .bind(node_id.clone())
                .bind(subject.clone())
                .bind(role.clone())
                .execute(&mut **tx)
                .await?;
        }
        WriteOp::Usage(rows) => write_usage(tx, rows).await?,
        WriteOp::Touch { node_id, at } => {
            sqlx::query("UPDATE quota_nodes SET updated_at = ? WHERE id = ?")
                .bind(rfc3339(*at))
                .bind(node_id.clone())
                .execute(&mut **tx)
                .await?;
        }
        WriteOp::Audit(a) => {
            let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
            sqlx::query(
                "INSERT INTO quota_audit_logs (ts, actor, action, node_id, before, after) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(rfc3339(a.ts))
            .bind(a.actor.clone())
            .bind(a.action.clone())
            .bind(a.node_id.clone())
            .bind(json(&a.before))
            .bind(json(&a.after))
            .execute(&mut **tx)
            .await?;
        }
    }
    Ok(())
}

async fn write_usage(
    tx: &mut Transaction<'_, Sqlite>,
    rows: &[UsageRow],
) -> Result<(), StoreError> {
    let rows = latest_per_row(rows);
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) ",
        );
        q.push_values(chunk, |mut b, row| {
            b.push_bind(row.node_id.clone())
                .push_bind(row.period.key())
                .push_bind(quota_type(&row.resource).to_owned())
                .push_bind(to_sql(row.used))
                .push_bind(rfc3339(row.last_updated));
        });
        q.push(
            " ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
                  used = excluded.used, last_updated = excluded.last_updated",
        );
        q.build().execute(&mut **tx).await?;
    }
    Ok(())
}

/// Keeps the last occurrence of every `(node, resource, period)`.
fn latest_per_row(rows: &[UsageRow]) -> Vec<&UsageRow> {
    let mut index: HashMap<(&str, &str, Period), usize> = HashMap::with_capacity(rows.len());
    let mut out: Vec<&UsageRow> = Vec::with_capacity(rows.len());
    for row in rows {
        match index.entry((row.node_id.as_str(), &*row.resource, row.period)) {
            std::collections::hash_map::Entry::Occupied(e) => out[*e.get()] = row,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(row);
            }
        }
    }
    out
}

fn corrupt(table: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt { table, detail }
}

fn to_sql(n: u64) -> i64 {
    // Counters and limits never pass MAX_COUNT (= i64::MAX).
    i64::try_from(n.min(MAX_COUNT)).unwrap_or(i64::MAX)
}

fn to_count(table: &'static str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(table, format!("negative value {n}")))
}
