//! What a child holds of its parent and a parent's sums of its children
//! (see the module docs): shares, their deltas, rollups, and what a node
//! has available, holds and admits below it.

use super::*;

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
    pub(super) fn of(&self) -> ShareOf {
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

pub(super) fn diff(a: u64, b: u64) -> i64 {
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
pub(super) fn push_delta<'a>(
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

// === impl Rollup ===

impl Rollup {
    /// `(below, excess)` as they count at `now`: zero once the period is
    /// over (auto reset on).
    pub(super) fn at(&self, now: i64, auto_reset: bool) -> (u64, u64) {
        if period_is_over(self.period, now, auto_reset) {
            (0, 0)
        } else {
            (self.below, self.excess)
        }
    }

    /// Adds a child's change, if it belongs to this rollup's period (a later
    /// period starts the sums from zero; an earlier one is over).
    pub(super) fn add(&mut self, d: &ShareDelta<'_>, auto_reset: bool) {
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
pub(super) fn period_is_over(period: Period, now: i64, auto_reset: bool) -> bool {
    auto_reset
        && !period.surely_holds(now)
        && period.window().period_at(now).start() > period.start()
}

pub(super) fn add_signed(v: u64, d: i64) -> u64 {
    if d >= 0 {
        v.saturating_add(d.unsigned_abs()).min(MAX_COUNT)
    } else {
        v.saturating_sub(d.unsigned_abs())
    }
}

// === impl Node: shares and rollups ===

impl Node {
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
}
