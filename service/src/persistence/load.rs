//! Reading state: everything at startup, or what changed since a version
//! (how a replica refreshes its view of what other replicas wrote).
//!
//! Both read in one transaction, so the nodes, limits, usage, claims and
//! grants they
//! return, and the version they report, are one consistent snapshot: every
//! later change carries a higher version.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use smallvec::SmallVec;

use serde::Deserialize;
use sqlx::AssertSqlSafe;

use super::{Backend, Sql, Store, StoreError, corrupt, resource_of, to_count};
use crate::domain::access::Role;
use crate::domain::calendar::parse_rfc3339;
use crate::domain::counter::{Counter, RowId};
use crate::domain::node::{Limit, Node, NodeState, Resource};
use crate::domain::window::{Period, Window};
use crate::rows::{Claim, LoadedNode, NodeGrant, NodeSink, StoredTotal};

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

type FoldMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Nodes per page of a read. A page travels as one JSON text per table
/// (about 450 kB for the nodes of a full page), so memory stays bounded
/// whatever the number of nodes. What a page needs while it is read and
/// built is freed again, but the allocator's per-thread arenas keep what
/// they once held, so larger pages leave a larger RSS for no faster load
/// (the page sizes measured: docs/perf-history/05-fifth-pass-startup-load.md).
pub(crate) const PAGE: i64 = 5_000;

/// Appended to a `FROM quota_usage u WHERE ...`: keeps the latest period of
/// every (node, type, window) only (an anti-join: no later period of the
/// same node and type; it walks the `(tenant_id, quota_type, period)`
/// index, where a `GROUP BY` joined back took 2.5x as long on a million
/// rows). Keys of one window have one length and sort by time; keys of
/// different windows do not compare (`2026-11-22T12:00`, a minute, sorts
/// after `2026-11-22T12`, the hour it is in), so each window's latest row
/// comes back, and the load keeps the one of the limit's window.
const LATEST_PERIOD_ONLY: &str = " AND NOT EXISTS (SELECT 1 FROM quota_usage later
                         WHERE later.tenant_id = u.tenant_id
                           AND later.quota_type = u.quota_type
                           AND later.period > u.period
                           AND length(later.period) = length(u.period))";

// Rows as they arrive in a page's JSON (arrays, in the selected order);
// text that needs no unescaping is borrowed from the page.

#[derive(Deserialize)]
struct NodeRow<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Option<Cow<'a, str>>,
    #[serde(borrow)] Cow<'a, str>,
    Option<String>,
    Option<String>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    i64,
);

#[derive(Deserialize)]
struct LimitRow<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    i64,
    #[serde(borrow)] Cow<'a, str>,
);

#[derive(Deserialize)]
struct UsageRow<'a>(
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    #[serde(borrow)] Cow<'a, str>,
    i64,
    #[serde(borrow)] Cow<'a, str>,
    i64,
);

#[derive(Deserialize)]
struct ClaimRow<'a>(
    #[serde(borrow)] Cow<'a, str>,
    String,
    String,
    i64,
    String,
    #[serde(borrow)] Cow<'a, str>,
);

#[derive(Deserialize)]
struct GrantRow<'a>(
    #[serde(borrow)] Cow<'a, str>,
    String,
    #[serde(borrow)] Cow<'a, str>,
);

impl Store {
    /// Every node with its limits, the latest stored period of each counted
    /// resource, and its claims (a capacity's usage is the sum of its
    /// claims), and the version of that snapshot.
    pub async fn load(&self, now: i64) -> Result<(Vec<LoadedNode>, i64), StoreError> {
        let (version, nodes, _) = self.read(now, -1, false, Vec::new()).await?;
        Ok((nodes, version))
    }

    /// What [`Store::load`] reads, handed to `sink` a page at a time (see
    /// [`NodeSink`]): the startup load fills the counter store while it
    /// reads instead of after, and never holds every node twice. Returns
    /// the version of the snapshot and the sink.
    pub async fn load_into<S: NodeSink>(&self, now: i64, sink: S) -> Result<(i64, S), StoreError> {
        let (version, sink, _) = self.read(now, -1, false, sink).await?;
        Ok((version, sink))
    }

    /// The number of nodes stored (to size the counter store before a
    /// load; not part of the load's snapshot).
    pub async fn node_count(&self) -> Result<usize, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM quota_nodes")
            .fetch_one(&self.pool)
            .await?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// What changed since `since` (a version from [`Store::load`] or an
    /// earlier call).
    pub async fn changes(&self, now: i64, since: i64) -> Result<Changes, StoreError> {
        let (version, nodes, mut totals) = self.read(now, since, true, Vec::new()).await?;
        totals.extend(self.strict_totals().await?);
        Ok(Changes {
            nodes,
            totals,
            version,
        })
    }

    /// Reads the nodes with a version above `since` (all at startup: -1),
    /// in pages of [`PAGE`] nodes by id, into `sink`; with `totals`, also
    /// the usage rows written since. Returns the snapshot's version, the
    /// sink and those rows.
    ///
    /// ```text
    ///  this task:      fetch 1 │ fetch 2         │ fetch 3         │ ...
    ///  blocking pool:            build 1, take 1 │ build 2, take 2 │ ...
    /// ```
    ///
    /// Each table's rows of a page come back as one JSON text: row by row,
    /// a million nodes took 40 s to load on SQLite (every row is handed
    /// from sqlx's SQLite thread to the runtime on its own); the same rows
    /// as JSON pages take a few seconds.
    async fn read<S: NodeSink>(
        &self,
        now: i64,
        since: i64,
        totals: bool,
        sink: S,
    ) -> Result<(i64, S, Vec<StoredTotal>), StoreError> {
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
        let mut changed_totals = Vec::new();
        let mut sink = Held::Here(sink);
        if version > since {
            // Ids are never empty, so every id sorts after "".
            let mut after = String::new();
            // The database reads page n + 1 while a blocking thread builds
            // page n and hands it to the sink: on SQLite each side took
            // about half of a load.
            while let Some(text) = self
                .fetch_page(&mut tx, since, &after, self.load_page)
                .await?
            {
                after.clone_from(&text.last);
                let mut s = sink.back().await?;
                sink = Held::Building(tokio::task::spawn_blocking(move || {
                    let page = build_page(text, now)?;
                    s.take(page);
                    Ok(s)
                }));
            }
            if totals {
                let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
                    "SELECT tenant_id, quota_type, period, used FROM quota_usage WHERE version > $1",
                )
                .bind(since)
                .fetch_all(&mut *tx)
                .await?;
                changed_totals = to_totals(rows)?;
            }
        }
        let sink = sink.back().await?;
        tx.commit().await?;
        Ok((version, sink, changed_totals))
    }

    /// The texts of one page: up to `page_size` nodes with ids after
    /// `after` (and a version above `since`), with their limits, latest
    /// usage and claims, each table's rows as one JSON text; `None` after
    /// the last node.
    async fn fetch_page(
        &self,
        tx: &mut sqlx::AnyConnection,
        since: i64,
        after: &str,
        page_size: i64,
    ) -> Result<Option<PageText>, StoreError> {
        // The page's last id first: every table is then read by the range
        // (after, last] of ids.
        let mut q = Sql::new(
            self.backend,
            "SELECT max(id) FROM (SELECT id FROM quota_nodes WHERE id > ",
        );
        q.bind(after.to_owned())
            .push(" AND version > ")
            .bind(since)
            .push(" ORDER BY id LIMIT ")
            .bind(page_size)
            .push(") page");
        let (sql, args) = q.into_parts();
        let (last,): (Option<String>,) = sqlx::query_as_with(sql, args).fetch_one(&mut *tx).await?;
        let Some(last) = last else {
            return Ok(None);
        };

        // Rows of nodes in (after, last], and only of changed nodes when
        // reading changes.
        let in_page = |q: &mut Sql, column: &str| {
            q.push(&format!(" WHERE {column} > "))
                .bind(after.to_owned())
                .push(&format!(" AND {column} <= "))
                .bind(last.clone());
            if column == "id" {
                q.push(" AND version > ").bind(since);
            } else if since >= 0 {
                q.push(&format!(
                    " AND {column} IN (SELECT id FROM quota_nodes WHERE version > "
                ))
                .bind(since)
                .push(")");
            }
        };

        let mut q = Sql::new(self.backend, "SELECT ");
        q.push(
            &self.json_agg(
                "id, parent_id, state, name, description, created_at, updated_at, strict",
            ),
        )
        .push(" FROM quota_nodes");
        in_page(&mut q, "id");
        let nodes = fetch_text(tx, q).await?;
        let mut q = Sql::new(self.backend, "SELECT ");
        q.push(&self.json_agg("node_id, resource, max, \"window\""))
            .push(" FROM quota_node_limits");
        in_page(&mut q, "node_id");
        let limits = fetch_text(tx, q).await?;
        let mut q = Sql::new(self.backend, "SELECT ");
        q.push(&self.json_agg("u.tenant_id, u.quota_type, u.period, u.used, u.last_updated, u.id"))
            .push(" FROM quota_usage u");
        in_page(&mut q, "u.tenant_id");
        q.push(LATEST_PERIOD_ONLY);
        let usage = fetch_text(tx, q).await?;
        let mut q = Sql::new(self.backend, "SELECT ");
        q.push(&self.json_agg("node_id, resource_id, resource, amount, reason, created_at"))
            .push(" FROM quota_claims");
        in_page(&mut q, "node_id");
        let claims = fetch_text(tx, q).await?;
        let mut q = Sql::new(self.backend, "SELECT ");
        q.push(&self.json_agg("node_id, subject, role"))
            .push(" FROM quota_grants");
        in_page(&mut q, "node_id");
        let grants = fetch_text(tx, q).await?;
        Ok(Some(PageText {
            nodes,
            limits,
            usage,
            claims,
            grants,
            last,
        }))
    }

    /// An aggregate of the selected rows into one JSON text: an array of
    /// arrays of `columns` (`[]` when there are none).
    fn json_agg(&self, columns: &str) -> String {
        match self.backend {
            Backend::Sqlite => format!("coalesce(json_group_array(json_array({columns})), '[]')"),
            Backend::Postgres => {
                format!("coalesce(CAST(json_agg(json_build_array({columns})) AS text), '[]')")
            }
        }
    }

    /// The latest usage rows of strict nodes.
    async fn strict_totals(&self) -> Result<Vec<StoredTotal>, StoreError> {
        let rows: Vec<(String, String, String, i64, String)> = sqlx::query_as(AssertSqlSafe(
            format!(
                "SELECT u.tenant_id, u.quota_type, u.period, u.used, u.last_updated
                   FROM quota_usage u
                  WHERE u.tenant_id IN (SELECT id FROM quota_nodes WHERE strict = 1){LATEST_PERIOD_ONLY}"
            ),
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

/// One page of a read as the database sent it (see [`Store::fetch_page`]).
#[derive(Debug)]
struct PageText {
    nodes: String,
    limits: String,
    usage: String,
    claims: String,
    grants: String,
    /// The page's last node id.
    last: String,
}

/// Builds the nodes of a page from its texts. Pure CPU work: the read runs
/// it on a blocking thread while it fetches the next page.
fn build_page(text: PageText, now: i64) -> Result<Vec<LoadedNode>, StoreError> {
    let rows: Vec<NodeRow<'_>> = parse_page("quota_nodes", &text.nodes)?;
    let limit_rows: Vec<LimitRow<'_>> = parse_page("quota_node_limits", &text.limits)?;
    // Keyed by text borrowed from the page (no copy per row), hashed
    // with foldhash: std's SipHash was a tenth of the load's CPU.
    let mut limits: FoldMap<&str, SmallVec<[(&str, Limit); 2]>> = FoldMap::default();
    for LimitRow(node_id, resource, max, window) in &limit_rows {
        let window: Window = window
            .parse()
            .map_err(|e| corrupt("quota_node_limits", format!("{e}")))?;
        limits.entry(node_id.as_ref()).or_default().push((
            resource.as_ref(),
            Limit {
                max: to_count("quota_node_limits", *max)?,
                window,
            },
        ));
    }

    // The page's nodes in a vector, found by id through an index that
    // borrows the ids from the page's text: a map holding the nodes
    // themselves, collected into a vector at the end, moved every node
    // twice more.
    let mut ids: Vec<Cow<'_, str>> = Vec::with_capacity(rows.len());
    let mut nodes: Vec<LoadedNode> = Vec::with_capacity(rows.len());
    for NodeRow(id, parent, state, name, description, created_at, updated_at, strict) in rows {
        let state = NodeState::parse(&state)
            .ok_or_else(|| corrupt("quota_nodes", format!("unknown state {state:?} of {id}")))?;
        let created = parse_rfc3339(&created_at).unwrap_or(now);
        let mut node = Node::new(
            parent.as_deref(),
            limits.get(id.as_ref()).map(|l| l.as_slice()).unwrap_or(&[]),
            created,
        );
        node.state = state;
        node.strict = strict != 0;
        node.set_name(name);
        node.set_description(description);
        node.last_updated = parse_rfc3339(&updated_at);
        nodes.push(LoadedNode {
            id: id.as_ref().to_owned(),
            node,
            claims: BTreeMap::new(),
            grants: Vec::new(),
        });
        ids.push(id);
    }
    drop(limits);
    let index: FoldMap<&str, usize> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_ref(), i))
        .collect();

    for UsageRow(node_id, qtype, period, used, last_updated, row) in
        parse_page::<UsageRow<'_>>("quota_usage", &text.usage)?
    {
        let Some(n) = index.get(node_id.as_ref()).and_then(|&i| nodes.get_mut(i)) else {
            continue;
        };
        let resource = resource_of(&qtype);
        let Some(r) = n.node.resources.iter_mut().find(|r| *r.name == *resource) else {
            // The limit was removed: its usage of the current period stays
            // (refusing more) until the period ends or the limit is back.
            if let Some(r) = removed_limit(resource, &period, used, row, now)? {
                n.node.add_removed(r);
            }
            continue;
        };
        // A row of another window (the limit's window changed) is history.
        if let Some(period) = Period::parse_key(r.window(), &period)
            && r.window() != Window::None
        {
            r.counter = Counter::stored(period, to_count("quota_usage", used)?, RowId::new(row));
        }
        n.node.last_updated = n.node.last_updated.max(parse_rfc3339(&last_updated));
    }

    for ClaimRow(node_id, resource_id, resource, amount, reason, created_at) in
        parse_page::<ClaimRow<'_>>("quota_claims", &text.claims)?
    {
        let Some(n) = index.get(node_id.as_ref()).and_then(|&i| nodes.get_mut(i)) else {
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

    for GrantRow(node_id, subject, role) in
        parse_page::<GrantRow<'_>>("quota_grants", &text.grants)?
    {
        let Some(n) = index.get(node_id.as_ref()).and_then(|&i| nodes.get_mut(i)) else {
            continue;
        };
        let role = Role::parse(&role)
            .map_err(|e| corrupt("quota_grants", format!("{e} (a grant on {node_id})")))?;
        n.grants.push(NodeGrant {
            subject: subject.into(),
            role,
        });
    }
    Ok(nodes)
}

/// The counter of a removed limit from its latest usage row, when the row
/// is of the period that holds `now` and has usage.
fn removed_limit(
    resource: &str,
    key: &str,
    used: i64,
    row: i64,
    now: i64,
) -> Result<Option<Resource>, StoreError> {
    let used = to_count("quota_usage", used)?;
    let windows = [Window::Minute, Window::Hour, Window::Day, Window::Month];
    let Some(period) = windows
        .into_iter()
        .find_map(|w| Period::parse_key(w, key))
        .filter(|p| used > 0 && *p == p.window().period_at(now))
    else {
        return Ok(None);
    };
    Ok(Some(Resource::removed(
        resource,
        period,
        used,
        RowId::new(row),
    )))
}

/// Runs a statement that returns one text (a page's JSON).
async fn fetch_text(tx: &mut sqlx::AnyConnection, q: Sql) -> Result<String, StoreError> {
    let (sql, args) = q.into_parts();
    let (text,): (String,) = sqlx::query_as_with(sql, args).fetch_one(&mut *tx).await?;
    Ok(text)
}

/// A read's sink: here, or with the task building (and taking) a page.
enum Held<S> {
    Here(S),
    Building(tokio::task::JoinHandle<Result<S, StoreError>>),
}

impl<S> Held<S> {
    /// The sink, once the page it was taking is in.
    async fn back(self) -> Result<S, StoreError> {
        match self {
            Held::Here(s) => Ok(s),
            Held::Building(task) => task
                .await
                .map_err(|e| StoreError::Interrupted(format!("building a page: {e}")))?,
        }
    }
}

fn parse_page<'a, T: Deserialize<'a>>(
    table: &'static str,
    text: &'a str,
) -> Result<Vec<T>, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(table, format!("unreadable rows: {e}")))
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
