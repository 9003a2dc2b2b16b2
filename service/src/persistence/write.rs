//! Write-through operations: nodes, limits, states, claims, grants, usage
//! resets and their audit records, one transaction per API call, committed
//! before the call answers. Audit pages and grants are read here too.

use std::collections::HashSet;

use sqlx::AnyConnection;

use super::{Backend, Sql, Store, StoreError, bump_clock, quota_type, to_sql};
use crate::domain::calendar::{parse_rfc3339, rfc3339};
use crate::domain::node::{Limit, NodeState};
use crate::rows::{Claim, NewTenantRow, UsageRow};

/// One change written through to the database.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Creates or replaces a node row.
    UpsertNode {
        id: String,
        parent: Option<String>,
        state: NodeState,
        /// Usage checked and counted in the database (see [`super::flush`]).
        strict: bool,
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
    /// Usage rows as absolute values (a reset).
    Usage(Vec<UsageRow>),
    /// Usage rows added to the stored totals (a deleted child's usage
    /// charged to its parent: other replicas' counts stay).
    AddUsage(Vec<UsageRow>),
    /// A deleted child's rows moved to its parent `to`: each row's stored
    /// total plus `used` (the deleting process's part not flushed yet) is
    /// added to the parent's row of the same period, and the child's row
    /// becomes 0 (see [`move_usage`]).
    MoveUsage {
        to: String,
        rows: Vec<UsageRow>,
    },
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

impl Store {
    /// Writes write-through operations in one transaction. Every node they
    /// touch gets the transaction's version, so other replicas reload it.
    pub async fn apply(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let version = bump_clock(&mut tx).await?;
        let mut touched: HashSet<&str> = HashSet::new();
        for op in ops {
            apply_op(&mut tx, self.backend, op, version).await?;
            touched.extend(op.nodes());
        }
        for chunk in touched
            .into_iter()
            .collect::<Vec<_>>()
            .chunks(super::ROWS_PER_STATEMENT)
        {
            let mut q = Sql::new(self.backend, "UPDATE quota_nodes SET version = ");
            q.bind(version).push(" WHERE id IN (");
            for (i, id) in chunk.iter().enumerate() {
                if i > 0 {
                    q.push(", ");
                }
                q.bind(id.to_string());
            }
            q.push(")");
            let (sql, args) = q.into_parts();
            sqlx::query_with(sql, args).execute(&mut *tx).await?;
        }
        tx.commit().await.map_err(StoreError::CommitUnknown)?;
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
              WHERE node_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
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
            "SELECT subject, role, created_at FROM quota_grants WHERE node_id = $1 ORDER BY subject, role",
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
            "SELECT used FROM quota_usage WHERE tenant_id = $1 AND quota_type = $2 AND period = $3",
        )
        .bind(node_id.to_owned())
        .bind(quota_type(resource).to_owned())
        .bind(period.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        used.map(|(u,)| super::to_count("quota_usage", u))
            .transpose()
    }
}

impl WriteOp {
    /// The nodes whose stored state the operation changes.
    fn nodes(&self) -> Vec<&str> {
        match self {
            WriteOp::UpsertNode { id, .. } => vec![id],
            WriteOp::ReplaceLimits { node_id, .. }
            | WriteOp::InsertClaim { node_id, .. }
            | WriteOp::DeleteClaim { node_id, .. }
            | WriteOp::InsertGrant { node_id, .. }
            | WriteOp::DeleteGrant { node_id, .. }
            | WriteOp::Touch { node_id, .. } => vec![node_id],
            WriteOp::MoveClaims { from, to } => vec![from, to],
            // Audit rows are read from the database, not memory; usage rows
            // carry their own version.
            WriteOp::Usage(_)
            | WriteOp::AddUsage(_)
            | WriteOp::MoveUsage { .. }
            | WriteOp::Audit(_) => vec![],
        }
    }
}

async fn apply_op(
    conn: &mut AnyConnection,
    backend: Backend,
    op: &WriteOp,
    version: i64,
) -> Result<(), StoreError> {
    match op {
        WriteOp::UpsertNode {
            id,
            parent,
            state,
            strict,
            name,
            description,
            created_at,
            updated_at,
        } => {
            sqlx::query(
                "INSERT INTO quota_nodes (id, parent_id, state, name, description, created_at, updated_at, strict)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET parent_id = excluded.parent_id, state = excluded.state,
                     created_at = excluded.created_at, strict = excluded.strict,
                     name = excluded.name, description = excluded.description, updated_at = excluded.updated_at",
            )
            .bind(id.clone())
            .bind(parent.clone())
            .bind(state.as_str())
            .bind(name.clone())
            .bind(description.clone())
            .bind(rfc3339(*created_at))
            .bind(rfc3339(*updated_at))
            .bind(i64::from(*strict))
            .execute(&mut *conn)
            .await?;
        }
        WriteOp::ReplaceLimits { node_id, limits } => {
            sqlx::query("DELETE FROM quota_node_limits WHERE node_id = $1")
                .bind(node_id.clone())
                .execute(&mut *conn)
                .await?;
            if !limits.is_empty() {
                let mut q = Sql::new(
                    backend,
                    "INSERT INTO quota_node_limits (node_id, resource, max, \"window\")",
                );
                q.values(limits, |row, (resource, limit)| {
                    row.bind(node_id.clone())
                        .bind(resource.clone())
                        .bind(to_sql(limit.max))
                        .bind(limit.window.as_str());
                });
                let (sql, args) = q.into_parts();
                sqlx::query_with(sql, args).execute(&mut *conn).await?;
            }
        }
        WriteOp::InsertClaim {
            node_id,
            resource_id,
            claim,
        } => {
            sqlx::query(
                "INSERT INTO quota_claims (node_id, resource_id, resource, amount, reason, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(node_id.clone())
            .bind(resource_id.clone())
            .bind(claim.resource.clone())
            .bind(to_sql(claim.amount))
            .bind(claim.reason.clone())
            .bind(rfc3339(claim.created_at))
            .execute(&mut *conn)
            .await?;
        }
        WriteOp::DeleteClaim {
            node_id,
            resource_id,
        } => {
            sqlx::query("DELETE FROM quota_claims WHERE node_id = $1 AND resource_id = $2")
                .bind(node_id.clone())
                .bind(resource_id.clone())
                .execute(&mut *conn)
                .await?;
        }
        WriteOp::MoveClaims { from, to } => {
            sqlx::query("UPDATE quota_claims SET node_id = $1 WHERE node_id = $2")
                .bind(to.clone())
                .bind(from.clone())
                .execute(&mut *conn)
                .await?;
        }
        WriteOp::InsertGrant {
            node_id,
            subject,
            role,
            created_at,
        } => {
            sqlx::query(
                "INSERT INTO quota_grants (node_id, subject, role, created_at) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (node_id, subject, role) DO NOTHING",
            )
            .bind(node_id.clone())
            .bind(subject.clone())
            .bind(role.clone())
            .bind(rfc3339(*created_at))
            .execute(&mut *conn)
            .await?;
        }
        WriteOp::DeleteGrant {
            node_id,
            subject,
            role,
        } => {
            sqlx::query(
                "DELETE FROM quota_grants WHERE node_id = $1 AND subject = $2 AND role = $3",
            )
            .bind(node_id.clone())
            .bind(subject.clone())
            .bind(role.clone())
            .execute(&mut *conn)
            .await?;
        }
        WriteOp::Usage(rows) => write_usage(conn, backend, rows, version, false).await?,
        WriteOp::AddUsage(rows) => write_usage(conn, backend, rows, version, true).await?,
        WriteOp::MoveUsage { to, rows } => move_usage(conn, backend, to, rows, version).await?,
        WriteOp::Touch { node_id, at } => {
            sqlx::query("UPDATE quota_nodes SET updated_at = $1 WHERE id = $2")
                .bind(rfc3339(*at))
                .bind(node_id.clone())
                .execute(&mut *conn)
                .await?;
        }
        WriteOp::Audit(a) => {
            let json = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string());
            sqlx::query(
                "INSERT INTO quota_audit_logs (ts, actor, action, node_id, before, after) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(rfc3339(a.ts))
            .bind(a.actor.clone())
            .bind(a.action.clone())
            .bind(a.node_id.clone())
            .bind(json(&a.before))
            .bind(json(&a.after))
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Writes usage rows stamped with `version`: absolute values (a reset), or
/// added to the stored totals when `add` (a deleted child's usage charged to
/// its parent; flushes use [`super::flush`]).
pub(crate) async fn write_usage(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[UsageRow],
    version: i64,
    add: bool,
) -> Result<(), StoreError> {
    for chunk in rows.chunks(super::ROWS_PER_STATEMENT) {
        let mut q = Sql::new(
            backend,
            "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated, version)",
        );
        q.values(chunk, |row, u| {
            row.bind(u.node_id.clone())
                .bind(u.period.key())
                .bind(quota_type(&u.resource).to_owned())
                .bind(to_sql(u.used))
                .bind(rfc3339(u.last_updated))
                .bind(version);
        });
        q.push(if add {
            " ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
                  used = quota_usage.used + excluded.used,
                  last_updated = excluded.last_updated, version = excluded.version"
        } else {
            " ON CONFLICT (tenant_id, period, quota_type) DO UPDATE SET
                  used = excluded.used, last_updated = excluded.last_updated,
                  version = excluded.version"
        });
        let (sql, args) = q.into_parts();
        sqlx::query_with(sql, args).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves rows of deleted children to their parent `to`, stamped with
/// `version`: for each row key of `rows` (a child, resource and period),
/// the parent's row of that period gets the child's stored total plus the
/// row's `used`, and the child's row becomes 0. Run inside a transaction
/// that bumped the clock first, so no flush of another replica adds to the
/// child's row between the read and the move; one that adds later sees the
/// child deleted and moves its part the same way ([`super::flush`]).
pub(crate) async fn move_usage(
    conn: &mut AnyConnection,
    backend: Backend,
    to: &str,
    rows: &[UsageRow],
    version: i64,
) -> Result<(), StoreError> {
    let mut moved = Vec::with_capacity(rows.len());
    for u in rows {
        let key = |q: &mut Sql| {
            q.bind(u.node_id.clone())
                .push(" AND period = ")
                .bind(u.period.key())
                .push(" AND quota_type = ")
                .bind(quota_type(&u.resource).to_owned());
        };
        let mut q = Sql::new(backend, "SELECT used FROM quota_usage WHERE tenant_id = ");
        key(&mut q);
        let (sql, args) = q.into_parts();
        let stored: Option<(i64,)> = sqlx::query_as_with(sql, args)
            .fetch_optional(&mut *conn)
            .await?;
        let stored = stored.map_or(Ok(0), |(v,)| super::to_count("quota_usage", v))?;
        let total = stored.saturating_add(u.used);
        if total == 0 {
            continue;
        }
        if stored > 0 {
            let mut q = Sql::new(backend, "UPDATE quota_usage SET used = 0, last_updated = ");
            q.bind(rfc3339(u.last_updated))
                .push(", version = ")
                .bind(version)
                .push(" WHERE tenant_id = ");
            key(&mut q);
            let (sql, args) = q.into_parts();
            sqlx::query_with(sql, args).execute(&mut *conn).await?;
        }
        moved.push(UsageRow {
            node_id: to.to_owned(),
            used: total,
            ..u.clone()
        });
    }
    write_usage(conn, backend, &moved, version, true).await
}

/// Inserts flat tenants created on first use, never overwriting a node that
/// exists (another replica, or an operator call, may have created it).
pub(crate) async fn insert_new_tenants(
    conn: &mut AnyConnection,
    backend: Backend,
    rows: &[NewTenantRow],
    version: i64,
) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    // Two statements for any number of tenants: the rows travel as one JSON
    // parameter each, sorted by id so the inserts walk the index in order.
    let mut sorted: Vec<&NewTenantRow> = rows.iter().collect();
    sorted.sort_unstable_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    let nodes: Vec<(&str, String)> = sorted
        .iter()
        .map(|t| (t.tenant_id.as_str(), rfc3339(t.created_at)))
        .collect();
    let mut q = Sql::new(
        backend,
        "INSERT INTO quota_nodes (id, parent_id, state, name, description, created_at, updated_at, version)
         SELECT value ->> 0, NULL, 'active', NULL, NULL, value ->> 1, value ->> 1, ",
    );
    q.bind(version).push(" FROM ");
    q.json_rows(to_json(&nodes)?);
    q.push(" WHERE true ON CONFLICT (id) DO NOTHING");
    let (sql, args) = q.into_parts();
    sqlx::query_with(sql, args).execute(&mut *conn).await?;
    // Limits only for the nodes this statement created (they carry this
    // transaction's version): a node that existed (another replica's, or a
    // v1 node) keeps its own. Checked in the database rather than by
    // returning the created ids: a million returned rows cost seconds.
    let limits: Vec<(&str, &str, i64, &str)> = sorted
        .iter()
        .flat_map(|r| {
            [
                (
                    r.tenant_id.as_str(),
                    "messages",
                    to_sql(r.limits.message_limit),
                    "day",
                ),
                (
                    r.tenant_id.as_str(),
                    "bandwidth",
                    to_sql(r.limits.bandwidth_limit_bytes),
                    "month",
                ),
            ]
        })
        .collect();
    let mut q = Sql::new(
        backend,
        "INSERT INTO quota_node_limits (node_id, resource, max, \"window\")
         SELECT value ->> 0, value ->> 1, CAST(value ->> 2 AS BIGINT), value ->> 3 FROM ",
    );
    q.json_rows(to_json(&limits)?);
    q.push(" WHERE EXISTS (SELECT 1 FROM quota_nodes n WHERE n.id = value ->> 0 AND n.version = ")
        .bind(version)
        .push(") ON CONFLICT (node_id, resource) DO NOTHING");
    let (sql, args) = q.into_parts();
    sqlx::query_with(sql, args).execute(&mut *conn).await?;
    Ok(())
}

/// Rows as a JSON array of arrays, for [`Sql::json_rows`].
pub(crate) fn to_json<T: serde::Serialize>(rows: &T) -> Result<String, StoreError> {
    serde_json::to_string(rows).map_err(|e| StoreError::Corrupt {
        table: "(batch)",
        detail: format!("cannot encode rows as JSON: {e}"),
    })
}
