//! Rows a usage store loads from the database: nodes with their claims,
//! stored totals, and the absolute rows a reset writes.

use std::collections::BTreeMap;

use crate::domain::access::Role;
use crate::domain::node::Node;
use crate::domain::resource::ResourceName;
use crate::domain::window::Period;

/// A capacity claim, idempotent per `resource_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub resource: String,
    pub amount: u64,
    pub reason: String,
    pub created_at: i64,
}

/// One `quota_usage` row to write with its absolute value (a reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub node_id: String,
    pub resource: ResourceName,
    pub period: Period,
    pub used: u64,
    pub last_updated: i64,
}

/// A grant on a node as memory keeps it, for the access check of every
/// call (the grant API reads the stored rows, with their times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeGrant {
    /// A user or ServiceAccount name, or `group:<name>`.
    pub subject: Box<str>,
    pub role: Role,
}

/// A node loaded from the database at startup.
#[derive(Debug, Clone)]
pub struct LoadedNode {
    pub id: String,
    pub node: Node,
    pub claims: BTreeMap<String, Claim>,
    pub grants: Vec<NodeGrant>,
}

/// The stored total of one usage row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTotal {
    pub node_id: String,
    pub resource: String,
    pub period: String,
    pub used: u64,
}

/// Where the pages of a read go, a page at a time, as each is built. A
/// sink travels with the build: it takes page n on the thread that built
/// it, while the database reads page n + 1.
pub trait NodeSink: Send + 'static {
    fn take(&mut self, page: Vec<LoadedNode>);
}

/// Collects every page.
impl NodeSink for Vec<LoadedNode> {
    fn take(&mut self, page: Vec<LoadedNode>) {
        self.extend(page);
    }
}
