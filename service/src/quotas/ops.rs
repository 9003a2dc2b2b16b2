//! The rows and audit values a change writes.

use super::*;

pub(super) fn amounts(limits: &[(String, Limit)]) -> Vec<(String, u64)> {
    limits.iter().map(|(n, l)| (n.clone(), l.max)).collect()
}

/// The node's row (no limits).
pub(super) fn node_row(id: &str, n: &Node, now: i64) -> WriteOp {
    WriteOp::UpsertNode {
        id: id.to_owned(),
        parent: n.parent.as_deref().map(str::to_owned),
        state: n.state,
        strict: n.strict,
        name: n.name().map(str::to_owned),
        description: n.description().map(str::to_owned),
        created_at: n.created_at,
        updated_at: now,
    }
}

/// The node row and its limits.
pub(super) fn node_ops(id: &str, n: &Node, now: i64) -> Vec<WriteOp> {
    vec![
        node_row(id, n, now),
        WriteOp::ReplaceLimits {
            node_id: id.to_owned(),
            limits: n
                .resources
                .iter()
                .map(|r| (r.name.to_string(), r.limit()))
                .collect(),
        },
    ]
}

/// Usage rows of a node's counted resources at `now` (with `used` replaced
/// by `zero` when resetting).
pub(super) fn usage_rows(
    id: &str,
    n: &Node,
    now: i64,
    auto_reset: bool,
    zero: bool,
) -> Vec<UsageRow> {
    n.counted_usage(now, auto_reset)
        .map(|(resource, period, used)| UsageRow {
            node_id: id.to_owned(),
            resource,
            period,
            used: if zero { 0 } else { used },
            last_updated: now,
        })
        .collect()
}

/// A node's spec as audit JSON.
pub(super) fn node_json(n: &Node) -> serde_json::Value {
    let limits: serde_json::Map<String, serde_json::Value> = n
        .resources
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                json!({"max": r.max, "window": r.window().as_str()}),
            )
        })
        .collect();
    json!({
        "parent": n.parent.as_deref(),
        "state": n.state.as_str(),
        "strict": n.strict,
        "name": n.name(),
        "description": n.description(),
        "limits": limits,
    })
}

pub(super) fn usage_json(n: &Node, now: i64, auto_reset: bool) -> serde_json::Value {
    let usage: serde_json::Map<String, serde_json::Value> = n
        .resources
        .iter()
        .map(|r| {
            let (period, used) = r.used_at(now, auto_reset);
            (
                r.name.to_string(),
                json!({"period": period.key(), "used": used}),
            )
        })
        .collect();
    json!({ "usage": usage })
}
