//! The counter store: every quota node's limits and usage, in memory.
//!
//! ```text
//!  consume / increment ──▶ DashMap<id, Entry> ──(dirty marks, retired rows)──▶ take_dirty() ──▶ flush
//!   one shard lock per call;                                                     (persistence)
//!   ancestors' states read one at a time before it
//! ```
//!
//! This is the request path. It never awaits anything: a usage call reads
//! the ancestors' states (suspended? overcommitted?), then takes the node's
//! shard lock, rolls periods if the clock moved on, checks and adds, marks
//! the entry dirty; below a root it then sends the change of the node's
//! share to each ancestor in turn (their rollups: what the children use and
//! hold; see `domain::node`). No call ever holds two entries at once, so
//! there is no lock order to get wrong.
//!
//! Structure changes (create, limits, state, delete, claims) are made by
//! [`crate::quotas`] under its write lock, through the small primitives at
//! the end of this file, in an order that is always conservative: a parent
//! reserves before a child grows, and a child shrinks before the parent
//! releases, so no interleaving with usage calls ever admits more than a
//! limit.
//!
//! A flat tenant is a root node with the built-in resources `messages`
//! (day) and `bandwidth` (month); an unknown tenant is created on first use
//! with the default limits and persisted with the next flush.
//!
//! Flushes add deltas per `(node, resource, period)`: every counter knows
//! how much of its usage is not flushed yet ([`Counter::unflushed`]). With a
//! shared database, each flush reads back the totals other replicas wrote
//! ([`CounterStore::apply_totals`]) and the nodes they changed
//! ([`CounterStore::sync_nodes`]).
//!
//! [`Counter::unflushed`]: crate::domain::counter::Counter::unflushed

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use smallvec::SmallVec;

use crate::clock::SharedClock;
use crate::domain::counter::Retired;
use crate::domain::node::{
    self, Limit, Node, NodeState, Refusal, ShareDeltas, ShareOf, StrictItem,
};
use crate::domain::resource::{BANDWIDTH, MESSAGES, ResourceName};
use crate::domain::tenant::{Limits, QuotaView, TenantView, Usage};
use crate::domain::window::{Period, Window};
use crate::rows::{
    Claim, DirtyBatch, LoadedNode, NewTenantRow, NodeSink, StoredRows, StoredTotal, UsageDelta,
    UsageDeltas,
};

/// One node in the store.
#[derive(Debug)]
struct Entry {
    node: Node,
    /// Capacity claims by resource id; `None` while there are none (most
    /// nodes: an empty map inline took 24 bytes of every tenant).
    claims: Option<BoxedClaims>,
    /// Some counter has usage not handed to a flush yet.
    dirty: bool,
    /// The node row does not exist in the database yet (a flat tenant
    /// created on first use; persisted with the next flush).
    unsaved: bool,
    /// Store version of the last change (for snapshots).
    version: u64,
}

/// The entries a flush must visit: the ids of those that turned dirty (or
/// were created unsaved) since a flush last took them, or, once more than
/// `limit` did, all of them. A flush visits the ids instead of every
/// entry: with a million resident tenants, scanning them all each second
/// for the few that changed took a tenth of a core. Some ids may be of
/// entries clean again; the entries' flags are the truth.
#[derive(Debug, Default)]
struct Changed {
    ids: Vec<Box<str>>,
    /// More than `limit` changed: the flush scans the whole map, which
    /// beats a lookup each when most entries changed.
    all: bool,
    /// A quarter of the entries at the last flush or load (at least
    /// [`Changed::MIN_LIMIT`]).
    limit: usize,
}

// === impl Changed ===

impl Changed {
    const MIN_LIMIT: usize = 1024;

    fn limit_for(entries: usize) -> usize {
        (entries / 4).max(Self::MIN_LIMIT)
    }

    fn note(&mut self, id: &str) {
        if self.all {
            return;
        }
        if self.ids.len() < self.limit {
            self.ids.push(id.into());
        } else {
            self.all = true;
        }
    }
}

/// Whether a node in `state` takes usage: refused when suspended or deleted.
fn accepts_usage(id: &str, state: NodeState) -> Result<(), UsageError> {
    match state {
        NodeState::Active => Ok(()),
        NodeState::Suspended => Err(Refusal::Suspended {
            node: id.to_owned(),
        }
        .into()),
        NodeState::Deleted => Err(Refusal::Deleted {
            node: id.to_owned(),
        }
        .into()),
    }
}

/// Boxed on purpose: a pointer (8 bytes, null while there are none) instead
/// of an empty map inline (24) in each of a million entries.
#[allow(clippy::box_collection)]
type BoxedClaims = Box<BTreeMap<String, Claim>>;

fn boxed_claims(claims: BTreeMap<String, Claim>) -> Option<BoxedClaims> {
    (!claims.is_empty()).then(|| Box::new(claims))
}

fn claim_count(claims: &Option<BoxedClaims>) -> usize {
    claims.as_ref().map_or(0, |c| c.len())
}

/// One resource of a node as seen at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceView {
    pub name: String,
    pub max: u64,
    pub window: Window,
    /// The node's own usage (includes usage charged by deleted children).
    pub used: u64,
    /// Usage of the node and all its (not deleted) descendants.
    pub subtree_used: u64,
    /// What the active children hold: each its `max`, or its subtree's
    /// usage when that is more.
    pub allocated: u64,
    /// What the node itself may still use: `max - allocated - used`.
    pub available: u64,
    pub period: Period,
    pub reset_at: Option<i64>,
    pub exceeded: bool,
    pub overcommitted: bool,
}

/// A node as seen at an instant (what the v1 API reports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    pub parent: Option<String>,
    pub state: NodeState,
    pub strict: bool,
    pub name: Option<String>,
    pub description: Option<String>,
    pub resources: Vec<ResourceView>,
    pub children: Vec<String>,
    pub claims: usize,
    pub created_at: i64,
    pub last_updated: Option<i64>,
    pub version: u64,
}

impl NodeView {
    pub fn exceeded(&self) -> bool {
        self.resources.iter().any(|r| r.exceeded)
    }

    pub fn overcommitted(&self) -> bool {
        self.resources.iter().any(|r| r.overcommitted)
    }

    pub fn resource(&self, name: &str) -> Option<&ResourceView> {
        self.resources.iter().find(|r| r.name == name)
    }
}

/// Why a usage call was refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("no quota node {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The node counts in the database ([`Node::strict`]): the caller must
    /// take the strict path. Nothing was counted.
    #[error("quota node {0:?} is strict")]
    Strict(String),
}

/// All nodes' limits and usage.
#[derive(Debug)]
pub struct CounterStore {
    /// Entries are boxed: a map slot is then 24 bytes, not ~200, and a
    /// table is at most half full after growing, so a million flat tenants
    /// take an eighth of the memory in slots. Hashed with foldhash (randomly
    /// seeded per map): SipHash, std's default, was a visible part of a
    /// batch item's cost (two lookups each; docs/perf-history).
    nodes: DashMap<Box<str>, Box<Entry>, foldhash::fast::RandomState>,
    /// Deltas that must be written by the next flush: finished periods and
    /// batches of flushes that failed before they could commit.
    pending: Mutex<UsageDeltas>,
    pending_tenants: Mutex<Vec<NewTenantRow>>,
    /// Children among the nodes of batches given back (see
    /// [`DirtyBatch::children`]).
    pending_children: Mutex<Vec<String>>,
    /// What changed since the last flush took it (see [`Changed`]).
    changed: Mutex<Changed>,
    version: AtomicU64,
    clock: SharedClock,
    default_limits: Limits,
    auto_reset: bool,
}

/// (parent, child, [(resource, max)]) of a live child: what it reserves.
type Reservation = (Box<str>, Box<str>, Vec<(ResourceName, u64)>);

/// Fills a [`CounterStore`] from the database at startup, a page of nodes
/// at a time: entries go in as their page arrives (while the next pages
/// are read), the children lists and reservations, which need every
/// parent in, at [`Loading::finish`].
#[derive(Debug)]
pub struct Loading {
    store: Arc<CounterStore>,
    reservations: Vec<Reservation>,
    /// (child, parent) of every live child, for the parents' rollups.
    children: Vec<(Box<str>, Box<str>)>,
    /// The version every loaded entry gets.
    version: u64,
}

// === impl CounterStore: construction and reads ===

impl CounterStore {
    pub fn new(clock: SharedClock, default_limits: Limits, auto_reset: bool) -> Self {
        Self::with_capacity(clock, default_limits, auto_reset, 0)
    }

    /// A store with room for `nodes` entries: a load of a million nodes
    /// into an empty map spent a fifth of its time growing the map.
    pub fn with_capacity(
        clock: SharedClock,
        default_limits: Limits,
        auto_reset: bool,
        nodes: usize,
    ) -> Self {
        // Versions start from the clock (microseconds), so they keep
        // increasing across restarts: a client can order views of a node
        // even when the service restarted between them.
        let start = u64::try_from(clock.now())
            .unwrap_or(0)
            .saturating_mul(1_000_000);
        CounterStore {
            nodes: DashMap::with_capacity_and_hasher(nodes, foldhash::fast::RandomState::default()),
            pending: Mutex::new(UsageDeltas::new()),
            pending_tenants: Mutex::new(Vec::new()),
            pending_children: Mutex::new(Vec::new()),
            changed: Mutex::new(Changed {
                limit: Changed::MIN_LIMIT,
                ..Changed::default()
            }),
            version: AtomicU64::new(start),
            clock,
            default_limits,
            auto_reset,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn auto_reset(&self) -> bool {
        self.auto_reset
    }

    pub fn default_limits(&self) -> Limits {
        self.default_limits
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The store's current version: every change gets a higher one.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::SeqCst)
    }

    fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Fills the store from the database (startup only), all nodes at once
    /// (see [`Loading`] for a page at a time).
    pub fn load(self: &Arc<Self>, nodes: impl IntoIterator<Item = LoadedNode>) {
        let mut loading = self.loading();
        loading.add(nodes);
        loading.finish();
    }

    /// Fills the store a page of nodes at a time (see [`Loading`]).
    pub fn loading(self: &Arc<Self>) -> Loading {
        Loading {
            store: self.clone(),
            reservations: Vec::new(),
            children: Vec::new(),
            version: self.next_version(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.nodes.contains_key(id)
    }

    /// A copy of the node (for the write-through layer's planning).
    pub fn node(&self, id: &str) -> Option<Node> {
        self.nodes.get(id).map(|e| e.node.clone())
    }

    pub fn claims(&self, id: &str) -> Option<BTreeMap<String, Claim>> {
        self.nodes
            .get(id)
            .map(|e| e.claims.as_deref().cloned().unwrap_or_default())
    }

    /// Every id, sorted (for paging).
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.nodes.iter().map(|e| e.key().to_string()).collect();
        ids.sort_unstable();
        ids
    }

    /// The node with its subtree usage, or `None` when unknown.
    pub fn view(&self, id: &str) -> Option<NodeView> {
        let now = self.now();
        let e = self.nodes.get(id)?;
        Some(self.build_view(id, &e, now))
    }

    fn build_view(&self, id: &str, e: &Entry, now: i64) -> NodeView {
        let node = &e.node;
        let resources = node
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (period, used) = r.used_at(now, self.auto_reset);
                let subtree_used = node.subtree_used(i, now, self.auto_reset);
                let held = node.held(i, now, self.auto_reset);
                ResourceView {
                    name: r.name.to_string(),
                    max: r.max,
                    window: r.window(),
                    used,
                    subtree_used,
                    allocated: held,
                    available: node.available(i, now, self.auto_reset),
                    period,
                    reset_at: period.end(),
                    exceeded: node::exceeded(r.max, held, used, subtree_used),
                    overcommitted: node.overcommitted_at(i, now, self.auto_reset),
                }
            })
            .collect();
        NodeView {
            id: id.to_owned(),
            parent: node.parent.as_deref().map(str::to_owned),
            state: node.state,
            strict: node.strict,
            name: node.name().map(str::to_owned),
            description: node.description().map(str::to_owned),
            resources,
            children: node.children().iter().map(|c| c.to_string()).collect(),
            claims: claim_count(&e.claims),
            created_at: node.created_at,
            last_updated: node.last_updated,
            version: e.version,
        }
    }

    /// Every node changed since `since` (and every ancestor of one, whose
    /// subtree usage changed with it), with the version to ask from next.
    /// Periods that ended are rolled first, so a reset shows as a change.
    pub fn changed_since(&self, since: u64) -> (u64, Vec<NodeView>) {
        let now = self.now();
        // Roll every counter whose period ended, so resets are changes too.
        for mut e in self.nodes.iter_mut() {
            let retired = e.node.roll(now, self.auto_reset);
            if !retired.is_empty() {
                let id = e.key().to_string();
                self.retire_locked(&mut e, &id, retired, now);
            }
        }
        let version = self.version();
        // Each changed node and its ancestors (their subtree usage changed
        // with it, also when a period ended under them).
        let parents: HashMap<Box<str>, (Option<Box<str>>, u64)> = self
            .nodes
            .iter()
            .map(|e| (e.key().clone(), (e.node.parent.clone(), e.version)))
            .collect();
        let mut wanted: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (id, (_, v)) in &parents {
            if *v <= since {
                continue;
            }
            let mut cur = Some(&**id);
            while let Some(c) = cur {
                if !wanted.insert(c) {
                    break;
                }
                cur = parents.get(c).and_then(|(p, _)| p.as_deref());
            }
        }
        let mut views: Vec<NodeView> = wanted
            .into_iter()
            .filter_map(|id| {
                let e = self.nodes.get(id)?;
                Some(self.build_view(id, &e, now))
            })
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        (version, views)
    }

    /// Whether the node and all its ancestors accept usage (of `admit`:
    /// no ancestor may be overcommitted in one of them; see
    /// [`crate::domain::node`]).
    pub fn check_usable(&self, id: &str, admit: &[&str]) -> Result<(), UsageError> {
        let now = self.now();
        // One buffer for the ids on the way up (no allocation per level).
        let mut cur = String::new();
        {
            let e = self
                .nodes
                .get(id)
                .ok_or_else(|| UsageError::NotFound(id.to_owned()))?;
            accepts_usage(id, e.node.state)?;
            match e.node.parent.as_deref() {
                Some(p) => cur.push_str(p),
                None => return Ok(()),
            }
        }
        // Depth is bounded by the tree; a cycle cannot be created (parents
        // are immutable and must exist first), but guard anyway.
        for _ in 0..1_000 {
            let Some(e) = self.nodes.get(cur.as_str()) else {
                return Ok(());
            };
            if e.node.state != NodeState::Active {
                return Err(Refusal::Suspended { node: cur }.into());
            }
            for r in admit {
                e.node.admits_below(&cur, r, now, self.auto_reset)?;
            }
            match e.node.parent.as_deref() {
                Some(p) => {
                    cur.clear();
                    cur.push_str(p);
                }
                None => return Ok(()),
            }
        }
        Err(Refusal::Suspended { node: cur }.into())
    }
}

// === impl Loading ===

impl Loading {
    /// Puts a page of loaded nodes in, noting what each live child
    /// reserves from its parent.
    pub fn add(&mut self, nodes: impl IntoIterator<Item = LoadedNode>) {
        for n in nodes {
            if let (Some(parent), false) = (&n.node.parent, n.node.state == NodeState::Deleted) {
                let wants = n
                    .node
                    .resources
                    .iter()
                    .map(|r| (r.name.clone(), r.max))
                    .collect();
                self.reservations
                    .push((parent.clone(), n.id.as_str().into(), wants));
                self.children.push((n.id.as_str().into(), parent.clone()));
            }
            self.store.nodes.insert(
                n.id.into_boxed_str(),
                Box::new(Entry {
                    node: n.node,
                    claims: boxed_claims(n.claims),
                    dirty: false,
                    unsaved: false,
                    version: self.version,
                }),
            );
        }
    }

    /// Derives the children lists and reservations from the parents the
    /// loaded nodes named, once every node is in.
    pub fn finish(self) {
        let store = self.store;
        for (parent, child, wants) in self.reservations {
            if let Some(mut p) = store.nodes.get_mut(&*parent) {
                p.node.add_child(&child);
                for (resource, max) in wants {
                    if let Some(r) = p.node.resources.iter_mut().find(|r| r.name == resource) {
                        r.allocated = r.allocated.saturating_add(max);
                    }
                }
            }
        }
        // Parents' rollups from every child's share, parents before their
        // children: a child's whole share goes up while its own rollups are
        // still empty, and what its children add later goes up as the
        // change it makes (sent after them, it would be counted twice).
        let now = store.now();
        let children = self.children;
        let mut order: Vec<(usize, usize)> = {
            let parent_of: HashMap<&str, &str> =
                children.iter().map(|(c, p)| (&**c, &**p)).collect();
            children
                .iter()
                .enumerate()
                .map(|(i, (c, _))| {
                    let (mut id, mut d) = (&**c, 0usize);
                    while let Some(p) = parent_of.get(id)
                        && d <= 1_000
                    {
                        (id, d) = (p, d + 1);
                    }
                    (d, i)
                })
                .collect()
        };
        order.sort_unstable();
        for (child, parent) in order.into_iter().map(|(_, i)| &children[i]) {
            let shares = match store.nodes.get(child) {
                Some(e) => e.node.shares(now, store.auto_reset),
                None => continue,
            };
            let deltas = node::share_deltas(&[], &shares);
            store.propagate(parent, deltas, now);
        }
        let limit = Changed::limit_for(store.nodes.len());
        lock(&store.changed).limit = limit;
    }
}

impl NodeSink for Loading {
    fn take(&mut self, page: Vec<LoadedNode>) {
        self.add(page);
    }
}

// === impl CounterStore: usage (the request path) ===

impl CounterStore {
    /// Atomic check-and-increment on a node (v1 `consume`).
    pub fn consume(&self, id: &str, usage: &[(&str, u64)]) -> Result<(), UsageError> {
        let names = names_of(usage);
        self.apply_usage(id, &names, true, |node, now, auto_reset| {
            node.consume(usage, now, auto_reset)
        })
    }

    /// Tracking increment on a node: always counts (v1 batch `increment`).
    pub fn increment(&self, id: &str, usage: &[(&str, u64)]) -> Result<(), UsageError> {
        let names = names_of(usage);
        self.apply_usage(id, &names, false, |node, now, auto_reset| {
            node.increment(usage, now, auto_reset)
        })
    }

    /// Checks that the node and its ancestors accept usage (and, to
    /// `admit` it, are not overcommitted in one of `names`), then applies
    /// `f` (which changes only `names`) under the node's lock (re-checking
    /// its own state there) and sends the change up the tree.
    fn apply_usage(
        &self,
        id: &str,
        names: &[&str],
        admit: bool,
        f: impl FnOnce(&mut Node, i64, bool) -> Result<Vec<(ResourceName, Retired)>, Refusal>,
    ) -> Result<(), UsageError> {
        let now = self.now();
        // A root has no ancestors to check: one lookup (the common case of
        // flat tenants and top-level quotas). Otherwise the ancestors are
        // read first, without holding this entry's lock (the guard must be
        // dropped before: a shard lock held across check_usable deadlocks).
        let root = self.nodes.get_mut(id).filter(|e| e.node.parent.is_none());
        let mut e = match root {
            Some(e) => e,
            None => {
                self.check_usable(id, if admit { names } else { &[] })?;
                self.nodes
                    .get_mut(id)
                    .ok_or_else(|| UsageError::NotFound(id.to_owned()))?
            }
        };
        accepts_usage(id, e.node.state)?;
        if e.node.strict {
            return Err(UsageError::Strict(id.to_owned()));
        }
        let Some(parent) = e.node.parent.clone() else {
            let retired = f(&mut e.node, now, self.auto_reset)?;
            self.mark_changed(&mut e, id, retired, now);
            return Ok(());
        };
        let before = shares_of(&e.node, names, now, self.auto_reset);
        let retired = f(&mut e.node, now, self.auto_reset)?;
        self.mark_changed(&mut e, id, retired, now);
        let after = shares_of(&e.node, names, now, self.auto_reset);
        drop(e);
        self.propagate(&parent, node::share_of_deltas(names, &before, &after), now);
        Ok(())
    }

    /// Applies `f` to an entry under its lock, then sends the change of the
    /// node's shares up the tree (one ancestor at a time, never two locks
    /// held). Every change of a child's usage, limits or state goes
    /// through here or [`CounterStore::apply_usage`].
    fn with_entry<T>(&self, id: &str, f: impl FnOnce(&mut Entry, i64) -> T) -> Option<T> {
        let now = self.now();
        let mut e = self.nodes.get_mut(id)?;
        // A root holds nothing of anyone (a deleted root created again as
        // a child starts holding with this change).
        let before = match e.node.parent {
            Some(_) => e.node.shares(now, self.auto_reset),
            None => node::Shares::new(),
        };
        let out = f(&mut e, now);
        if let Some(parent) = e.node.parent.clone() {
            let after = e.node.shares(now, self.auto_reset);
            drop(e);
            self.propagate(&parent, node::share_deltas(&before, &after), now);
        }
        Some(out)
    }

    /// Adds a child's share deltas to `parent`'s rollups, and the parent's
    /// own resulting deltas to its parent, up to the root.
    fn propagate(&self, parent: &str, mut deltas: ShareDeltas<'_>, now: i64) {
        // One buffer for the ids on the way up (no allocation per level).
        let mut cur = String::with_capacity(64);
        cur.push_str(parent);
        // Depth is bounded by the tree (parents are immutable and exist
        // first, so there is no cycle); the bound only guards.
        for _ in 0..1_000 {
            if deltas.is_empty() {
                return;
            }
            let Some(mut e) = self.nodes.get_mut(cur.as_str()) else {
                return;
            };
            // Only the resources that changed below change here.
            let mut names: SmallVec<[&str; 4]> = SmallVec::new();
            for d in &deltas {
                if !names.contains(&d.name) {
                    names.push(d.name);
                }
            }
            let has_parent = e.node.parent.is_some();
            let before = if has_parent {
                shares_of(&e.node, &names, now, self.auto_reset)
            } else {
                SmallVec::new()
            };
            for d in &deltas {
                e.node.absorb(d, self.auto_reset);
            }
            e.version = self.next_version();
            let (true, Some(next)) = (has_parent, e.node.parent.as_deref()) else {
                return;
            };
            cur.clear();
            cur.push_str(next);
            let after = shares_of(&e.node, &names, now, self.auto_reset);
            drop(e);
            deltas = node::share_of_deltas(&names, &before, &after);
        }
    }

    /// The flat `increment`: counts messages and bytes for `tenant_id`,
    /// creating it as a root node with the default limits if unknown, and
    /// returns the tenant as it stands after the increment.
    pub fn increment_flat(&self, tenant_id: &str, usage: Usage) -> Result<TenantView, UsageError> {
        let now = self.now();
        let mut e = match self.nodes.get_mut(tenant_id) {
            Some(e) => e,
            None => self.nodes.entry(tenant_id.into()).or_insert_with(|| {
                lock(&self.changed).note(tenant_id);
                Box::new(Entry {
                    node: flat_node(self.default_limits, now),
                    claims: None,
                    dirty: false,
                    unsaved: true,
                    version: 0,
                })
            }),
        };
        if e.node.strict {
            return Err(UsageError::Strict(tenant_id.to_owned()));
        }
        // Zero amounts are skipped: a node without a `bandwidth` limit still
        // counts messages (counting zero of something it lacks is no error).
        let pairs = [(MESSAGES, usage.messages), (BANDWIDTH, usage.bytes)];
        let counted: SmallVec<[(&str, u64); 2]> =
            pairs.into_iter().filter(|(_, n)| *n > 0).collect();
        if e.node.parent.is_some() || e.node.state != NodeState::Active {
            // Rare: a v1 node used through the flat API. Its ancestry is
            // checked without holding this entry.
            drop(e);
            let names = names_of(&counted);
            self.apply_usage(tenant_id, &names, false, |node, now, auto_reset| {
                node.increment(&counted, now, auto_reset)
            })?;
            return self
                .flat(tenant_id)
                .ok_or_else(|| UsageError::NotFound(tenant_id.to_owned()));
        }
        let retired = e.node.increment(&counted, now, self.auto_reset)?;
        self.mark_changed(&mut e, tenant_id, retired, now);
        Ok(flat_view(&e.node, now, self.auto_reset))
    }

    /// What a strict usage call on `id` must add in the database (see
    /// [`Node::plan_strict`]), after checking the node and its ancestors
    /// accept usage.
    pub fn plan_strict(
        &self,
        id: &str,
        usage: &[(&str, u64)],
        enforce: bool,
    ) -> Result<Vec<StrictItem>, UsageError> {
        let names = names_of(usage);
        self.check_usable(id, if enforce { &names } else { &[] })?;
        let e = self
            .nodes
            .get(id)
            .ok_or_else(|| UsageError::NotFound(id.to_owned()))?;
        Ok(e.node
            .plan_strict(usage, self.now(), self.auto_reset, enforce)?)
    }

    /// Records the totals the database returned for a strict call.
    pub fn set_totals(&self, id: &str, totals: &[(&str, Period, u64)]) {
        self.with_entry(id, |e, now| {
            let retired = e.node.set_totals(totals, now, self.auto_reset);
            self.retire_locked(e, id, retired, now);
            e.version = self.next_version();
        });
    }

    /// The flat view of a node, or `None` when unknown.
    pub fn flat(&self, tenant_id: &str) -> Option<TenantView> {
        let now = self.now();
        self.nodes
            .get(tenant_id)
            .filter(|e| e.node.state != NodeState::Deleted)
            .map(|e| flat_view(&e.node, now, self.auto_reset))
    }

    /// The flat view, or a fresh tenant's with the default limits when unknown
    /// (not stored: a check creates nothing).
    pub fn flat_or_default(&self, tenant_id: &str) -> TenantView {
        let now = self.now();
        self.flat(tenant_id).unwrap_or_else(|| {
            flat_view(&flat_node(self.default_limits, now), now, self.auto_reset)
        })
    }

    /// Every node's flat view, sorted by id.
    pub fn flat_list(&self) -> Vec<(String, TenantView)> {
        let now = self.now();
        let mut all: Vec<_> = self
            .nodes
            .iter()
            .filter(|e| e.node.state != NodeState::Deleted)
            .map(|e| {
                (
                    e.key().to_string(),
                    flat_view(&e.node, now, self.auto_reset),
                )
            })
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    fn mark_changed(
        &self,
        e: &mut Entry,
        id: &str,
        retired: Vec<(ResourceName, Retired)>,
        now: i64,
    ) {
        self.retire_locked(e, id, retired, now);
        self.set_dirty(e, id);
        e.version = self.next_version();
    }

    /// Marks an entry dirty, noting its id for the flush when it was clean.
    fn set_dirty(&self, e: &mut Entry, id: &str) {
        if !e.dirty && !e.unsaved {
            lock(&self.changed).note(id);
        }
        e.dirty = true;
    }

    /// Queues what finished periods had not flushed yet.
    fn retire_locked(
        &self,
        e: &mut Entry,
        id: &str,
        retired: Vec<(ResourceName, Retired)>,
        now: i64,
    ) {
        if retired.is_empty() {
            return;
        }
        let last_updated = e.node.last_updated.unwrap_or(now);
        let mut pending = lock(&self.pending);
        for (resource, r) in retired.iter().filter(|(_, r)| r.unflushed > 0) {
            pending.push(UsageDelta {
                node_id: id,
                resource,
                period: r.period,
                delta: r.unflushed,
                last_updated,
                stored_row: r.stored_row,
            });
        }
        drop(pending);
        e.version = self.next_version();
    }
}

/// A flat tenant: a root node with messages per day and bandwidth per month.
pub fn flat_node(limits: Limits, now: i64) -> Node {
    Node::new(
        None,
        &[
            (
                BANDWIDTH.to_owned(),
                Limit {
                    max: limits.bandwidth_limit_bytes,
                    window: Window::Month,
                },
            ),
            (
                MESSAGES.to_owned(),
                Limit {
                    max: limits.message_limit,
                    window: Window::Day,
                },
            ),
        ],
        now,
    )
}

/// The flat view of any node: its `messages` and `bandwidth` resources
/// (a node without one shows limit 0 and no usage for it).
pub fn flat_view(node: &Node, now: i64, auto_reset: bool) -> TenantView {
    let quota = |name: &str, window: Window| match node.resource(name) {
        Some(r) => {
            let (period, used) = r.used_at(now, auto_reset);
            QuotaView {
                period,
                used,
                limit: r.max,
                allocated: r.allocated,
                tracked: true,
            }
        }
        None => QuotaView {
            period: window.period_at(now),
            used: 0,
            limit: 0,
            allocated: 0,
            tracked: false,
        },
    };
    let messages = quota(MESSAGES, Window::Day);
    let bandwidth = quota(BANDWIDTH, Window::Month);
    TenantView {
        limits: Limits {
            message_limit: messages.limit,
            bandwidth_limit_bytes: bandwidth.limit,
        },
        messages,
        bandwidth,
        last_updated: node.last_updated,
    }
}

// === impl CounterStore: flushing ===

impl CounterStore {
    /// Hands over everything that must be written, clearing the dirty marks.
    /// If the write fails, pass the batch to [`CounterStore::requeue`].
    pub fn take_dirty(&self) -> DirtyBatch {
        // Counted before taking the lock: an entry's lock is held while
        // noting it, and `len` takes every shard's.
        let limit = Changed::limit_for(self.nodes.len());
        let (changed, all) = {
            let mut c = lock(&self.changed);
            c.limit = limit;
            (std::mem::take(&mut c.ids), std::mem::take(&mut c.all))
        };
        let mut batch = DirtyBatch {
            new_tenants: std::mem::take(&mut *lock(&self.pending_tenants)),
            children: std::mem::take(&mut *lock(&self.pending_children)),
            usage: std::mem::take(&mut *lock(&self.pending)),
        };
        let now = self.now();
        // An entry that changes from here on is noted for the next flush.
        if all {
            for mut e in self.nodes.iter_mut() {
                let (id, entry) = e.pair_mut();
                self.take_entry(id, entry, &mut batch, now);
            }
        } else {
            for id in &changed {
                if let Some(mut e) = self.nodes.get_mut(&**id) {
                    let (id, entry) = e.pair_mut();
                    self.take_entry(id, entry, &mut batch, now);
                }
            }
        }
        batch
    }

    /// Moves what one entry has for the flush into `batch`.
    fn take_entry(&self, id: &str, e: &mut Entry, batch: &mut DirtyBatch, now: i64) {
        if e.unsaved {
            e.unsaved = false;
            let view = flat_view(&e.node, now, self.auto_reset);
            batch.new_tenants.push(NewTenantRow {
                tenant_id: id.to_string(),
                limits: view.limits,
                created_at: e.node.created_at,
            });
        }
        if e.dirty {
            e.dirty = false;
            let last_updated = e.node.last_updated.unwrap_or(now);
            let child = e.node.parent.is_some();
            let mut counted = false;
            for r in e.node.counters_mut() {
                let delta = r.counter.take_unflushed();
                if r.window() == Window::None || delta == 0 {
                    continue; // capacities are written through as claims
                }
                counted = true;
                batch.usage.push(UsageDelta {
                    node_id: id,
                    resource: &r.name,
                    period: r.counter.period,
                    delta,
                    last_updated,
                    stored_row: r.counter.stored_row,
                });
            }
            if child && counted {
                batch.children.push(id.to_owned());
            }
        }
    }

    /// Remembers the ids of rows a flush wrote by key: each counter still
    /// in that row's period addresses it by id from the next flush on.
    pub fn remember_rows(&self, rows: &StoredRows) {
        for (node_id, resource, period, row) in rows.iter() {
            let Some(mut e) = self.nodes.get_mut(node_id) else {
                continue;
            };
            if let Some(r) = e
                .node
                .counters_mut()
                .find(|r| r.name == *resource && r.counter.period == period)
            {
                r.counter.stored_row = Some(row);
            }
        }
    }

    /// Gives back a batch that was certainly not written (its transaction
    /// failed before the commit); the next flush adds its deltas with the
    /// newer ones.
    pub fn requeue(&self, batch: DirtyBatch) {
        lock(&self.pending).append(batch.usage);
        lock(&self.pending_tenants).extend(batch.new_tenants);
        lock(&self.pending_children).extend(batch.children);
    }

    /// Takes the stored totals read back from a shared database: each
    /// counter in that period becomes `total + unflushed` (what other
    /// replicas added shows up here). Rows of periods a counter has left, or
    /// not reached, are history and ignored.
    pub fn apply_totals(&self, totals: &[StoredTotal]) {
        for t in totals {
            self.with_entry(t.node_id.as_str(), |e, now| {
                let retired = e.node.roll(now, self.auto_reset);
                let mut changed = false;
                if let Some(r) = e
                    .node
                    .resources
                    .iter_mut()
                    .find(|r| *r.name == *t.resource && r.window() != Window::None)
                    && r.counter.period.key() == t.period
                {
                    let before = r.counter.used;
                    r.counter.set_stored_total(t.used);
                    changed = r.counter.used != before;
                }
                self.retire_locked(e, &t.node_id, retired, now);
                if changed {
                    e.version = self.next_version();
                }
            });
        }
    }

    /// Takes nodes another replica created or changed (read back from a
    /// shared database): their rows, limits, state and claims replace what
    /// memory holds, usage not flushed yet stays, and the reservations and
    /// children lists of their old and new parents follow. Called under the
    /// write lock, so no local structure change runs meanwhile.
    pub fn sync_nodes(&self, nodes: Vec<LoadedNode>) {
        let now = self.now();
        for loaded in nodes {
            let id = loaded.id.as_str();
            // What the node reserved from its parent before, and now.
            let old = self.nodes.get(id).map(|e| reservation(&e.node));
            let new = reservation(&loaded.node);
            if self.contains(id) {
                let (node, claims) = (loaded.node, loaded.claims);
                self.with_entry(id, |e, now| {
                    let mut retired = e.node.roll(now, self.auto_reset);
                    retired.extend(merge_synced(&mut e.node, node));
                    e.claims = boxed_claims(claims);
                    self.retire_locked(e, id, retired, now);
                    e.version = self.next_version();
                });
            } else {
                let shares = loaded.node.shares(now, self.auto_reset);
                let parent = loaded.node.parent.clone();
                self.nodes.insert(
                    id.into(),
                    Box::new(Entry {
                        node: loaded.node,
                        claims: boxed_claims(loaded.claims),
                        dirty: false,
                        unsaved: false,
                        version: self.next_version(),
                    }),
                );
                if let Some(p) = parent {
                    self.propagate(&p, node::share_deltas(&[], &shares), now);
                }
            }
            if old.as_ref() == Some(&new) {
                continue;
            }
            if let Some(Some((parent, amounts))) = &old
                && let Some(mut p) = self.nodes.get_mut(parent.as_str())
            {
                for (resource, amount) in amounts {
                    p.node.unreserve(resource, *amount);
                }
                p.node.remove_child(id);
                p.version = self.next_version();
            }
            if let Some((parent, amounts)) = &new
                && let Some(mut p) = self.nodes.get_mut(parent.as_str())
            {
                for (resource, amount) in amounts {
                    if let Some(r) = p.node.resources.iter_mut().find(|r| *r.name == **resource) {
                        r.allocated = r.allocated.saturating_add(*amount);
                    }
                }
                p.node.add_child(id);
                p.version = self.next_version();
            }
        }
    }

    /// Rows waiting in the pending queue (finished periods, failed flushes).
    pub fn pending_rows(&self) -> usize {
        lock(&self.pending).len()
    }

    /// Whether the node still waits for its first flush (a flat tenant
    /// created on first use).
    pub fn is_unsaved(&self, id: &str) -> bool {
        self.nodes.get(id).is_some_and(|e| e.unsaved)
    }
}

// === impl CounterStore: structure primitives (called under the write lock) ===

impl CounterStore {
    /// Inserts a node that the database already holds. Fails (returning the
    /// node) if the id was taken meanwhile.
    pub fn insert_node(&self, id: &str, node: Node) -> Result<(), Box<Node>> {
        match self.nodes.entry(id.into()) {
            dashmap::Entry::Occupied(_) => Err(Box::new(node)),
            dashmap::Entry::Vacant(v) => {
                v.insert(Box::new(Entry {
                    node,
                    claims: None,
                    dirty: false,
                    unsaved: false,
                    version: self.next_version(),
                }));
                Ok(())
            }
        }
    }

    /// Applies `f` to a node under its lock and records the change.
    pub fn update<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Node, &mut BTreeMap<String, Claim>, i64) -> T,
    ) -> Option<T> {
        self.with_entry(id, |e, now| {
            let Entry { node, claims, .. } = e;
            let map = claims.get_or_insert_with(Box::default);
            let out = f(node, map, now);
            if map.is_empty() {
                *claims = None;
            }
            e.version = self.next_version();
            out
        })
    }

    /// Like [`CounterStore::update`] for a fallible change: records a change
    /// only when `f` succeeds (a refused claim changes nothing).
    pub fn try_update<T, E>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Node, i64) -> Result<T, E>,
    ) -> Option<Result<T, E>> {
        self.with_entry(id, |e, now| {
            let out = f(&mut e.node, now);
            if out.is_ok() {
                e.version = self.next_version();
            }
            out
        })
    }

    /// Reserves a child's limits from `parent` (all or nothing).
    pub fn reserve(&self, parent: &str, wants: &[(String, Limit)]) -> Result<(), ReserveFailure> {
        self.reserve_growth(parent, wants, &[])
    }

    /// Reserves the growth of a child's limits from `parent`, counting what
    /// the child holds past its old `max` already (`held`: resource and
    /// amount; see [`Node::reserve_growth`]).
    pub fn reserve_growth(
        &self,
        parent: &str,
        wants: &[(String, Limit)],
        held: &[(ResourceName, u64)],
    ) -> Result<(), ReserveFailure> {
        self.with_entry(parent, |e, now| {
            if e.node.state == NodeState::Deleted {
                return Err(ReserveFailure::ParentNotFound(parent.to_owned()));
            }
            let held_of = |name: &str| {
                held.iter()
                    .find(|(n, _)| **n == *name)
                    .map_or(0, |(_, h)| *h)
            };
            e.node
                .reserve_growth(wants, held_of, now, self.auto_reset)?;
            e.version = self.next_version();
            Ok(())
        })
        .unwrap_or_else(|| Err(ReserveFailure::ParentNotFound(parent.to_owned())))
    }

    /// Gives back reservations made by [`CounterStore::reserve`].
    pub fn unreserve(&self, parent: &str, amounts: &[(String, u64)]) {
        if let Some(mut e) = self.nodes.get_mut(parent) {
            for (resource, amount) in amounts {
                e.node.unreserve(resource, *amount);
            }
            e.version = self.next_version();
        }
    }

    /// Stops a child (state `deleted`) and charges its current usage to
    /// its parent in one step at the parent: the parent's subtree usage
    /// never dips while the usage moves. Returns what was charged: per
    /// counted resource with usage, its period and amount.
    pub fn stop_and_charge(&self, id: &str) -> Vec<(ResourceName, Period, u64)> {
        let now = self.now();
        let Some(mut e) = self.nodes.get_mut(id) else {
            return Vec::new();
        };
        let before = e.node.shares(now, self.auto_reset);
        e.node.state = NodeState::Deleted;
        e.version = self.next_version();
        let charged = counted_usage(&e.node, now, self.auto_reset);
        let Some(parent) = e.node.parent.clone() else {
            return charged;
        };
        drop(e);
        let deltas = node::share_deltas(&before, &[]);
        self.with_entry(&parent, |p, now| {
            for d in &deltas {
                p.node.absorb(d, self.auto_reset);
            }
            let mut retired = Vec::new();
            for (resource, period, amount) in &charged {
                retired.extend(
                    p.node
                        .charge(resource, *period, *amount, now, self.auto_reset),
                );
            }
            self.mark_changed(p, &parent, retired, now);
        });
        charged
    }

    /// Queues the unflushed usage of counters that ended (history rows for
    /// the next flush).
    pub fn retire(&self, id: &str, ended: Vec<(ResourceName, Retired)>) {
        if let Some(mut e) = self.nodes.get_mut(id) {
            self.retire_locked(&mut e, id, ended, self.now());
        }
    }

    /// Marks a node's usage dirty (so the next flush writes it).
    pub fn mark_dirty(&self, id: &str) {
        if let Some(mut e) = self.nodes.get_mut(id) {
            self.set_dirty(&mut e, id);
            e.version = self.next_version();
        }
    }
}

/// The resource names of a usage call.
fn names_of<'a>(usage: &[(&'a str, u64)]) -> SmallVec<[&'a str; 4]> {
    usage.iter().map(|(n, _)| *n).collect()
}

/// [`Node::share_of`] for each of `names`.
fn shares_of(
    n: &Node,
    names: &[&str],
    now: i64,
    auto_reset: bool,
) -> SmallVec<[Option<ShareOf>; 2]> {
    names
        .iter()
        .map(|name| n.share_of(name, now, auto_reset))
        .collect()
}

/// A node's counted (not capacity) resources with usage at `now`, removed
/// limits' counters included: resource, period, usage.
pub fn counted_usage(n: &Node, now: i64, auto_reset: bool) -> Vec<(ResourceName, Period, u64)> {
    n.counted_usage(now, auto_reset)
        .filter(|(_, _, used)| *used > 0)
        .collect()
}

/// The parent and amounts a node reserves: `None` for a root or a deleted node.
fn reservation(n: &Node) -> Option<(String, Vec<(String, u64)>)> {
    let parent = n.parent.as_deref()?;
    (n.state != NodeState::Deleted).then(|| {
        (
            parent.to_owned(),
            n.resources
                .iter()
                .map(|r| (r.name.to_string(), r.max))
                .collect(),
        )
    })
}

/// `node` takes the stored definition `synced`: its counters continue where
/// the resource and window stay the same (keeping unflushed usage), and
/// take the stored usage otherwise; capacities take the stored claims'
/// sum; `allocated` and the children (kept by this store) stay. Returns the
/// unflushed usage of counters that end (a resource removed or its window
/// changed), to be flushed for their period.
fn merge_synced(node: &mut Node, synced: Node) -> Vec<(ResourceName, Retired)> {
    let mut ended: Vec<(ResourceName, Retired)> = node
        .resources
        .iter()
        .filter(|old| {
            synced
                .resource(&old.name)
                .is_none_or(|r| r.window() != old.window())
        })
        .map(|old| (old.name.clone(), old.counter))
        .collect();
    ended.retain(|(_, c)| c.unflushed > 0);
    node.set_name(synced.name().map(str::to_owned));
    node.set_description(synced.description().map(str::to_owned));
    let mut resources = synced.resources;
    for r in &mut resources {
        if let Some(old) = node.resource(&r.name) {
            r.allocated = old.allocated;
            if old.window() == r.window() && r.window() != Window::None {
                let stored = if old.counter.period == r.counter.period {
                    r.counter.used
                } else {
                    old.counter.used.saturating_sub(old.counter.unflushed)
                };
                r.counter = old.counter;
                r.counter.set_stored_total(stored);
            }
        }
    }
    node.resources = resources;
    node.parent = synced.parent;
    node.state = synced.state;
    node.strict = synced.strict;
    node.created_at = synced.created_at;
    node.last_updated = node.last_updated.max(synced.last_updated);
    ended
}

/// Why a reservation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveFailure {
    #[error("parent {0:?} does not exist")]
    ParentNotFound(String),
    #[error(transparent)]
    DoesNotFit(#[from] node::ReserveError),
}

/// Locks a mutex, ignoring poisoning: the protected vectors stay valid even
/// if a holder panicked, and losing rows would be worse than keeping them.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::counter::RowId;

    const NOON: i64 = 1_795_348_800; // 2026-11-22T12:00:00Z

    /// The memory promise (1,000,000 tenants in under 400 MiB, BENCHMARKS.md)
    /// rests on these sizes: a boxed entry behind a 24-byte map slot, a flat
    /// tenant's two resources inline, built-in names shared.
    #[test]
    fn a_load_rolls_up_loaded_usage_once_whatever_the_order() {
        let mut squad = node(Some("team"), 100);
        squad.resources[0].counter.used = 90;
        let mut team = node(Some("org"), 300);
        team.resources[0].counter.used = 70;
        let mut org = node(None, 1000);
        org.resources[0].counter.used = 50;
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
            let nodes = [
                loaded("squad", squad.clone()),
                loaded("team", team.clone()),
                loaded("org", org.clone()),
            ];
            let s = store();
            s.load(order.map(|i| nodes[i].clone()));
            assert_eq!(messages(&s, "team").subtree_used, 160, "{order:?}");
            assert_eq!(messages(&s, "org").subtree_used, 210, "{order:?}");
        }
    }

    #[test]
    fn usage_rolls_up_through_every_ancestor_once() {
        let s = store();
        s.load([
            loaded("org", node(None, 1000)),
            loaded("team", node(Some("org"), 300)),
            loaded("squad", node(Some("team"), 100)),
        ]);
        s.consume("squad", &[(MESSAGES, 90)]).unwrap();
        s.consume("team", &[(MESSAGES, 70)]).unwrap();
        s.consume("org", &[(MESSAGES, 50)]).unwrap();
        assert_eq!(messages(&s, "squad").subtree_used, 90);
        assert_eq!(messages(&s, "team").subtree_used, 160);
        assert_eq!(messages(&s, "org").subtree_used, 210);
    }

    #[test]
    fn a_flat_tenant_stays_small() {
        assert_eq!(std::mem::size_of::<(Box<str>, Box<Entry>)>(), 24);
        // 216 bytes: a 224-byte allocation each (glibc), was 304.
        assert!(
            std::mem::size_of::<Entry>() <= 216,
            "{}",
            std::mem::size_of::<Entry>()
        );
        let node = flat_node(LIMITS, NOON);
        assert!(!node.resources.spilled(), "two resources are held inline");
        let other = flat_node(LIMITS, NOON + 1);
        for (a, b) in node.resources.iter().zip(&other.resources) {
            assert!(
                std::sync::Arc::ptr_eq(&a.name, &b.name),
                "{} is shared",
                a.name
            );
        }
    }

    const LIMITS: Limits = Limits {
        message_limit: 100,
        bandwidth_limit_bytes: 1 << 30,
    };

    fn store() -> Arc<CounterStore> {
        Arc::new(CounterStore::new(ManualClock::new(NOON), LIMITS, true))
    }

    fn node(parent: Option<&str>, messages: u64) -> Node {
        Node::new(
            parent,
            &[(
                MESSAGES.to_owned(),
                Limit {
                    max: messages,
                    window: Window::Day,
                },
            )],
            NOON,
        )
    }

    fn loaded(id: &str, n: Node) -> LoadedNode {
        LoadedNode {
            id: id.into(),
            node: n,
            claims: BTreeMap::new(),
        }
    }

    fn messages(s: &CounterStore, id: &str) -> ResourceView {
        s.view(id)
            .and_then(|v| v.resource(MESSAGES).cloned())
            .expect("node with messages")
    }

    fn total(id: &str, used: u64) -> StoredTotal {
        StoredTotal {
            node_id: id.into(),
            resource: MESSAGES.into(),
            period: Window::Day.period_at(NOON).key(),
            used,
        }
    }

    fn dirty_ids(batch: &DirtyBatch) -> Vec<&str> {
        let mut ids: Vec<&str> = batch.usage.iter().map(|d| d.node_id).collect();
        ids.sort_unstable();
        ids
    }

    /// A flush visits the entries that changed when few did, every entry
    /// when more than a quarter did; either way it takes each change once,
    /// and an entry that changes again after being taken is taken again.
    #[test]
    fn a_flush_takes_what_changed_whether_few_or_most_entries_changed() {
        let s = store();
        let ids: Vec<String> = (0..5000).map(|i| format!("n{i:04}")).collect();
        s.load(ids.iter().map(|id| loaded(id, node(None, 1000))));
        assert!(s.take_dirty().is_empty(), "nothing changed yet");

        // One of 5,000: the ids noted.
        s.increment("n0003", &[(MESSAGES, 1)]).ok();
        s.increment("n0003", &[(MESSAGES, 2)]).ok();
        assert_eq!(lock(&s.changed).ids.len(), 1, "noted once");
        let batch = s.take_dirty();
        assert_eq!(dirty_ids(&batch), ["n0003"]);
        assert_eq!(batch.usage.iter().map(|d| d.delta).sum::<u64>(), 3);
        assert!(s.take_dirty().is_empty(), "taken once");

        // 4,000 of 5,000: past the limit, a pass over the map.
        for id in &ids[..4000] {
            s.increment(id, &[(MESSAGES, 1)]).ok();
        }
        assert!(lock(&s.changed).all);
        let batch = s.take_dirty();
        assert_eq!(
            dirty_ids(&batch),
            ids[..4000].iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert!(s.take_dirty().is_empty(), "taken once");

        // Changed again after being taken; a tenant created on first use;
        // a node marked dirty without usage.
        s.increment("n0003", &[(MESSAGES, 4)]).ok();
        s.increment_flat(
            "fresh",
            Usage {
                messages: 1,
                bytes: 0,
            },
        )
        .ok();
        s.mark_dirty("n4999");
        assert!(!lock(&s.changed).all);
        let batch = s.take_dirty();
        assert_eq!(dirty_ids(&batch), ["fresh", "n0003"]);
        assert_eq!(
            batch
                .new_tenants
                .iter()
                .map(|t| t.tenant_id.as_str())
                .collect::<Vec<_>>(),
            ["fresh"]
        );
        assert!(s.take_dirty().is_empty());
    }

    /// Row ids a flush learned go to the counters still in that period; a
    /// counter entering a new period forgets its row.
    #[test]
    fn learned_row_ids_are_remembered_for_their_period_only() {
        let clock = ManualClock::new(NOON);
        let s = Arc::new(CounterStore::new(clock.clone(), LIMITS, true));
        s.load([loaded("a", node(None, 1000)), loaded("b", node(None, 1000))]);
        let today = Window::Day.period_at(NOON);
        let yesterday = Window::Day.period_at(NOON - 86_400);
        let row = |n| RowId::new(n).expect("non-zero");
        let messages_name: ResourceName = MESSAGES.into();
        let mut learned = StoredRows::default();
        learned.start_group(&messages_name, today);
        learned.push("a", row(7));
        learned.push("gone", row(8));
        learned.start_group(&messages_name, yesterday);
        learned.push("b", row(9));
        s.remember_rows(&learned);

        s.increment("a", &[(MESSAGES, 1)]).ok();
        s.increment("b", &[(MESSAGES, 1)]).ok();
        let batch = s.take_dirty();
        let hints: Vec<(&str, Option<RowId>)> = batch
            .usage
            .iter()
            .map(|d| (d.node_id, d.stored_row))
            .collect();
        assert!(hints.contains(&("a", Some(row(7)))), "{hints:?}");
        assert!(
            hints.contains(&("b", None)),
            "yesterday's row is not b's now: {hints:?}"
        );

        clock.advance(86_400);
        s.increment("a", &[(MESSAGES, 1)]).ok();
        let batch = s.take_dirty();
        let hints: Vec<(Period, Option<RowId>)> = batch
            .usage
            .iter()
            .map(|d| (d.period, d.stored_row))
            .collect();
        assert_eq!(hints, [(Window::Day.period_at(NOON + 86_400), None)]);
    }

    #[test]
    fn stored_totals_replace_the_stored_part_and_keep_unflushed_usage() {
        let s = store();
        s.load([loaded("a", node(None, 1000))]);
        s.increment("a", &[(MESSAGES, 5)]).ok();
        let batch = s.take_dirty();
        assert_eq!(batch.usage.len(), 1);
        assert_eq!(
            batch.usage.iter().map(|d| d.delta).collect::<Vec<_>>(),
            vec![5]
        );
        s.increment("a", &[(MESSAGES, 2)]).ok();
        // The database holds our 5 plus 40 from other replicas.
        s.apply_totals(&[total("a", 45)]);
        assert_eq!(messages(&s, "a").used, 47);
        // The next flush sends only the 2.
        let batch = s.take_dirty();
        assert_eq!(batch.usage.iter().map(|d| d.delta).sum::<u64>(), 2);
        // A row of another period is history.
        s.apply_totals(&[StoredTotal {
            period: "2026-11-21".into(),
            ..total("a", 999)
        }]);
        assert_eq!(messages(&s, "a").used, 47);
        // Unknown nodes are ignored.
        s.apply_totals(&[total("zzz", 1)]);
        assert!(!s.contains("zzz"));
    }

    /// Pages arrive in id order, so a child can be loaded before its
    /// parent: the reservations wait for the last page.
    #[test]
    fn a_load_in_pages_reserves_for_children_loaded_before_their_parent() {
        let s = store();
        let mut loading = s.loading();
        loading.add([
            loaded("a-team", node(Some("z-org"), 300)),
            loaded("b-team", node(Some("z-org"), 200)),
        ]);
        let mut gone = node(Some("z-org"), 50);
        gone.state = NodeState::Deleted;
        loading.add([loaded("c-gone", gone)]);
        loading.add([loaded("z-org", node(None, 1000))]);
        assert_eq!(messages(&s, "z-org").allocated, 0, "not before the end");
        loading.finish();

        assert_eq!(s.len(), 4);
        assert_eq!(
            messages(&s, "z-org").allocated,
            500,
            "deleted children reserve nothing"
        );
        assert_eq!(
            s.view("z-org").map(|v| v.children),
            Some(vec!["a-team".into(), "b-team".into()])
        );
        // The same nodes in one call give the same store.
        let whole = store();
        whole.load([
            loaded("z-org", node(None, 1000)),
            loaded("a-team", node(Some("z-org"), 300)),
            loaded("b-team", node(Some("z-org"), 200)),
        ]);
        assert_eq!(messages(&whole, "z-org").allocated, 500);
    }

    #[test]
    fn synced_nodes_carry_their_reservations_to_their_parents() {
        let s = store();
        s.load([loaded("org", node(None, 1000))]);
        // Another replica created team-a (300) under org.
        s.sync_nodes(vec![loaded("team-a", node(Some("org"), 300))]);
        assert_eq!(messages(&s, "org").allocated, 300);
        assert_eq!(
            s.view("org").map(|v| v.children),
            Some(vec!["team-a".into()])
        );
        // ...then raised it to 400: the parent's reservation follows once.
        s.sync_nodes(vec![loaded("team-a", node(Some("org"), 400))]);
        s.sync_nodes(vec![loaded("team-a", node(Some("org"), 400))]);
        assert_eq!(messages(&s, "org").allocated, 400);
        // Usage counted here meanwhile survives a sync of the node.
        s.consume("team-a", &[(MESSAGES, 7)]).ok();
        let mut synced = node(Some("org"), 400);
        synced.resources[0].counter.used = 10; // what the database holds
        s.sync_nodes(vec![loaded("team-a", synced)]);
        assert_eq!(messages(&s, "team-a").used, 17, "10 stored + 7 unflushed");
        // ...then deleted it: capacity back, no longer a child.
        let mut deleted = node(Some("org"), 400);
        deleted.state = NodeState::Deleted;
        s.sync_nodes(vec![loaded("team-a", deleted)]);
        assert_eq!(messages(&s, "org").allocated, 0);
        assert_eq!(s.view("org").map(|v| v.children), Some(vec![]));
        // Its unflushed 7 still reach the database with the next flush.
        let batch = s.take_dirty();
        assert_eq!(
            batch
                .usage
                .iter()
                .filter(|d| d.node_id == "team-a")
                .map(|d| d.delta)
                .sum::<u64>(),
            7
        );
    }

    #[test]
    fn a_synced_window_change_keeps_the_old_counters_unflushed_usage() {
        let s = store();
        s.load([loaded("a", node(None, 1000))]);
        s.increment("a", &[(MESSAGES, 3)]).ok();
        let hourly = Node::new(
            None,
            &[(
                MESSAGES.to_owned(),
                Limit {
                    max: 10,
                    window: Window::Hour,
                },
            )],
            NOON,
        );
        s.sync_nodes(vec![loaded("a", hourly)]);
        assert_eq!(messages(&s, "a").window, Window::Hour);
        assert_eq!(messages(&s, "a").used, 0);
        let batch = s.take_dirty();
        let day: Vec<_> = batch
            .usage
            .iter()
            .filter(|d| d.period.window() == Window::Day)
            .map(|d| d.delta)
            .collect();
        assert_eq!(day, vec![3]);
    }

    #[test]
    fn strict_nodes_send_usage_calls_to_the_database() {
        let s = store();
        let mut n = node(None, 10);
        n.strict = true;
        s.load([loaded("a", n)]);
        assert_eq!(
            s.consume("a", &[(MESSAGES, 1)]),
            Err(UsageError::Strict("a".into()))
        );
        assert_eq!(messages(&s, "a").used, 0, "nothing counted in memory");
        let plan = s.plan_strict("a", &[(MESSAGES, 4)], true).expect("plan");
        assert_eq!((plan[0].amount, plan[0].cap), (4, 10));
        s.set_totals("a", &[(MESSAGES, plan[0].period, 4)]);
        assert_eq!(messages(&s, "a").used, 4);
        assert!(s.take_dirty().usage.is_empty(), "nothing to flush");
    }
}
