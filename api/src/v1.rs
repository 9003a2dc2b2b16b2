//! The bodies of the hierarchical API under `/api/v1`, as they travel.
//!
//! The service reads request bodies strictly (objects only, no `null`, no
//! unknown fields, every key once): an optional field is left out, never
//! sent as `null`. These types serialize that way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::openapi::{Ref, RefOr, schema::Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::UniqueMap;
use crate::schema::{
    Amount, AnyValue, DesiredState, ItemUsage, Limits, NodeId, NodeState, Reason, ResourceName,
    Role, Subject, Text, Usage, WindowName,
};

// === request bodies ===

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"max": 1000, "window": "day"}))]
pub struct LimitBody {
    #[schema(value_type = Amount)]
    pub max: u64,
    /// Optional for a child (inherited from the parent) and for the
    /// built-in resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = WindowName, nullable = false)]
    pub window: Option<String>,
}

/// The whole desired state of a node. `limits` is required: a node's
/// limits are exactly the ones named (`{}` removes them all), so a typo
/// (`limitz`) or a forgotten field cannot remove them. Other fields left
/// out keep their current value (`state`, `strict`, `name`,
/// `description`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"parent": "acme", "limits": {"messages": {"max": 1000}}}))]
pub struct PutBody {
    /// The parent's id; left out for a root, or to keep the current one
    /// (a node's parent never changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = NodeId, nullable = false)]
    pub parent: Option<String>,
    #[schema(value_type = Limits)]
    pub limits: UniqueMap<LimitBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = DesiredState, nullable = false)]
    pub state: Option<String>,
    /// Count usage in the database on every call: exact across replicas,
    /// at the cost of a database round trip per call. Unset keeps the
    /// current setting (off for a new node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub strict: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Text, nullable = false)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Text, nullable = false)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "team-a", "limits": {"messages": {"max": 100}}}))]
pub struct AllocateBody {
    /// The new child's id.
    #[schema(value_type = NodeId)]
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Text, nullable = false)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Text, nullable = false)]
    pub description: Option<String>,
    /// A new node has only these limits (none when left out).
    #[serde(default)]
    #[schema(value_type = Limits)]
    pub limits: UniqueMap<LimitBody>,
    /// Subjects (or `group:<name>`) made admins of the new node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Subject>)]
    pub admin_user_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"usage": {"messages": 1}}))]
pub struct UsageBody {
    #[schema(value_type = Usage)]
    pub usage: UniqueMap<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"resource": "storage", "resource_id": "pvc-data-0", "amount": 10, "reason": "volume data-0"}))]
pub struct ClaimBody {
    /// A capacity (a limit with window `none`) of the node.
    #[schema(value_type = ResourceName)]
    pub resource: String,
    /// What holds the capacity; claiming it again is idempotent.
    #[schema(value_type = NodeId)]
    pub resource_id: String,
    #[schema(value_type = Amount)]
    pub amount: u64,
    #[schema(value_type = Reason)]
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    #[schema(value_type = DesiredState)]
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"subject": "system:serviceaccount:team-a:web", "role": "reporter"}))]
pub struct GrantBody {
    #[schema(value_type = Subject)]
    pub subject: String,
    #[schema(value_type = Role)]
    pub role: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BatchMode {
    /// Always count (tracking), like the flat `increment`.
    #[default]
    Increment,
    /// Check-and-increment per item.
    Consume,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"mode": "consume", "items": [{"id": "team-a", "usage": {"messages": 1}}]}))]
pub struct BatchBody {
    #[serde(default)]
    pub mode: BatchMode,
    /// 1 to 10,000 items, counted in order.
    #[schema(min_items = 1, max_items = 10000)]
    pub items: Vec<BatchItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// The node to count on; an id a single call would refuse fails the
    /// item alone.
    pub id: String,
    #[schema(value_type = ItemUsage)]
    pub usage: UniqueMap<u64>,
}

// === response bodies ===

/// One resource of a node: its limit and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct ResourceBody {
    /// The limit.
    pub max: u64,
    #[schema(value_type = WindowName)]
    pub window: String,
    /// Counted on this node itself in the current period.
    pub used: u64,
    /// Counted on this node and every node below it.
    pub subtree_used: u64,
    /// Set aside for the children (the sum of their limits).
    pub allocated: u64,
    /// What a consume may still take here: `max - used - allocated`, and
    /// never more than an ancestor has left.
    pub available: u64,
    /// The current period's key (`2026-12-04` for a day, `none` for a
    /// capacity).
    pub period: String,
    /// When the current period ends (RFC 3339); null for a capacity.
    #[schema(required = true)]
    pub reset_at: Option<String>,
    /// The limit is reached.
    pub exceeded: bool,
    /// `used + allocated` passes `max` (a limit was lowered below what is
    /// in use or handed down): consumes are refused until it fits again.
    pub overcommitted: bool,
}

/// A quota node and its resources.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
pub struct NodeBody {
    #[schema(value_type = NodeId)]
    pub id: String,
    /// Null for a root.
    #[schema(required = true)]
    pub parent: Option<String>,
    #[schema(value_type = NodeState)]
    pub state: String,
    /// Usage is counted in the database on every call.
    #[serde(default)]
    pub strict: bool,
    #[schema(required = true)]
    pub name: Option<String>,
    #[schema(required = true)]
    pub description: Option<String>,
    /// By resource name.
    pub resources: BTreeMap<String, ResourceBody>,
    /// The children's ids, sorted.
    pub children: Vec<String>,
    /// Capacity claims held on this node.
    pub claims: usize,
    /// A resource is exceeded.
    pub exceeded: bool,
    /// A resource is overcommitted.
    pub overcommitted: bool,
    /// Grows with every change of the node (see `GET /api/v1/snapshot`).
    pub version: u64,
    /// RFC 3339.
    pub created_at: String,
    /// Last change of usage, limits or state (RFC 3339); null if never.
    #[schema(required = true)]
    pub last_updated: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `after` for the next page; null on the last page.
    pub next_after: Option<serde_json::Value>,
}

/// The document's schema of a [`Page`] of nodes.
#[derive(Debug)]
pub struct NodePage;

/// The document's schema of a [`Page`] of audit records.
#[derive(Debug)]
pub struct AuditPage;

// Written by hand: a derive on the generic `Page` copies the item's whole
// schema into each page (a second `NodeBody` under another name in every
// generated client); these refer to it.
macro_rules! page_schema {
    ($page:ident of $item:ty) => {
        impl PartialSchema for $page {
            fn schema() -> RefOr<Schema> {
                page_of(&<$item>::name())
            }
        }

        impl ToSchema for $page {
            fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
                schemas.push((<$item>::name().into_owned(), <$item>::schema()));
                <$item>::schemas(schemas);
                schemas.push((AnyValue::name().into_owned(), AnyValue::schema()));
            }
        }
    };
}

page_schema!(NodePage of NodeBody);
page_schema!(AuditPage of AuditBody);

fn page_of(item: &str) -> RefOr<Schema> {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    let mut next_after = Ref::from_schema_name(AnyValue::name());
    next_after.description = "Pass as `after` for the next page; null on the last page.".into();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("One page of a list."))
        .property(
            "items",
            ArrayBuilder::new().items(Ref::from_schema_name(item)),
        )
        .property("next_after", next_after)
        .required("items")
        .required("next_after")
        .into()
}

/// A capacity claim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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

/// One audit record; records are never changed or removed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditBody {
    pub id: i64,
    pub ts: String,
    pub actor: String,
    pub action: String,
    pub node_id: String,
    /// The node (or grant) before the change; null for a creation.
    #[schema(value_type = AnyValue, required = true)]
    pub before: Option<serde_json::Value>,
    /// The node (or grant) after the change; null for a deletion.
    #[schema(value_type = AnyValue, required = true)]
    pub after: Option<serde_json::Value>,
}

/// Answer of `GET /api/v1/snapshot`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, ToSchema)]
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

#[cfg(test)]
mod page_schema_tests {
    use super::*;

    /// The hand-written page schema names exactly the fields a page has.
    #[test]
    fn the_page_schema_has_the_fields_of_a_page() {
        let page: Page<u8> = Page {
            items: vec![],
            next_after: None,
        };
        let value = serde_json::to_value(&page).unwrap_or_default();
        let mut fields: Vec<&String> = value
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        fields.sort();
        let schema = serde_json::to_value(NodePage::schema()).unwrap_or_default();
        let mut documented: Vec<&String> = schema["properties"]
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        documented.sort();
        assert_eq!(fields, documented);
        assert_eq!(
            schema["properties"]["items"]["items"]["$ref"],
            "#/components/schemas/NodeBody"
        );
        assert_eq!(
            schema["required"],
            serde_json::json!(["items", "next_after"])
        );
    }
}
