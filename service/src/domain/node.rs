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
//! ancestors; see `counters.rs`).
//!
//! A limit that is removed leaves its counter behind for the rest of its
//! period (a *removed* resource, refusing usage): the parent keeps holding
//! what it used, and a limit added back in the same period carries on from
//! it.
//!
//! Everything here is pure and synchronous; the store calls it under a lock.

use smallvec::SmallVec;

use super::counter::{Counter, MAX_COUNT, Retired, RowId};
use super::resource::{ResourceName, resource_name};
use super::window::{Period, Window};

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

/// Children's usage of one of a parent's resources in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollup {
    pub name: ResourceName,
    /// The period the sums belong to (see [`ShareDelta`]).
    pub period: Period,
    /// Sum of the active children's subtree usage.
    pub below: u64,
    /// Sum of the active children's subtree usage past their own `max`.
    pub excess: u64,
}

/// What a node's subtree means to its parent for one resource: its usage
/// and the part of it past the node's own `max` (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    pub name: ResourceName,
    pub period: Period,
    pub used: u64,
    pub over: u64,
}

/// A node's shares (one per resource; most nodes have one or two).
pub type Shares = SmallVec<[Share; 2]>;

impl Share {
    fn of(&self) -> ShareOf {
        ShareOf {
            period: self.period,
            used: self.used,
            over: self.over,
        }
    }
}

/// A share's numbers, without its name (see [`Node::share_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareOf {
    pub period: Period,
    pub used: u64,
    pub over: u64,
}

/// The change of a child's [`Share`], applied to its parent's [`Rollup`].
/// The name is borrowed (from the request or the shares compared): a
/// usage call sends one of these up every level of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareDelta<'a> {
    pub name: &'a str,
    pub period: Period,
    pub used: i64,
    pub over: i64,
}

/// The deltas of a list of shares, several per call.
pub type ShareDeltas<'a> = SmallVec<[ShareDelta<'a>; 2]>;

fn diff(a: u64, b: u64) -> i64 {
    (i128::from(a) - i128::from(b)) as i64
}

/// The changes between two sets of shares taken at the same instant.
pub fn share_deltas<'a>(before: &'a [Share], after: &'a [Share]) -> ShareDeltas<'a> {
    let mut out = SmallVec::new();
    for a in after {
        let b = before.iter().find(|b| b.name == a.name).map(Share::of);
        push_delta(&mut out, &a.name, b, Some(a.of()));
    }
    for b in before
        .iter()
        .filter(|b| !after.iter().any(|a| a.name == b.name))
    {
        push_delta(&mut out, &b.name, Some(b.of()), None);
    }
    out
}

/// The changes of the shares of the resources `names` (one entry each in
/// `before` and `after`, from [`Node::share_of`] at the same instant).
pub fn share_of_deltas<'a>(
    names: &[&'a str],
    before: &[Option<ShareOf>],
    after: &[Option<ShareOf>],
) -> ShareDeltas<'a> {
    let mut out = SmallVec::new();
    for ((name, b), a) in names.iter().zip(before).zip(after) {
        push_delta(&mut out, name, *b, *a);
    }
    out
}

/// The change from `before` to `after` of one resource's share: the
/// difference within one period, or the old period's share taken back and
/// the new one's added.
fn push_delta<'a>(
    out: &mut ShareDeltas<'a>,
    name: &'a str,
    before: Option<ShareOf>,
    after: Option<ShareOf>,
) {
    let mut push = |period: Period, used: i64, over: i64| {
        if (used, over) != (0, 0) {
            out.push(ShareDelta {
                name,
                period,
                used,
                over,
            });
        }
    };
    match (before, after) {
        (Some(b), Some(a)) if b.period == a.period => {
            push(a.period, diff(a.used, b.used), diff(a.over, b.over));
        }
        _ => {
            if let Some(b) = before {
                push(b.period, diff(0, b.used), diff(0, b.over));
            }
            if let Some(a) = after {
                push(a.period, diff(a.used, 0), diff(a.over, 0));
            }
        }
    }
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

// === impl Rollup ===

impl Rollup {
    /// `(below, excess)` as they count at `now`: zero once the period is
    /// over (auto reset on).
    fn at(&self, now: i64, auto_reset: bool) -> (u64, u64) {
        if period_is_over(self.period, now, auto_reset) {
            (0, 0)
        } else {
            (self.below, self.excess)
        }
    }

    /// Adds a child's change, if it belongs to this rollup's period (a later
    /// period starts the sums from zero; an earlier one is over).
    fn add(&mut self, d: &ShareDelta<'_>, auto_reset: bool) {
        if d.period != self.period {
            let later =
                d.period.window() != self.period.window() || d.period.start() > self.period.start();
            if auto_reset && !later {
                return;
            }
            if auto_reset || d.period.window() != self.period.window() {
                *self = Rollup {
                    name: self.name.clone(),
                    period: d.period,
                    below: 0,
                    excess: 0,
                };
            }
        }
        self.below = add_signed(self.below, d.used);
        self.excess = add_signed(self.excess, d.over);
    }
}

/// Whether `period` has ended at `now` and auto reset starts a new one.
fn period_is_over(period: Period, now: i64, auto_reset: bool) -> bool {
    auto_reset
        && !period.surely_holds(now)
        && period.window().period_at(now).start() > period.start()
}

fn add_signed(v: u64, d: i64) -> u64 {
    if d >= 0 {
        v.saturating_add(d.unsigned_abs()).min(MAX_COUNT)
    } else {
        v.saturating_sub(d.unsigned_abs())
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

    /// Atomic check-and-increment: counts every amount only if each fits in
    /// `max - allocated - used`; otherwise counts nothing.
    pub fn consume(
        &mut self,
        usage: &[(&str, u64)],
        now: i64,
        auto_reset: bool,
    ) -> Result<Vec<(ResourceName, Retired)>, Refusal> {
        let idx = self.counted_indices(usage)?;
        for (&i, &(_, amount)) in idx.iter().zip(usage) {
            let r = &self.resources[i];
            let available = self.available(i, now, auto_reset);
            if amount > available {
                let (period, _) = r.used_at(now, auto_reset);
                return Err(Refusal::Exhausted {
                    resource: r.name.to_string(),
                    requested: amount,
                    available,
                    retry_after_secs: period.secs_until_end(now),
                });
            }
        }
        let retired = self.roll(now, auto_reset);
        for (&i, &(_, amount)) in idx.iter().zip(usage) {
            // Cannot fail: amount <= available <= MAX_COUNT - used.
            let _ = self.resources[i].counter.add(amount);
        }
        self.touch_if_counted(usage, now);
        Ok(retired)
    }

    /// Tracking increment: counts every amount whatever the limit (all or
    /// nothing only against overflow and unknown resources).
    pub fn increment(
        &mut self,
        usage: &[(&str, u64)],
        now: i64,
        auto_reset: bool,
    ) -> Result<Vec<(ResourceName, Retired)>, Refusal> {
        let idx = self.counted_indices(usage)?;
        for (&i, &(_, amount)) in idx.iter().zip(usage) {
            let r = &self.resources[i];
            let (_, used) = r.used_at(now, auto_reset);
            if used.checked_add(amount).is_none_or(|u| u > MAX_COUNT) {
                return Err(Refusal::Overflow {
                    resource: r.name.to_string(),
                });
            }
        }
        let retired = self.roll(now, auto_reset);
        for (&i, &(_, amount)) in idx.iter().zip(usage) {
            let _ = self.resources[i].counter.add(amount);
        }
        self.touch_if_counted(usage, now);
        Ok(retired)
    }

    /// A usage call of nothing (all amounts 0) changes nothing, so it does
    /// not move `last_updated` either: no row would be flushed to record it,
    /// and a restart must show what memory showed.
    fn touch_if_counted(&mut self, usage: &[(&str, u64)], now: i64) {
        if usage.iter().any(|&(_, amount)| amount > 0) {
            self.last_updated = Some(now);
        }
    }

    /// What a strict usage call asks the database to add: for each named
    /// resource its current period, the amount, and the highest total the
    /// row may reach (`max - allocated` when `enforce`, else the counter's
    /// ceiling). Unknown resources and capacities are refused here.
    pub fn plan_strict(
        &self,
        usage: &[(&str, u64)],
        now: i64,
        auto_reset: bool,
        enforce: bool,
    ) -> Result<Vec<StrictItem>, Refusal> {
        let idx = self.counted_indices(usage)?;
        Ok(idx
            .iter()
            .zip(usage)
            .map(|(&i, &(_, amount))| {
                let r = &self.resources[i];
                let (period, _) = r.used_at(now, auto_reset);
                StrictItem {
                    resource: r.name.clone(),
                    period,
                    amount,
                    cap: if enforce {
                        r.max.saturating_sub(self.held(i, now, auto_reset))
                    } else {
                        MAX_COUNT
                    },
                }
            })
            .collect())
    }

    /// Takes the totals the database returned for a strict call: rolls the
    /// counters into `now`'s period and sets each named resource's stored
    /// total (keeping any usage not flushed yet).
    pub fn set_totals(
        &mut self,
        totals: &[(&str, Period, u64)],
        now: i64,
        auto_reset: bool,
    ) -> Vec<(ResourceName, Retired)> {
        let retired = self.roll(now, auto_reset);
        for (name, period, total) in totals {
            if let Some(i) = self.index(name)
                && self.resources[i].counter.period == *period
            {
                self.resources[i].counter.set_stored_total(*total);
            }
        }
        self.last_updated = Some(now);
        retired
    }

    /// Indices of the counted (non-capacity) resources named in `usage`.
    fn counted_indices(&self, usage: &[(&str, u64)]) -> Result<SmallVec<[usize; 4]>, Refusal> {
        let mut idx = SmallVec::new();
        for (name, _) in usage {
            let i = self.index(name).ok_or_else(|| Refusal::UnknownResource {
                resource: (*name).to_owned(),
            })?;
            if self.resources[i].window() == Window::None {
                return Err(Refusal::Capacity {
                    resource: (*name).to_owned(),
                });
            }
            idx.push(i);
        }
        Ok(idx)
    }

    /// Reserves a child's limits (or the growth of them) from this node:
    /// all or nothing.
    pub fn reserve(
        &mut self,
        wants: &[(String, Limit)],
        now: i64,
        auto_reset: bool,
    ) -> Result<(), ReserveError> {
        self.reserve_growth(wants, |_| 0, now, auto_reset)
    }

    /// [`Node::reserve`] for a child that already holds `held(name)` past
    /// its `max` (its usage beyond a lowered limit): that part is held
    /// already, so only the rest must be available. The child's update
    /// then gives it back, as its usage falls within the larger `max`.
    pub fn reserve_growth(
        &mut self,
        wants: &[(String, Limit)],
        held: impl Fn(&str) -> u64,
        now: i64,
        auto_reset: bool,
    ) -> Result<(), ReserveError> {
        let mut short = Vec::new();
        let mut idx = Vec::with_capacity(wants.len());
        for (name, want) in wants {
            let i = self
                .index(name)
                .ok_or_else(|| ReserveError::MissingResource(name.clone()))?;
            let r = &self.resources[i];
            if r.window() != want.window {
                return Err(ReserveError::WindowMismatch {
                    resource: name.clone(),
                    parent: r.window(),
                    child: want.window,
                });
            }
            let available = self.available(i, now, auto_reset);
            let needed = want.max.saturating_sub(held(name).min(want.max));
            if needed > available {
                short.push(Shortage {
                    resource: name.clone(),
                    requested: needed,
                    available,
                });
            }
            idx.push(i);
        }
        if !short.is_empty() {
            return Err(ReserveError::Short(short));
        }
        for (i, (_, want)) in idx.into_iter().zip(wants) {
            let r = &mut self.resources[i];
            r.allocated = r.allocated.saturating_add(want.max);
        }
        Ok(())
    }

    /// Gives back what [`Node::reserve`] took.
    pub fn unreserve(&mut self, resource: &str, amount: u64) {
        if let Some(i) = self.index(resource) {
            let r = &mut self.resources[i];
            r.allocated = r.allocated.saturating_sub(amount);
        }
    }

    /// Charges usage of a deleted child to this node, if it belongs to this
    /// node's current period (an older period is over and charges nothing).
    pub fn charge(
        &mut self,
        resource: &str,
        period: Period,
        amount: u64,
        now: i64,
        auto_reset: bool,
    ) -> Vec<(ResourceName, Retired)> {
        let retired = self.roll(now, auto_reset);
        if let Some(i) = self.index(resource) {
            let c = &mut self.resources[i].counter;
            if c.period == period || !auto_reset || c.window() == Window::None {
                c.used = c.used.saturating_add(amount).min(MAX_COUNT);
            }
        } else if period.window() != Window::None {
            // This node's limit was removed too: the charge goes to its
            // removed limit's counter (kept while children used it).
            self.edit_details(|d| {
                let found = d
                    .removed
                    .iter_mut()
                    .find(|r| *r.name == *resource && r.window() == period.window());
                match found {
                    Some(r) => {
                        if r.counter.period != period {
                            if auto_reset && period.start() < r.counter.period.start() {
                                return;
                            }
                            r.counter = Counter::new(period);
                        }
                        r.counter.used = r.counter.used.saturating_add(amount).min(MAX_COUNT);
                    }
                    None => {
                        let r = Resource::removed(resource, period, amount.min(MAX_COUNT), None);
                        let pos = d
                            .removed
                            .binary_search_by(|x| x.name.cmp(&r.name))
                            .unwrap_or_else(|p| p);
                        d.removed.insert(pos, r);
                    }
                }
            });
        }
        self.last_updated = Some(now);
        retired
    }

    /// The counter a charge of `resource` in `period` went to (see
    /// [`Node::charge`]), if any.
    pub fn charged_counter(
        &self,
        resource: &str,
        period: Period,
        auto_reset: bool,
    ) -> Option<&Counter> {
        match self.resource(resource) {
            Some(r) => {
                let c = &r.counter;
                let taken = c.window() != Window::None && (c.period == period || !auto_reset);
                taken.then_some(c)
            }
            None => self
                .removed()
                .iter()
                .find(|r| *r.name == *resource && r.counter.period == period)
                .map(|r| &r.counter),
        }
    }

    /// Claims `amount` of a capacity: refused beyond `max - allocated - used`.
    pub fn claim(&mut self, resource: &str, amount: u64, now: i64) -> Result<(), Refusal> {
        let i = self
            .index(resource)
            .ok_or_else(|| Refusal::UnknownResource {
                resource: resource.to_owned(),
            })?;
        if self.resources[i].window() != Window::None {
            return Err(Refusal::NotCapacity {
                resource: resource.to_owned(),
            });
        }
        let available = self.available(i, now, false);
        let r = &mut self.resources[i];
        if amount > available {
            return Err(Refusal::Exhausted {
                resource: resource.to_owned(),
                requested: amount,
                available,
                retry_after_secs: None,
            });
        }
        r.counter.used += amount;
        self.last_updated = Some(now);
        Ok(())
    }

    /// Gives back a claim.
    pub fn release(&mut self, resource: &str, amount: u64, now: i64) {
        if let Some(i) = self.index(resource) {
            let c = &mut self.resources[i].counter;
            c.used = c.used.saturating_sub(amount);
            self.last_updated = Some(now);
        }
    }

    /// Whether any resource has `used + allocated > max`.
    pub fn overcommitted(&self, now: i64, auto_reset: bool) -> bool {
        (0..self.resources.len()).any(|i| self.overcommitted_at(i, now, auto_reset))
    }

    /// Children's `(below, excess)` of resource `name` at `now`.
    pub fn rollup_at(&self, name: &str, now: i64, auto_reset: bool) -> (u64, u64) {
        self.details
            .as_ref()
            .and_then(|d| d.rollups.iter().find(|r| *r.name == *name))
            .map_or((0, 0), |r| r.at(now, auto_reset))
    }

    /// What the children hold of resource `i`: each its `max`, or its
    /// subtree's usage when that is more (see the module docs).
    pub fn held(&self, i: usize, now: i64, auto_reset: bool) -> u64 {
        let r = &self.resources[i];
        let (_, excess) = self.rollup_at(&r.name, now, auto_reset);
        r.allocated.saturating_add(excess)
    }

    /// What the node itself may still use of resource `i` at `now`:
    /// `max - allocated - used`, where `allocated` is what the children hold.
    pub fn available(&self, i: usize, now: i64, auto_reset: bool) -> u64 {
        let r = &self.resources[i];
        let (_, used) = r.used_at(now, auto_reset);
        r.max
            .saturating_sub(self.held(i, now, auto_reset))
            .saturating_sub(used)
    }

    /// `used + allocated > max` for resource `i`: an edit lowered its limit
    /// below what is used and held.
    pub fn overcommitted_at(&self, i: usize, now: i64, auto_reset: bool) -> bool {
        let r = &self.resources[i];
        let (_, used) = r.used_at(now, auto_reset);
        used.saturating_add(self.held(i, now, auto_reset)) > r.max
    }

    /// `Err` when resource `name` is overcommitted here (a resource the
    /// node has no limit for is not): usage below this node is refused.
    pub fn admits_below(
        &self,
        id: &str,
        name: &str,
        now: i64,
        auto_reset: bool,
    ) -> Result<(), Refusal> {
        match self.index(name) {
            Some(i) if self.overcommitted_at(i, now, auto_reset) => {
                let (period, _) = self.resources[i].used_at(now, auto_reset);
                Err(Refusal::Overcommitted {
                    node: id.to_owned(),
                    resource: name.to_owned(),
                    retry_after_secs: period.secs_until_end(now),
                })
            }
            _ => Ok(()),
        }
    }

    /// Usage of resource `i` by the node and all its descendants at `now`.
    pub fn subtree_used(&self, i: usize, now: i64, auto_reset: bool) -> u64 {
        let r = &self.resources[i];
        let (_, used) = r.used_at(now, auto_reset);
        let (below, _) = self.rollup_at(&r.name, now, auto_reset);
        used.saturating_add(below)
    }

    /// What this node's subtree means to its parent at `now`, per resource
    /// with any usage (removed limits count with a `max` of 0). A deleted
    /// node has none: its usage moved to its parent.
    pub fn shares(&self, now: i64, auto_reset: bool) -> Shares {
        let mut names: SmallVec<[&ResourceName; 4]> = SmallVec::new();
        let rollups = self
            .details
            .iter()
            .flat_map(|d| &d.rollups)
            .map(|r| &r.name);
        let counters = self.resources.iter().chain(self.removed()).map(|r| &r.name);
        for name in counters.chain(rollups) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
            .into_iter()
            .filter_map(|name| {
                let s = self.share_of(name, now, auto_reset)?;
                Some(Share {
                    name: name.clone(),
                    period: s.period,
                    used: s.used,
                    over: s.over,
                })
            })
            .collect()
    }

    /// What this node's subtree means to its parent for resource `name`
    /// at `now` (as in [`Node::shares`]; `None` without usage).
    pub fn share_of(&self, name: &str, now: i64, auto_reset: bool) -> Option<ShareOf> {
        if self.state == NodeState::Deleted {
            return None;
        }
        let counter = match self.index(name) {
            Some(i) => Some((&self.resources[i], self.resources[i].max)),
            None => self
                .removed()
                .iter()
                .find(|r| *r.name == *name)
                .map(|r| (r, 0)),
        };
        let rollup = self
            .details
            .as_ref()
            .and_then(|d| d.rollups.iter().find(|r| *r.name == *name));
        let below = rollup.map_or(0, |r| r.at(now, auto_reset).0);
        let (period, used, max) = match (counter, rollup) {
            (Some((r, max)), _) => {
                let (period, used) = r.used_at(now, auto_reset);
                (period, used, max)
            }
            // Children's usage of a resource this node has no counter of.
            (None, Some(r)) => (r.period, 0, 0),
            (None, None) => return None,
        };
        let used = used.saturating_add(below);
        (used > 0).then_some(ShareOf {
            period,
            used,
            over: used.saturating_sub(max),
        })
    }

    /// Takes a child's change into the rollup of its resource.
    pub fn absorb(&mut self, d: &ShareDelta<'_>, auto_reset: bool) {
        // The usual case, on every usage call below this node: the rollup
        // is there and stays.
        if let Some(details) = self.details.as_mut()
            && let Some(r) = details.rollups.iter_mut().find(|r| *r.name == *d.name)
        {
            r.add(d, auto_reset);
            if (r.below, r.excess) != (0, 0) {
                return;
            }
        }
        self.edit_details(|details| {
            match details.rollups.iter_mut().find(|r| *r.name == *d.name) {
                Some(r) => r.add(d, auto_reset),
                None => {
                    let mut r = Rollup {
                        name: resource_name(d.name),
                        period: d.period,
                        below: 0,
                        excess: 0,
                    };
                    r.add(d, auto_reset);
                    details.rollups.push(r);
                }
            }
            details.rollups.retain(|r| (r.below, r.excess) != (0, 0));
        });
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

    /// Sets the node's limits to `limits` (sorted by name), keeping the
    /// counters of limits that stay (their `max` changed), carrying on the
    /// counter of a limit removed earlier in the same period and window,
    /// and keeping the counter of a limit removed now for the rest of its
    /// period when it has usage there. Returns the counters that ended: a
    /// removed or replaced counter with usage not flushed yet (history for
    /// the flush).
    pub fn set_limits(
        &mut self,
        limits: &[(String, Limit)],
        now: i64,
        auto_reset: bool,
    ) -> Vec<(ResourceName, Retired)> {
        let mut ended = Vec::new();
        let mut removed: Vec<Resource> = self
            .details
            .as_mut()
            .map(|d| std::mem::take(&mut d.removed))
            .unwrap_or_default();
        let mut old = std::mem::take(&mut self.resources);
        let mut next = Resources::new();
        for (name, limit) in limits {
            let kept = old
                .iter()
                .position(|r| *r.name == **name && r.window() == limit.window)
                .map(|i| old.remove(i))
                .or_else(|| {
                    removed
                        .iter()
                        .position(|r| *r.name == **name && r.window() == limit.window)
                        .map(|i| removed.remove(i))
                });
            next.push(match kept {
                Some(mut r) => {
                    r.max = limit.max;
                    r
                }
                None => Resource::new(name, *limit, now),
            });
        }
        for mut r in old.into_iter().chain(removed) {
            let replaced = next.iter().any(|n| n.name == r.name);
            let below = self.rollup_at(&r.name, now, auto_reset).0;
            if !replaced && (r.used_at(now, auto_reset).1 > 0 || below > 0) {
                // The rest of its period's usage stays here, refusing more
                // (and its unflushed part with it, for the flush: a reset
                // must be able to zero it).
                r.allocated = 0;
                r.max = 0;
                removed_push(self, r);
            } else if r.counter.unflushed > 0 {
                // A counter that ends hands its unflushed part to the flush.
                ended.push((r.name.clone(), r.counter));
            }
        }
        next.sort_by(|a, b| a.name.cmp(&b.name));
        self.resources = next;
        self.edit_details(|_| {});
        ended
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

    /// Zeroes the current period of every counted resource, removed
    /// limits' counters included (a reset; usage not flushed yet goes too:
    /// the stored rows are zero now and must not receive it later).
    pub fn reset_usage(&mut self, now: i64, auto_reset: bool) -> Vec<(ResourceName, Retired)> {
        let retired = self.roll(now, auto_reset);
        let zero = |r: &mut Resource| {
            if r.window() != Window::None {
                r.counter = Counter {
                    used: 0,
                    unflushed: 0,
                    ..r.counter
                };
            }
        };
        self.resources.iter_mut().for_each(zero);
        if let Some(d) = self.details.as_mut() {
            d.removed.retain(|r| r.used_at(now, auto_reset).1 > 0);
            d.removed.iter_mut().for_each(zero);
        }
        self.last_updated = Some(now);
        retired
    }

    /// Zeroes every counter and claim sum after the node's usage moved to
    /// its parent (a delete): what the node stored is subtracted from its
    /// rows in the same transaction.
    pub fn clear_usage(&mut self) {
        for r in self.resources.iter_mut() {
            r.counter.used = 0;
            r.counter.unflushed = 0;
        }
        self.edit_details(|d| d.removed.clear());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{SECS_PER_DAY, days_from_civil};

    fn t0() -> i64 {
        days_from_civil(2026, 11, 22) * SECS_PER_DAY + 12 * 3600
    }

    fn lim(max: u64, window: Window) -> Limit {
        Limit { max, window }
    }

    fn node(limits: &[(&str, u64, Window)]) -> Node {
        let limits: Vec<_> = limits
            .iter()
            .map(|(n, m, w)| (n.to_string(), lim(*m, *w)))
            .collect();
        Node::new(None, &limits, t0())
    }

    fn used(n: &Node, r: &str) -> u64 {
        n.resource(r).map(|r| r.counter.used).unwrap_or(0)
    }

    #[test]
    fn consume_is_all_or_nothing_and_stops_at_max() {
        let mut n = node(&[("messages", 10, Window::Day), ("requests", 5, Window::Hour)]);
        assert!(
            n.consume(&[("messages", 6), ("requests", 5)], t0(), true)
                .is_ok()
        );
        let err = n
            .consume(&[("messages", 1), ("requests", 1)], t0(), true)
            .unwrap_err();
        match err {
            Refusal::Exhausted {
                resource,
                requested,
                available,
                retry_after_secs,
            } => {
                assert_eq!(
                    (resource.as_str(), requested, available),
                    ("requests", 1, 0)
                );
                assert_eq!(retry_after_secs, Some(3600), "t0 is on the hour");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            (used(&n, "messages"), used(&n, "requests")),
            (6, 5),
            "nothing counted"
        );
        assert!(n.consume(&[("messages", 4)], t0(), true).is_ok());
        assert!(n.consume(&[("messages", 1)], t0(), true).is_err());
        assert_eq!(used(&n, "messages"), 10, "exactly max");
    }

    /// Found by tests/hierarchy_props.rs (regression file): a consume of 0
    /// moved `last_updated` in memory, which no flush records.
    #[test]
    fn usage_of_nothing_does_not_move_last_updated() {
        let mut n = node(&[("messages", 10, Window::Day)]);
        assert!(n.consume(&[("messages", 1)], t0(), true).is_ok());
        assert_eq!(n.last_updated, Some(t0()));
        assert!(n.consume(&[("messages", 0)], t0() + 5, true).is_ok());
        assert!(n.increment(&[("messages", 0)], t0() + 6, true).is_ok());
        assert_eq!(n.last_updated, Some(t0()));
        assert!(n.increment(&[("messages", 2)], t0() + 7, true).is_ok());
        assert_eq!(n.last_updated, Some(t0() + 7));
    }

    #[test]
    fn consume_refuses_unknown_resources_and_capacities() {
        let mut n = node(&[("storage", 10, Window::None)]);
        assert!(matches!(
            n.consume(&[("gpu", 1)], t0(), true),
            Err(Refusal::UnknownResource { .. })
        ));
        assert!(matches!(
            n.consume(&[("storage", 1)], t0(), true),
            Err(Refusal::Capacity { .. })
        ));
        assert!(matches!(
            n.increment(&[("storage", 1)], t0(), true),
            Err(Refusal::Capacity { .. })
        ));
    }

    #[test]
    fn increment_tracks_past_the_limit_but_never_overflows() {
        let mut n = node(&[("messages", 10, Window::Day)]);
        assert!(n.increment(&[("messages", 15)], t0(), true).is_ok());
        assert_eq!(used(&n, "messages"), 15);
        assert!(n.increment(&[("messages", MAX_COUNT)], t0(), true).is_err());
        assert_eq!(used(&n, "messages"), 15);
    }

    #[test]
    fn children_are_reserved_from_the_parent() {
        let mut org = node(&[
            ("messages", 100, Window::Day),
            ("storage", 10, Window::None),
        ]);
        org.consume(&[("messages", 10)], t0(), true).unwrap();
        let team_a = vec![("messages".to_string(), lim(40, Window::Day))];
        org.reserve(&team_a, t0(), true).unwrap();
        let r = org.resource("messages").unwrap();
        assert_eq!((r.allocated, org.available(0, t0(), true)), (40, 50));
        // team-b wants 70 > 50: refused with what is missing, nothing reserved.
        let team_b = vec![
            ("messages".to_string(), lim(70, Window::Day)),
            ("storage".to_string(), lim(5, Window::None)),
        ];
        match org.reserve(&team_b, t0(), true) {
            Err(ReserveError::Short(s)) => {
                assert_eq!(
                    s,
                    vec![Shortage {
                        resource: "messages".into(),
                        requested: 70,
                        available: 50
                    }]
                );
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            org.resource("storage").unwrap().allocated,
            0,
            "all or nothing"
        );
        // The parent's own usage is capped at max - allocated.
        assert!(org.consume(&[("messages", 51)], t0(), true).is_err());
        assert!(org.consume(&[("messages", 50)], t0(), true).is_ok());
        // Freed reservations are available again.
        org.unreserve("messages", 40);
        assert_eq!(org.available(0, t0(), true), 40);
    }

    #[test]
    fn reserve_checks_resource_and_window() {
        let mut org = node(&[("messages", 100, Window::Day)]);
        let wrong_window = vec![("messages".to_string(), lim(1, Window::Hour))];
        assert!(matches!(
            org.reserve(&wrong_window, t0(), true),
            Err(ReserveError::WindowMismatch { .. })
        ));
        let missing = vec![("gpu".to_string(), lim(1, Window::Day))];
        assert_eq!(
            org.reserve(&missing, t0(), true),
            Err(ReserveError::MissingResource("gpu".into()))
        );
    }

    #[test]
    fn a_reservation_made_yesterday_is_unaffected_by_todays_reset() {
        let mut org = node(&[("messages", 100, Window::Day)]);
        org.reserve(
            &[("messages".to_string(), lim(60, Window::Day))],
            t0(),
            true,
        )
        .unwrap();
        org.consume(&[("messages", 40)], t0(), true).unwrap();
        let tomorrow = t0() + SECS_PER_DAY;
        assert_eq!(
            org.available(0, tomorrow, true),
            40,
            "usage reset, reservation did not"
        );
    }

    #[test]
    fn charges_of_deleted_children_count_only_in_the_current_period() {
        let mut org = node(&[("messages", 100, Window::Day)]);
        let today = Window::Day.period_at(t0());
        org.charge("messages", today, 30, t0(), true);
        assert_eq!(used(&org, "messages"), 30);
        let yesterday = Window::Day.period_at(t0() - SECS_PER_DAY);
        org.charge("messages", yesterday, 50, t0(), true);
        assert_eq!(
            used(&org, "messages"),
            30,
            "a finished period charges nothing"
        );
    }

    #[test]
    fn claims_and_releases_of_a_capacity() {
        let mut n = node(&[("storage", 10, Window::None), ("messages", 5, Window::Day)]);
        n.claim("storage", 7, t0()).unwrap();
        assert!(matches!(
            n.claim("storage", 4, t0()),
            Err(Refusal::Exhausted {
                available: 3,
                retry_after_secs: None,
                ..
            })
        ));
        assert!(matches!(
            n.claim("messages", 1, t0()),
            Err(Refusal::NotCapacity { .. })
        ));
        n.release("storage", 7, t0());
        n.claim("storage", 10, t0()).unwrap();
        // A capacity never resets.
        assert_eq!(n.available(1, t0() + 400 * SECS_PER_DAY, true), 0);
    }

    #[test]
    fn shrinking_below_use_is_overcommitted() {
        let mut n = node(&[("messages", 100, Window::Day)]);
        n.reserve(
            &[("messages".to_string(), lim(60, Window::Day))],
            t0(),
            true,
        )
        .unwrap();
        n.consume(&[("messages", 30)], t0(), true).unwrap();
        assert!(!n.overcommitted(t0(), true));
        n.resources[0].max = 80;
        assert!(n.overcommitted(t0(), true));
        assert_eq!(n.available(0, t0(), true), 0);
    }

    #[test]
    fn exceeded_rules() {
        assert!(exceeded(10, 0, 10, 10), "leaf at its limit");
        assert!(!exceeded(10, 0, 9, 9));
        assert!(exceeded(0, 0, 0, 0), "a zero limit is exhausted");
        assert!(
            !exceeded(100, 100, 0, 20),
            "all delegated, children not done"
        );
        assert!(exceeded(100, 100, 0, 100), "the whole subtree used it");
        assert!(exceeded(100, 60, 40, 45), "own share used up");
    }

    #[test]
    fn details_are_boxed_only_while_something_is_set() {
        let mut n = Node::new::<&str>(None, &[], 0);
        assert!(n.details.is_none());
        n.add_child("b");
        n.set_name(Some("Team B".into()));
        assert_eq!((n.name(), n.children().len()), (Some("Team B"), 1));
        n.remove_child("b");
        assert!(n.details.is_some(), "the name is still set");
        n.set_name(None);
        assert!(n.details.is_none(), "nothing set: no allocation kept");
        assert_eq!(
            (n.name(), n.description(), n.children().len()),
            (None, None, 0)
        );
    }

    #[test]
    fn children_list_stays_sorted_and_unique() {
        let mut n = node(&[]);
        for c in ["b", "a", "c", "a"] {
            n.add_child(c);
        }
        assert_eq!(
            n.children(),
            vec!["a".into(), "b".into(), "c".into()] as Vec<Box<str>>
        );
        n.remove_child("b");
        assert_eq!(n.children().len(), 2);
    }
}
