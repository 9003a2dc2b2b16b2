//! The grants each node holds, and the roles a caller has along a node's
//! path: what the access check of every call reads.
//!
//! Grants are written through (`quotas::grants`) and mirrored here, so a
//! check costs a read lock per level of the path and no database call.
//! The decision itself is `domain::access::allows_roles`.

use super::*;
use crate::domain::access::{Identity, Role};

/// The roles a caller holds on each node of a path, root first: `None`
/// where no grant names it. Inline up to 8 levels (no allocation).
type PathRoles = SmallVec<[Option<Role>; 8]>;

// === impl CounterStore: grants ===

impl CounterStore {
    /// Mirrors a stored grant. Returns false when the node is unknown.
    pub fn add_grant(&self, id: &str, subject: &str, role: Role) -> bool {
        let Some(mut e) = self.nodes.get_mut(id) else {
            return false;
        };
        let grants = &mut e.extras_mut().grants;
        let grant = NodeGrant {
            subject: subject.into(),
            role,
        };
        if let Err(at) = grants.binary_search_by(|g| super::grant_order(g, &grant)) {
            grants.insert(at, grant);
        }
        true
    }

    /// Mirrors a revoked grant.
    pub fn remove_grant(&self, id: &str, subject: &str, role: Role) {
        if let Some(mut e) = self.nodes.get_mut(id) {
            e.extras_mut()
                .grants
                .retain(|g| !(&*g.subject == subject && g.role == role));
            e.tidy();
        }
    }

    /// Whether `id` holds the grant of `role` to `subject`.
    pub fn has_grant(&self, id: &str, subject: &str, role: Role) -> bool {
        self.nodes.get(id).is_some_and(|e| {
            e.grants()
                .iter()
                .any(|g| &*g.subject == subject && g.role == role)
        })
    }

    /// The roles `who` holds on each node from the root down to `id`, or
    /// `None` when `id` is unknown. Reads one entry at a time, like the
    /// usability check.
    pub fn roles_along(&self, id: &str, who: &Identity) -> Option<PathRoles> {
        let mut roles = PathRoles::new();
        let mut cur = String::new();
        {
            let e = self.nodes.get(id)?;
            roles.push(role_of(who, &e));
            match e.node.parent.as_deref() {
                Some(p) => cur.push_str(p),
                None => return Some(roles),
            }
        }
        // Depth is bounded by the tree; guard against a cycle anyway (the
        // roles found so far can only be fewer than the whole path's).
        for _ in 0..1_000 {
            let Some(e) = self.nodes.get(cur.as_str()) else {
                break;
            };
            roles.push(role_of(who, &e));
            match e.node.parent.as_deref() {
                Some(p) => {
                    cur.clear();
                    cur.push_str(p);
                }
                None => break,
            }
        }
        roles.reverse();
        Some(roles)
    }
}

/// The highest role the entry's grants give `who`.
fn role_of(who: &Identity, e: &Entry) -> Option<Role> {
    e.grants()
        .iter()
        .filter(|g| who.is(&g.subject))
        .map(|g| g.role)
        .max()
}
