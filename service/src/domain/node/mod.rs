//! A quota node (a tenant, a team, a sub-team) and its per-resource arithmetic.
//!
//! ```text
//!   org  messages max 100 ─┬─ allocated 70 (= team-a 40 + team-b 30)
//!                          ├─ used 10     (org's own, direct usage)
//!                          └─ available 20 = max - allocated - used
//!   ├── team-a  max 40, used 40 → available 0
//!   └── team-b  max 30, used  5 → available 25
//! ```
//!
//! For every node and resource, `used + allocated <= max` is what `consume`
//! and `claim` keep: a request is allowed only while the node's own usage
//! stays within `max - allocated`. A child's `max` is reserved from its
//! parent when it is created (`reserve`), so siblings can never starve each
//! other. `increment` is the flat tracker's tracking call: it always counts
//! (and reports `exceeded`), so it may push `used` past the share.
//!
//! Window `none` is a capacity: only `claim` and `release` change it.
//!
//! ## Holds: what a child keeps of its parent
//!
//! A child holds `max(its max, its subtree's usage)` of each resource from
//! its parent, in the current period. Usually that is just its `max` (a
//! child cannot consume past it); it is more after an edit lowered the
//! child below what it already used, or after tracking increments counted
//! past the limit. So what was used stays charged to the parent whatever
//! the edit, exactly as a deleted child's usage does, and a parent never
//! hands out the same units twice:
//!
//! ```text
//!   r  max 100   allocated = hold(c) = max(10, 100) = 100 → available 0
//!   └── c  max 10 (was 100), used 100 → overcommitted until the period ends
//! ```
//!
//! A parent keeps two sums over its active children per resource, for the
//! period they belong to ([`Rollup`]): `below` (their subtree usage) and
//! `excess` (their usage past their own `max`). Every change of a child
//! sends the difference of its [`Share`] up the tree ([`ShareDelta`]); a
//! later period starts both sums from zero, as it does the counters.
//!
//! A node whose `used + allocated` passes its `max` is overcommitted: it
//! admits no further usage of that resource anywhere in its subtree until
//! an edit or a new period makes it fit again (the store checks the
//! ancestors; see `counters/`).
//!
//! A limit that is removed leaves its counter behind for the rest of its
//! period (a *removed* resource, refusing usage): the parent keeps holding
//! what it used, and a limit added back in the same period carries on from
//! it.
//!
//! Everything here is pure and synchronous; the store calls it under a lock.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the node, its resources and states, refusals |
//! | `usage.rs` | consume, increment, the strict path, resets |
//! | `capacity.rs` | children's reservations, deleted children's charges, claims |
//! | `share.rs` | shares, rollups, what a node holds, has available, admits |
//! | `limits.rs` | `set_limits`: which counters carry on |

mod capacity;
mod limits;
mod share;
mod usage;

#[cfg(test)]
mod tests;

use smallvec::SmallVec;

use super::counter::{Counter, MAX_COUNT, Retired, RowId};
use super::headroom::{Headroom, Headrooms, WindowSecs};
use super::resource::{ResourceName, resource_name};
use super::window::{Period, Window};

pub use share::{
    Rollup, Share, ShareDelta, ShareDeltas, ShareOf, Shares, share_deltas, share_of_deltas,
};

/// A node's resources (see [`Node::resources`]).
pub type Resources = SmallVec<[Resource; 2]>;

/// A node's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    Active,
    /// Refuses all usage, for its whole subtree.
    Suspended,
    /// Soft-deleted: kept for history, counts for nothing.
    Deleted,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Active => "active",
            NodeState::Suspended => "suspended",
            NodeState::Deleted => "deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(NodeState::Active),
            "suspended" => Some(NodeState::Suspended),
            "deleted" => Some(NodeState::Deleted),
            _ => None,
        }
    }
}

/// A limit on one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u64,
    pub window: Window,
}

/// One resource of a node: its limit, direct usage and children's reservations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub name: ResourceName,
    pub max: u64,
    /// Direct usage in the counter's period (includes usage charged by
    /// deleted children; for a capacity, the sum of claims).
    pub counter: Counter,
    /// Sum of the active children's `max` (what they reserved; see
    /// [`Node::held`] for what they hold).
    pub allocated: u64,
}

// === impl NodeDetails ===

impl NodeDetails {
    fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.children.is_empty()
            && self.rollups.is_empty()
            && self.removed.is_empty()
    }
}

/// Why usage was refused. Nothing was counted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("node {node:?} is suspended")]
    Suspended { node: String },
    #[error("node {node:?} is deleted")]
    Deleted { node: String },
    #[error("the node has no limit for resource {resource:?}")]
    UnknownResource { resource: String },
    #[error("{resource:?} is a capacity (window none): claim and release it with /usage/allocate")]
    Capacity { resource: String },
    #[error("{resource:?} is a counted resource, not a capacity: report it with consume")]
    NotCapacity { resource: String },
    /// The node or an ancestor has `used + allocated` past its `max` (an
    /// edit lowered it): nothing more is admitted below it.
    #[error(
        "{node:?} is overcommitted for {resource:?} (an edit lowered its max below what is used and allocated): nothing more is admitted below it"
    )]
    Overcommitted {
        node: String,
        resource: String,
        /// Seconds until the window resets; `None` for a capacity.
        retry_after_secs: Option<u64>,
    },
    #[error("quota exhausted for {resource:?}: requested {requested}, available {available}")]
    Exhausted {
        resource: String,
        requested: u64,
        available: u64,
        /// Seconds until the window resets; `None` for a capacity.
        retry_after_secs: Option<u64>,
    },
    #[error("counter for {resource:?} would pass {MAX_COUNT}")]
    Overflow { resource: String },
}

/// One resource a reservation could not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub resource: String,
    pub requested: u64,
    pub available: u64,
}

/// Why a reservation (a child's limits) does not fit in a parent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReserveError {
    #[error("the parent has no limit for resource {0:?}")]
    MissingResource(String),
    #[error("resource {resource:?} has window {parent} in the parent; the child asked for {child}")]
    WindowMismatch {
        resource: String,
        parent: Window,
        child: Window,
    },
    #[error("{}", describe_shortages(.0))]
    Short(Vec<Shortage>),
}

/// `messages requested 70, available 60 (missing 10); ...`
pub fn describe_shortages(s: &[Shortage]) -> String {
    s.iter()
        .map(|s| {
            format!(
                "{} requested {}, available {} (missing {})",
                s.resource,
                s.requested,
                s.available,
                s.requested.saturating_sub(s.available)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One addition of a strict usage call (see [`Node::plan_strict`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrictItem {
    pub resource: ResourceName,
    pub period: Period,
    pub amount: u64,
    pub cap: u64,
}

/// The parts of a node that most nodes never set (a flat tenant: none of
/// them), kept behind one pointer: inline they were 72 of the ~300 bytes
/// each of a million resident tenants took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeDetails {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Ids of the children that are not deleted, sorted.
    pub children: Vec<Box<str>>,
    /// Children's usage per resource (only a parent has any).
    pub rollups: Vec<Rollup>,
    /// Counters of limits removed in their current period (refusing usage;
    /// see the module docs), sorted by name.
    pub removed: Vec<Resource>,
}

/// A quota node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub parent: Option<Box<str>>,
    pub state: NodeState,
    /// Usage is checked and counted in the database on every call, so the
    /// limit holds exactly across replicas (see `persistence::flush`).
    pub strict: bool,
    /// Name, description and children; `None` while all are empty.
    details: Option<Box<NodeDetails>>,
    /// Sorted by name. Inline up to two (a flat tenant's): no allocation of
    /// its own per node.
    pub resources: Resources,
    pub created_at: i64,
    /// Last change to usage, limits or state.
    pub last_updated: Option<i64>,
}

// === impl Resource ===

impl Resource {
    pub fn new(name: &str, limit: Limit, now: i64) -> Self {
        Resource {
            name: resource_name(name),
            max: limit.max,
            counter: Counter::new(limit.window.period_at(now)),
            allocated: 0,
        }
    }

    /// The counter of a removed limit: usage of `period` and no limit.
    pub fn removed(name: &str, period: Period, used: u64, row: Option<RowId>) -> Self {
        Resource {
            name: resource_name(name),
            max: 0,
            counter: Counter::stored(period, used, row),
            allocated: 0,
        }
    }

    pub fn window(&self) -> Window {
        self.counter.window()
    }

    pub fn limit(&self) -> Limit {
        Limit {
            max: self.max,
            window: self.window(),
        }
    }

    /// Direct usage and its period as they count at `now`.
    pub fn used_at(&self, now: i64, auto_reset: bool) -> (Period, u64) {
        self.counter.used_at(now, auto_reset)
    }
}

// === impl Node ===

impl Node {
    /// A new active node with the given limits (sorted and de-duplicated by
    /// the caller).
    pub fn new<S: AsRef<str>>(parent: Option<&str>, limits: &[(S, Limit)], now: i64) -> Self {
        let mut resources: Resources = limits
            .iter()
            .map(|(name, limit)| Resource::new(name.as_ref(), *limit, now))
            .collect();
        resources.sort_by(|a, b| a.name.cmp(&b.name));
        Node {
            parent: parent.map(Into::into),
            state: NodeState::Active,
            strict: false,
            details: None,
            resources,
            created_at: now,
            last_updated: None,
        }
    }

    pub fn resource(&self, name: &str) -> Option<&Resource> {
        self.resources
            .binary_search_by(|r| (*r.name).cmp(name))
            .ok()
            .map(|i| &self.resources[i])
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.resources
            .binary_search_by(|r| (*r.name).cmp(name))
            .ok()
    }

    /// Moves every counter into the period that holds `now` (auto reset);
    /// returns the finished periods that had usage.
    pub fn roll(&mut self, now: i64, auto_reset: bool) -> Vec<(ResourceName, Retired)> {
        let mut retired = Vec::new();
        for r in &mut self.resources {
            if let Some(old) = r.counter.roll(now, auto_reset) {
                retired.push((r.name.clone(), old));
            }
        }
        retired
    }

    /// Counters of limits removed in their current period (see the module
    /// docs).
    pub fn removed(&self) -> &[Resource] {
        self.details.as_ref().map_or(&[], |d| &d.removed)
    }

    /// The counted resources (not capacities), removed limits' included.
    pub fn counted(&self) -> impl Iterator<Item = &Resource> {
        self.resources
            .iter()
            .chain(self.removed())
            .filter(|r| r.window() != Window::None)
    }

    /// [`Node::counted`] resources' usage at `now`: name, period, usage.
    pub fn counted_usage(
        &self,
        now: i64,
        auto_reset: bool,
    ) -> impl Iterator<Item = (ResourceName, Period, u64)> + '_ {
        self.counted().map(move |r| {
            let (period, used) = r.used_at(now, auto_reset);
            (r.name.clone(), period, used)
        })
    }

    /// Every counter: the limits' and the removed limits' (what a flush
    /// takes the unflushed part of).
    pub fn counters_mut(&mut self) -> impl Iterator<Item = &mut Resource> {
        let removed = self.details.as_mut().map(|d| d.removed.iter_mut());
        self.resources
            .iter_mut()
            .chain(removed.into_iter().flatten())
    }

    pub fn name(&self) -> Option<&str> {
        self.details.as_ref()?.name.as_deref()
    }

    pub fn description(&self) -> Option<&str> {
        self.details.as_ref()?.description.as_deref()
    }

    /// Ids of the children that are not deleted, sorted.
    pub fn children(&self) -> &[Box<str>] {
        self.details.as_ref().map_or(&[], |d| &d.children)
    }

    pub fn set_name(&mut self, name: Option<String>) {
        self.edit_details(|d| d.name = name);
    }

    pub fn set_description(&mut self, description: Option<String>) {
        self.edit_details(|d| d.description = description);
    }

    pub fn add_child(&mut self, id: &str) {
        self.edit_details(|d| {
            if let Err(pos) = d.children.binary_search_by(|c| (**c).cmp(id)) {
                d.children.insert(pos, id.into());
            }
        });
    }

    pub fn remove_child(&mut self, id: &str) {
        self.edit_details(|d| {
            if let Ok(pos) = d.children.binary_search_by(|c| (**c).cmp(id)) {
                d.children.remove(pos);
            }
        });
    }

    /// Puts back a removed limit's counter (loaded from its usage row).
    pub fn add_removed(&mut self, r: Resource) {
        removed_push(self, r);
    }

    /// Changes the details, dropping the box again when they end up empty.
    fn edit_details(&mut self, f: impl FnOnce(&mut NodeDetails)) {
        let d = self.details.get_or_insert_with(Box::default);
        f(d);
        if d.is_empty() {
            self.details = None;
        }
    }
}

fn removed_push(n: &mut Node, r: Resource) {
    n.edit_details(|d| {
        let pos = d
            .removed
            .binary_search_by(|x| x.name.cmp(&r.name))
            .unwrap_or_else(|p| p);
        d.removed.insert(pos, r);
    });
}

/// Whether a resource counts as exceeded: its whole subtree used the limit up,
/// or the node's own share is used up by the node itself.
pub fn exceeded(max: u64, allocated: u64, used: u64, subtree_used: u64) -> bool {
    subtree_used >= max || (used > 0 && used >= max.saturating_sub(allocated))
}
