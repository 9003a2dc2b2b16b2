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
//! Everything here is pure and synchronous; the store calls it under a lock.

use smallvec::SmallVec;

use super::counter::{Counter, MAX_COUNT, Retired};
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
    /// Sum of the active children's `max`.
    pub allocated: u64,
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

    /// What the node itself may still use at `now`: `max - allocated - used`.
    pub fn available_at(&self, now: i64, auto_reset: bool) -> u64 {
        let (_, used) = self.used_at(now, auto_reset);
        self.max.saturating_sub(self.allocated).saturating_sub(used)
    }

    /// `used + allocated > max`: the limit was lowered below what is in use.
    pub fn overcommitted_at(&self, now: i64, auto_reset: bool) -> bool {
        let (_, used) = self.used_at(now, auto_reset);
        used.saturating_add(self.allocated) > self.max
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
            let available = r.available_at(now, auto_reset);
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
                        r.max.saturating_sub(r.allocated)
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
            let available = r.available_at(now, auto_reset);
            if want.max > available {
                short.push(Shortage {
                    resource: name.clone(),
                    requested: want.max,
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
        }
        self.last_updated = Some(now);
        retired
    }

    /// Claims `amount` of a capacity: refused beyond `max - allocated - used`.
    pub fn claim(&mut self, resource: &str, amount: u64, now: i64) -> Result<(), Refusal> {
        let i = self
            .index(resource)
            .ok_or_else(|| Refusal::UnknownResource {
                resource: resource.to_owned(),
            })?;
        let r = &mut self.resources[i];
        if r.window() != Window::None {
            return Err(Refusal::NotCapacity {
                resource: resource.to_owned(),
            });
        }
        let available = r.available_at(now, false);
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
        self.resources
            .iter()
            .any(|r| r.overcommitted_at(now, auto_reset))
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

    /// Changes the details, dropping the box again when they end up empty.
    fn edit_details(&mut self, f: impl FnOnce(&mut NodeDetails)) {
        let d = self.details.get_or_insert_with(Box::default);
        f(d);
        if **d == NodeDetails::default() {
            self.details = None;
        }
    }
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
        assert_eq!((r.allocated, r.available_at(t0(), true)), (40, 50));
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
        assert_eq!(
            org.resource("messages").unwrap().available_at(t0(), true),
            40
        );
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
        let r = org.resource("messages").unwrap();
        assert_eq!(
            r.available_at(tomorrow, true),
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
        assert_eq!(
            n.resource("storage")
                .unwrap()
                .available_at(t0() + 400 * SECS_PER_DAY, true),
            0
        );
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
        assert_eq!(n.resource("messages").unwrap().available_at(t0(), true), 0);
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
