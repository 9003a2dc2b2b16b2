//! The bodies of the hierarchical API under `/api/v1`, as they travel.
//!
//! The service reads request bodies strictly (objects only, no `null`, no
//! unknown fields, every key once): an optional field is left out, never
//! sent as `null`. These types serialize that way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::UniqueMap;

// === request bodies ===

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitBody {
    pub max: u64,
    /// Optional for a child (inherited from the parent) and for the
    /// built-in resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// The whole desired state of a node. `limits` is required: a node's
/// limits are exactly the ones named (`{}` removes them all), so a typo
/// (`limitz`) or a forgotten field cannot remove them. Other fields left
/// out keep their current value (`state`, `strict`, `name`,
/// `description`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    pub limits: UniqueMap<LimitBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Count usage in the database on every call: exact across replicas,
    /// at the cost of a database round trip per call. Unset keeps the
    /// current setting (off for a new node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllocateBody {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A new node has only these limits (none when left out).
    #[serde(default)]
    pub limits: UniqueMap<LimitBody>,
    /// Subjects (or `group:<name>`) made admins of the new node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admin_user_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageBody {
    pub usage: UniqueMap<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    pub resource: String,
    pub resource_id: String,
    pub amount: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    pub subject: String,
    pub role: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchMode {
    /// Always count (tracking), like the flat `increment`.
    #[default]
    Increment,
    /// Check-and-increment per item.
    Consume,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    #[serde(default)]
    pub mode: BatchMode,
    pub items: Vec<BatchItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    pub id: String,
    pub usage: UniqueMap<u64>,
}

// === response bodies ===

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceBody {
    pub max: u64,
    pub window: String,
    pub used: u64,
    pub subtree_used: u64,
    pub allocated: u64,
    pub available: u64,
    pub period: String,
    pub reset_at: Option<String>,
    pub exceeded: bool,
    pub overcommitted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NodeBody {
    pub id: String,
    pub parent: Option<String>,
    pub state: String,
    #[serde(default)]
    pub strict: bool,
    pub name: Option<String>,
    pub description: Option<String>,
    pub resources: BTreeMap<String, ResourceBody>,
    pub children: Vec<String>,
    pub claims: usize,
    pub exceeded: bool,
    pub overcommitted: bool,
    pub version: u64,
    pub created_at: String,
    pub last_updated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub id: String,
    pub resource_id: String,
    pub resource: String,
    pub amount: u64,
    pub reason: String,
    pub created_at: String,
    /// False when the same claim existed already (idempotent repeat).
    pub created: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditBody {
    pub id: i64,
    pub ts: String,
    pub actor: String,
    pub action: String,
    pub node_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

/// Answer of `GET /api/v1/snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SnapshotBody {
    /// Changes on every start of the service: a new value means its memory
    /// was rebuilt (from its database, or empty).
    pub instance_id: String,
    /// Ask with `since` = this next time.
    pub version: u64,
    /// Nodes changed since `since`, and their ancestors.
    pub nodes: Vec<NodeBody>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optional_fields_left_unset_are_left_out() {
        // The service refuses `null`: a client must leave unset fields out.
        let body = PutBody {
            parent: None,
            limits: [(
                "messages".to_owned(),
                LimitBody {
                    max: 10,
                    window: None,
                },
            )]
            .into_iter()
            .collect(),
            state: None,
            strict: Some(true),
            name: None,
            description: None,
        };
        assert_eq!(
            serde_json::to_string(&body).unwrap_or_default(),
            r#"{"limits":{"messages":{"max":10}},"strict":true}"#
        );
    }

    #[test]
    fn a_node_reads_back_as_written() {
        let json = serde_json::json!({
            "id": "team-a", "parent": "acme", "state": "active", "strict": false,
            "name": null, "description": null,
            "resources": {"messages": {
                "max": 100, "window": "day", "used": 3, "subtree_used": 5, "allocated": 10,
                "available": 87, "period": "2026-12-04", "reset_at": "2026-12-05T00:00:00Z",
                "exceeded": false, "overcommitted": false}},
            "children": ["team-a-1"], "claims": 0, "exceeded": false, "overcommitted": false,
            "version": 7, "created_at": "2026-12-04T10:00:00Z", "last_updated": null
        });
        let node: NodeBody = serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(node.resources["messages"].available, 87);
        assert_eq!(serde_json::to_value(&node).unwrap_or_default(), json);
    }
}
