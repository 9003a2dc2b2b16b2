//! Reading state: everything at startup, or what changed since a version
//! (how a replica refreshes its view of what other replicas wrote).
//!
//! Both read in one transaction, so the nodes, limits, usage and claims they
//! return, and the version they report, are one consistent snapshot: every
//! later change carries a higher version.

use std::collections::{BTreeMap, HashMap};

use sqlx::AssertSqlSafe;

use super::{Backend, Store, StoreError, corrupt, resource_of, to_count};
use crate::counters::{Claim, LoadedNode};
use crate::domain::calendar::parse_rfc3339;
use crate::domain::counter::Counter;
use crate::domain::node::{Limit, Node, NodeState};
use crate::domain::window::{Period, Window};

/// The stored total of one usage row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTotal {
    pub node_id: String,
    pub resource: String,
    pub period: String,
    pub used: u64,
}

/// What changed since a version.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Nodes whose row, limits or claims changed, as [`Store::load`] reads
    /// them (with their latest usage).
    pub nodes: Vec<LoadedNode>,
    /// Usage rows written since the version, and the current rows of strict
    /// nodes (their usage is counted in the database, not flushed).
    pub totals: Vec<StoredTotal>,
    /// The version of this snapshot: ask for changes since it next time.
    pub version: i64,
}

type NodeRow = (
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    i64,
);

/// Latest period of every (node, type), restricted to the nodes selected by
/// `{nodes}`.
const LATEST_USAGE: &str = "SELECT u.tenant_id, u.quota_type, u.period, u.used, u.last_updated
       FROM quota_usage u
       JOIN (SELECT tenant_id, quota_type, MAX(period) AS period
               FROM quota_usage WHERE tenant_id IN ({nodes}) GROUP BY tenant_id, quota_type) latest
         ON u.tenant_id = latest.tenant_id
        AND u.quota_type = latest.quota_type
        AND u.period = latest.period";

const CHANGED_NODES: &str = "SELECT id FROM quota_nodes WHERE version > $1";

impl Store {
    /// Every node with its limits, the latest stored period of each counted
    /// resource, and its claims (a capacity's usage is the sum of its
    /// claims), and the version of that snapshot.
    pub async fn load(&self, now: i64) -> Result<(Vec<LoadedNode>, i64), StoreError> {
        let changes = self.read(now, -1, false).await?;
        Ok((changes.nodes, changes.version))
    }

    /// What changed since `since` (a version from [`Store::load`] or an
    /// earlier call).
    pub async fn changes(&self, now: i64, since: i64) -> Result<Changes, StoreError> {
        self.read(now, since, true).await
    }

    async fn read(&self, now: i64, since: i64, totals: bool) -> Result<Changes, StoreError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // One snapshot for every statement below (SQLite's read
            // transaction is one snapshot already).
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        let (version,): (i64,) = sqlx::query_as("SELECT version FROM quota_clock WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        if version <= since {
            tx.commit().await?;
            let totals = if totals {
                self.strict_totals().await?
            } else {
                Vec::new()
            };
            return Ok(Changes {
                nodes: Vec::new(),
                totals,
                version,
            });
        }

        let rows: Vec<NodeRow> = sqlx::query_as(
            "SELECT id, parent_id, state, name, description, created_at, updated_at, strict
               FROM quota_nodes WHERE version > $1",
        )
        .bind(since)
        .fetch_all(&mut *tx)
        .await?;

        let limit_rows: Vec<(String, String, i64, String)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT node_id, resource, max, \"window\" FROM quota_node_limits WHERE node_id IN ({CHANGED_NODES})"
        )))
        .bind(since)
        .fetch_all(&mut *tx)
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
        for (id, parent, state, name, description, created_at, updated_at, strict) in rows {
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
            node.strict = strict != 0;
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

        let usage: Vec<(String, String, String, i64, String)> = sqlx::query_as(AssertSqlSafe(
            LATEST_USAGE.replace("{nodes}", CHANGED_NODES),
        ))
        .bind(since)
        .fetch_all(&mut *tx)
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
                r.counter = Counter::stored(period, to_count("quota_usage", used)?);
            }
            n.node.last_updated = n.node.last_updated.max(parse_rfc3339(&last_updated));
        }

        let claims: Vec<(String, String, String, i64, String, String)> =
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT node_id, resource_id, resource, amount, reason, created_at
               FROM quota_claims WHERE node_id IN ({CHANGED_NODES})"
            )))
            .bind(since)
            .fetch_all(&mut *tx)
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

        let mut changed_totals = Vec::new();
        if totals {
            let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT tenant_id, quota_type, period, used FROM quota_usage WHERE version > $1",
            )
            .bind(since)
            .fetch_all(&mut *tx)
            .await?;
            changed_totals = to_totals(rows)?;
        }
        tx.commit().await?;
        if totals {
            changed_totals.extend(self.strict_totals().await?);
        }
        Ok(Changes {
            nodes: nodes.into_values().collect(),
            totals: changed_totals,
            version,
        })
    }

    /// The latest usage rows of strict nodes.
    async fn strict_totals(&self) -> Result<Vec<StoredTotal>, StoreError> {
        let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(AssertSqlSafe(
            LATEST_USAGE.replace("{nodes}", "SELECT id FROM quota_nodes WHERE strict = 1"),
        ))
        .fetch_all(&self.pool)
        .await?;
        to_totals(
            rows.into_iter()
                .map(|(n, q, p, u, _)| (n, q, p, u))
                .collect(),
        )
    }
}

fn to_totals(rows: Vec<(String, String, String, i64)>) -> Result<Vec<StoredTotal>, StoreError> {
    rows.into_iter()
        .map(|(node_id, qtype, period, used)| {
            Ok(StoredTotal {
                node_id,
                resource: resource_of(&qtype).to_owned(),
                period,
                used: to_count("quota_usage", used)?,
            })
        })
        .collect()
}
