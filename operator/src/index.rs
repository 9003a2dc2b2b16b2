//! Allocations by parent, kept from the allocation watch.
//!
//! ```text
//!  watch QuotaAllocation ──▶ Children::apply / delete / relist
//!                                 │
//!   ParentKey::Tenant("acme") ────┼──▶ {team-a/web, team-b/api}
//!   ParentKey::Allocation(ns, n) ─┘──▶ {its children}
//! ```
//!
//! Waking siblings, finding older ones and blocking a deletion all ask "who
//! is under this parent". Scanning every cached allocation for it was the
//! operator's largest CPU cost at 5,000 allocations
//! (docs/perf-history/01-first-measurements.md, "Operator"); the index
//! answers from the few that are.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::crd::{ParentKind, QuotaAllocation};

/// Identifies a parent for sibling comparison.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ParentKey {
    Tenant(String),
    Allocation(String, String),
}

/// The parent key an allocation points at.
pub fn parent_key(qa: &QuotaAllocation) -> ParentKey {
    let r = &qa.spec.parent_ref;
    match r.kind {
        ParentKind::TenantQuota => ParentKey::Tenant(r.name.clone()),
        ParentKind::QuotaAllocation => ParentKey::Allocation(
            r.namespace
                .clone()
                .unwrap_or_else(|| qa.namespace().unwrap_or_default()),
            r.name.clone(),
        ),
    }
}

/// Allocations by their parent.
#[derive(Debug, Default)]
pub struct Children {
    by_parent: HashMap<ParentKey, HashSet<ObjectRef<QuotaAllocation>>>,
    parent_of: HashMap<ObjectRef<QuotaAllocation>, ParentKey>,
    /// A relist in progress: it replaces everything at its end.
    relist: Option<Vec<QuotaAllocation>>,
}

/// The index shared by the watch that keeps it and the reconcilers.
pub type SharedChildren = Arc<RwLock<Children>>;

// === impl Children ===

impl Children {
    /// Keeps the index in step with one watch event.
    pub fn observe(&mut self, event: &watcher::Event<QuotaAllocation>) {
        match event {
            watcher::Event::Apply(qa) => self.apply(qa),
            watcher::Event::Delete(qa) => self.delete(qa),
            watcher::Event::Init => self.relist = Some(Vec::new()),
            watcher::Event::InitApply(qa) => match &mut self.relist {
                Some(list) => list.push(qa.clone()),
                None => self.apply(qa),
            },
            watcher::Event::InitDone => {
                let list = self.relist.take().unwrap_or_default();
                self.by_parent.clear();
                self.parent_of.clear();
                for qa in &list {
                    self.apply(qa);
                }
            }
        }
    }

    /// Adds or moves one allocation.
    pub fn apply(&mut self, qa: &QuotaAllocation) {
        let me = ObjectRef::from_obj(qa);
        let parent = parent_key(qa);
        if let Some(old) = self.parent_of.insert(me.clone(), parent.clone())
            && old != parent
        {
            self.remove_from(&old, &me);
        }
        self.by_parent.entry(parent).or_default().insert(me);
    }

    /// Forgets one allocation.
    pub fn delete(&mut self, qa: &QuotaAllocation) {
        let me = ObjectRef::from_obj(qa);
        if let Some(old) = self.parent_of.remove(&me) {
            self.remove_from(&old, &me);
        }
    }

    /// The allocations directly under `parent`, by namespace and name.
    pub fn of(&self, parent: &ParentKey) -> Vec<ObjectRef<QuotaAllocation>> {
        let mut out: Vec<_> = self
            .by_parent
            .get(parent)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    fn remove_from(&mut self, parent: &ParentKey, me: &ObjectRef<QuotaAllocation>) {
        if let Some(set) = self.by_parent.get_mut(parent) {
            set.remove(me);
            if set.is_empty() {
                self.by_parent.remove(parent);
            }
        }
    }
}

/// The cached allocations under `parent` (the index names them, the store
/// holds them).
pub fn children_of(
    index: &SharedChildren,
    store: &Store<QuotaAllocation>,
    parent: &ParentKey,
) -> Vec<Arc<QuotaAllocation>> {
    let refs = match index.read() {
        Ok(index) => index.of(parent),
        Err(poisoned) => poisoned.into_inner().of(parent),
    };
    refs.iter().filter_map(|r| store.get(r)).collect()
}

/// The key an allocation is a parent under.
pub fn own_key(qa: &QuotaAllocation) -> ParentKey {
    ParentKey::Allocation(qa.namespace().unwrap_or_default(), qa.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ParentKind, ParentRef, QuotaAllocationSpec};

    fn qa(ns: &str, name: &str, kind: ParentKind, parent: &str) -> QuotaAllocation {
        let mut qa = QuotaAllocation::new(
            name,
            QuotaAllocationSpec {
                parent_ref: ParentRef {
                    kind,
                    name: parent.into(),
                    namespace: None,
                },
                limits: Default::default(),
                state: Default::default(),
                strict: false,
                access: Vec::new(),
                namespace_access: Default::default(),
            },
        );
        qa.metadata.namespace = Some(ns.into());
        qa
    }

    fn names(refs: Vec<ObjectRef<QuotaAllocation>>) -> Vec<String> {
        refs.into_iter().map(|r| r.name).collect()
    }

    fn tenant(name: &str) -> ParentKey {
        ParentKey::Tenant(name.into())
    }

    #[test]
    fn applies_moves_and_deletes() {
        let mut idx = Children::default();
        let a = qa("ns", "a", ParentKind::TenantQuota, "t");
        let b = qa("ns", "b", ParentKind::TenantQuota, "t");
        let c = qa("ns", "c", ParentKind::QuotaAllocation, "a");
        for o in [&a, &b, &c] {
            idx.observe(&watcher::Event::Apply(o.clone()));
        }
        assert_eq!(names(idx.of(&tenant("t"))), vec!["a", "b"]);
        assert_eq!(names(idx.of(&own_key(&a))), vec!["c"]);

        // A re-applied object is not listed twice; a moved one moves.
        idx.observe(&watcher::Event::Apply(a.clone()));
        let b_moved = qa("ns", "b", ParentKind::TenantQuota, "u");
        idx.observe(&watcher::Event::Apply(b_moved.clone()));
        assert_eq!(names(idx.of(&tenant("t"))), vec!["a"]);
        assert_eq!(names(idx.of(&tenant("u"))), vec!["b"]);

        idx.observe(&watcher::Event::Delete(c));
        assert!(idx.of(&own_key(&a)).is_empty());
        assert!(
            !idx.by_parent.contains_key(&own_key(&a)),
            "no empty sets kept"
        );
    }

    #[test]
    fn a_relist_replaces_everything_at_its_end() {
        let mut idx = Children::default();
        idx.observe(&watcher::Event::Apply(qa(
            "ns",
            "gone",
            ParentKind::TenantQuota,
            "t",
        )));
        idx.observe(&watcher::Event::Init);
        idx.observe(&watcher::Event::InitApply(qa(
            "ns",
            "kept",
            ParentKind::TenantQuota,
            "t",
        )));
        assert_eq!(
            names(idx.of(&tenant("t"))),
            vec!["gone"],
            "the old view answers until the relist is complete"
        );
        idx.observe(&watcher::Event::InitDone);
        assert_eq!(names(idx.of(&tenant("t"))), vec!["kept"]);
    }
}
