//! The rows the counter store and the database exchange: the one module
//! both sides import, so that neither imports the other.
//!
//! ```text
//!   counters ──take_dirty()──▶ DirtyBatch ──▶ persistence (write a flush)
//!   counters ◀──LoadedNode, StoredTotal──── persistence (load, sync)
//! ```
//!
//! - [`batch`]: what a flush takes from the counters (new tenants, usage
//!   deltas, the rows counters already know).
//! - [`stored`]: what a load or a sync reads back (nodes with their claims and
//!   grants, stored totals), and the absolute rows a reset writes.

mod batch;
mod stored;

#[cfg(test)]
pub(crate) use batch::messages_delta;
pub use batch::{DirtyBatch, NewTenantRow, StoredRows, UsageDelta, UsageDeltas};
pub use stored::{Claim, LoadedNode, NodeGrant, NodeSink, StoredTotal, UsageRow};
