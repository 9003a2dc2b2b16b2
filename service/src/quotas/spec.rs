//! A node's spec: reproduced from a node, and resolved into limits.

use super::*;

/// The spec that reproduces a node.
pub(super) fn spec_of(n: &Node) -> NodeSpec {
    NodeSpec {
        parent: n.parent.as_deref().map(str::to_owned),
        limits: n
            .resources
            .iter()
            .map(|r| {
                (
                    r.name.to_string(),
                    LimitSpec {
                        max: r.max,
                        window: Some(r.window()),
                    },
                )
            })
            .collect(),
        state: Some(n.state),
        strict: Some(n.strict),
        name: n.name().map(str::to_owned),
        description: n.description().map(str::to_owned),
        admins: Vec::new(),
    }
}

/// Checks resource names and windows; a missing window comes from the
/// parent's limit of the same resource (or the built-in window).
pub(super) fn resolve_limits(
    limits: &BTreeMap<String, LimitSpec>,
    parent: Option<&Node>,
) -> Result<Vec<(String, Limit)>, QuotaError> {
    let mut out = Vec::with_capacity(limits.len());
    for (name, spec) in limits {
        validate_resource_name(name).map_err(|e| QuotaError::Invalid(e.to_string()))?;
        if spec.max > crate::domain::counter::MAX_COUNT {
            return Err(QuotaError::Invalid(format!(
                "max of {name:?} is {}; the maximum is {}",
                spec.max,
                crate::domain::counter::MAX_COUNT
            )));
        }
        let inherited = parent.and_then(|p| p.resource(name)).map(|r| r.window());
        let window = match (spec.window, builtin_window(name), inherited) {
            (Some(w), Some(b), _) if w != b => {
                return Err(QuotaError::Invalid(format!(
                    "{name:?} is built in with window {b}; it cannot have window {w}"
                )));
            }
            (Some(w), _, _) => w,
            (None, Some(b), _) => b,
            (None, None, Some(w)) => w,
            // Whether a window can be left out depends on the tree (the
            // node's parent and its limits): a conflict, not a bad body.
            (None, None, None) => {
                return Err(QuotaError::Conflict {
                    kind: Conflict::NoWindowToInherit,
                    message: format!(
                        "{name:?} needs a window (minute, hour, day, month or none): {}",
                        if parent.is_some() {
                            "the parent has no limit for it to inherit"
                        } else {
                            "a root has no parent to inherit one from"
                        }
                    ),
                });
            }
        };
        out.push((
            name.clone(),
            Limit {
                max: spec.max,
                window,
            },
        ));
    }
    Ok(out)
}
