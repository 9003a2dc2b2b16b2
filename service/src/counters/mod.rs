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
//! [`crate::quotas`] under its write lock, through the small primitives of
//! `structure.rs`, in an order that is always conservative: a parent
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
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | the store, its entries, the errors, helpers the sections share |
//! | `reads.rs` | node views, what changed since a version, usability checks |
//! | `load.rs` | filling the store from the database, a page at a time |
//! | `usage.rs` | consume and increment (the request path), the flat tenants |
//! | `flush.rs` | dirty batches, learned rows, stored totals, synced nodes |
//! | `structure.rs` | insert, update, reserve, release, stop and charge, retire |
//! | `access.rs` | the grants each node holds, the roles along a path |

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dashmap::DashMap;
use smallvec::SmallVec;

use crate::clock::SharedClock;
use crate::domain::counter::Retired;
use crate::domain::headroom::Headrooms;
use crate::domain::node::{
    self, Limit, Node, NodeState, Refusal, ShareDeltas, ShareOf, StrictItem,
};
use crate::domain::resource::{BANDWIDTH, MESSAGES, ResourceName};
use crate::domain::tenant::{Limits, QuotaView, TenantView, Usage};
use crate::domain::window::{Period, Window};
use crate::rows::{
    Claim, DirtyBatch, LoadedNode, NewTenantRow, NodeGrant, NodeSink, StoredRows, StoredTotal,
    UsageDelta, UsageDeltas,
};

mod access;
mod flush;
mod load;
mod reads;
mod structure;
mod usage;

#[cfg(test)]
mod tests;

pub use load::Loading;
pub use reads::NodeView;
pub use usage::{flat_node, flat_view};

/// One node in the store.
#[derive(Debug)]
struct Entry {
    node: Node,
    /// Capacity claims and grants; `None` while there are neither (most
    /// nodes: an empty map inline took 24 bytes of every tenant).
    extras: Option<Box<Extras>>,
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

/// What few nodes have, boxed behind one pointer (8 bytes, null while
/// there is nothing) instead of inline in each of a million entries.
#[derive(Debug, Default, PartialEq, Eq)]
struct Extras {
    /// Capacity claims by resource id.
    claims: BTreeMap<String, Claim>,
    /// Grants on the node, for access checks.
    grants: Vec<NodeGrant>,
}

/// Grants are kept in one order (by subject, then role), whether added one
/// by one or loaded: a read-back of the same grants is then equal to them.
fn grant_order(a: &NodeGrant, b: &NodeGrant) -> std::cmp::Ordering {
    (&*a.subject, a.role).cmp(&(&*b.subject, b.role))
}

fn extras(claims: BTreeMap<String, Claim>, mut grants: Vec<NodeGrant>) -> Option<Box<Extras>> {
    grants.sort_by(grant_order);
    (!claims.is_empty() || !grants.is_empty()).then(|| Box::new(Extras { claims, grants }))
}

// === impl Entry ===

impl Entry {
    fn claim_count(&self) -> usize {
        self.extras.as_ref().map_or(0, |x| x.claims.len())
    }

    fn grants(&self) -> &[NodeGrant] {
        self.extras.as_ref().map_or(&[], |x| x.grants.as_slice())
    }

    /// The extras, created empty when missing; [`Entry::tidy`] drops them
    /// again when they end up empty.
    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_with(Box::default)
    }

    fn tidy(&mut self) {
        if self
            .extras
            .as_ref()
            .is_some_and(|x| x.claims.is_empty() && x.grants.is_empty())
        {
            self.extras = None;
        }
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
