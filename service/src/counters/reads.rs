//! Construction and reads: the store's nodes, their views at an instant,
//! what changed since a version, whether a node takes usage.

use super::*;

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

    pub(super) fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn contains(&self, id: &str) -> bool {
        self.nodes.contains_key(id)
    }

    /// A copy of the node (for the write-through layer's planning).
    pub fn node(&self, id: &str) -> Option<Node> {
        self.nodes.get(id).map(|e| e.node.clone())
    }

    pub fn claims(&self, id: &str) -> Option<BTreeMap<String, Claim>> {
        self.nodes.get(id).map(|e| {
            e.extras
                .as_ref()
                .map(|x| x.claims.clone())
                .unwrap_or_default()
        })
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

    pub(super) fn build_view(&self, id: &str, e: &Entry, now: i64) -> NodeView {
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
            claims: e.claim_count(),
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
