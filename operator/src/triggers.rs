//! Which watched changes wake which reconciles, as pure functions over the
//! cached objects.
//!
//! ```text
//!  TenantQuota      spec, finalizers, deletion ──▶ the tenant itself
//!                                              └─▶ every allocation under it
//!  QuotaAllocation  spec, finalizers, deletion ──▶ the allocation itself
//!                   ... or its Bound condition ──▶ siblings not bound yet (capacity, turn order)
//!                                              ├─▶ its children (their parent's binding)
//!                                              ├─▶ its parent allocation (a deletion may wait)
//!                                              └─▶ its tenant, while the tenant is being deleted
//!  Namespace        labels ────────────────────▶ the allocations in it (allocationNamespaceSelector)
//! ```
//!
//! Status-only changes (usage, Synced, the operator's own status patches)
//! wake nothing: at 1,000 tenants and 5,000 allocations each status write
//! woke the writer and its siblings again, and their echoes multiplied the
//! API traffic (docs/perf-history/01-first-measurements.md, "Operator").

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use futures::{Stream, StreamExt, stream};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use crate::crd::{ParentKind, QuotaAllocation};
use crate::status::{bound_condition, is_bound};

/// The changes that need a reconcile of the object itself: its spec
/// (generation), its finalizers, and its deletion. Marking an object for
/// deletion also bumps its generation; the timestamp is hashed anyway.
pub fn lifecycle<K: Resource>(obj: &K) -> Option<u64> {
    let meta = obj.meta();
    Some(hash(&(
        meta.generation,
        &meta.finalizers,
        meta.deletion_timestamp.is_some(),
    )))
}

/// [`lifecycle`] plus the allocation's Bound condition: what its siblings,
/// children and parent react to.
pub fn allocation_change(qa: &QuotaAllocation) -> Option<u64> {
    Some(hash(&(lifecycle(qa), bound_condition(qa.status.as_ref()))))
}

/// The objects of a watch whose `hash` changed since their last event,
/// and every deleted object. kube-runtime's `predicate_filter` can drop a
/// final delete (its hash may equal the update before), and a deletion is
/// exactly what frees capacity for a waiting sibling.
pub fn changed_or_deleted<K, S>(
    events: S,
    hash: fn(&K) -> Option<u64>,
) -> impl Stream<Item = Result<K, watcher::Error>> + Send
where
    K: Resource + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
    let mut last: HashMap<ObjectKey, Option<u64>> = HashMap::new();
    events
        .map(move |event| {
            let out = match event {
                Ok(watcher::Event::Apply(obj) | watcher::Event::InitApply(obj)) => {
                    let h = hash(&obj);
                    (last.insert(ObjectKey::of(&obj), h) != Some(h)).then_some(Ok(obj))
                }
                Ok(watcher::Event::Delete(obj)) => {
                    last.remove(&ObjectKey::of(&obj));
                    Some(Ok(obj))
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                Err(e) => Some(Err(e)),
            };
            stream::iter(out)
        })
        .flatten()
}

/// Identifies an object across events (a recreated object is a new one).
#[derive(PartialEq, Eq, Hash)]
struct ObjectKey(Option<String>, String, Option<String>);

impl ObjectKey {
    fn of<K: Resource>(obj: &K) -> Self {
        let m = obj.meta();
        ObjectKey(
            m.namespace.clone(),
            m.name.clone().unwrap_or_default(),
            m.uid.clone(),
        )
    }
}

/// The allocations directly under tenant `name`.
pub fn allocations_of_tenant(
    name: &str,
    all: &[Arc<QuotaAllocation>],
) -> Vec<ObjectRef<QuotaAllocation>> {
    all.iter()
        .filter(|qa| settled(qa) && points_at_tenant(qa, name))
        .map(|qa| ObjectRef::from_obj(qa.as_ref()))
        .collect()
}

/// What a change of `changed` wakes among the allocations: its siblings
/// that are not bound (they may fit now, or it may be their turn), its
/// children, and its parent allocation.
pub fn woken_by_allocation(
    changed: &QuotaAllocation,
    all: &[Arc<QuotaAllocation>],
) -> Vec<ObjectRef<QuotaAllocation>> {
    let ns = changed.namespace().unwrap_or_default();
    let name = changed.name_any();
    let parent_ns = parent_namespace(changed);
    let mut out: Vec<ObjectRef<QuotaAllocation>> = all
        .iter()
        .filter(|qa| settled(qa))
        .filter(|qa| {
            let sibling = same_parent(qa, changed)
                && !(qa.name_any() == name && qa.namespace().as_deref() == Some(ns.as_str()));
            (sibling && !is_bound(qa.status.as_ref())) || points_at_allocation(qa, &ns, &name)
        })
        .map(|qa| ObjectRef::from_obj(qa.as_ref()))
        .collect();
    if changed.spec.parent_ref.kind == ParentKind::QuotaAllocation {
        out.push(ObjectRef::new(&changed.spec.parent_ref.name).within(parent_ns));
    }
    out
}

/// The tenant a change of `qa` may concern (only a tenant that waits for
/// its allocations to go before it is deleted cares).
pub fn tenant_of(qa: &QuotaAllocation) -> Option<&str> {
    (qa.spec.parent_ref.kind == ParentKind::TenantQuota).then_some(qa.spec.parent_ref.name.as_str())
}

/// The allocations in namespace `ns`.
pub fn allocations_in_namespace(
    ns: &str,
    all: &[Arc<QuotaAllocation>],
) -> Vec<ObjectRef<QuotaAllocation>> {
    all.iter()
        .filter(|qa| settled(qa) && qa.metadata.namespace.as_deref() == Some(ns))
        .map(|qa| ObjectRef::from_obj(qa.as_ref()))
        .collect()
}

// === helpers (no allocation: they run once per cached object per event) ===

/// Whether the operator has taken the object in (its finalizer is on). One
/// that has not is woken by its own watch event once the finalizer is
/// added; waking it earlier only repeats the finalizer patch on a cached
/// copy that lacks it (a failed request each, 2,000 per 1,000 allocations).
fn settled(qa: &QuotaAllocation) -> bool {
    qa.finalizers().iter().any(|f| f == crate::crd::FINALIZER)
}

fn parent_namespace(qa: &QuotaAllocation) -> &str {
    qa.spec
        .parent_ref
        .namespace
        .as_deref()
        .or(qa.metadata.namespace.as_deref())
        .unwrap_or_default()
}

fn points_at_tenant(qa: &QuotaAllocation, name: &str) -> bool {
    qa.spec.parent_ref.kind == ParentKind::TenantQuota && qa.spec.parent_ref.name == name
}

fn points_at_allocation(qa: &QuotaAllocation, ns: &str, name: &str) -> bool {
    qa.spec.parent_ref.kind == ParentKind::QuotaAllocation
        && qa.spec.parent_ref.name == name
        && parent_namespace(qa) == ns
}

fn same_parent(a: &QuotaAllocation, b: &QuotaAllocation) -> bool {
    let (ra, rb) = (&a.spec.parent_ref, &b.spec.parent_ref);
    ra.kind == rb.kind
        && ra.name == rb.name
        && (ra.kind == ParentKind::TenantQuota || parent_namespace(a) == parent_namespace(b))
}

fn hash<T: Hash>(value: &T) -> u64 {
    let mut h = DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ParentRef, QuotaAllocationSpec, QuotaStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn qa(ns: &str, name: &str, parent: (ParentKind, &str, Option<&str>)) -> QuotaAllocation {
        let mut qa = QuotaAllocation::new(
            name,
            QuotaAllocationSpec {
                parent_ref: ParentRef {
                    kind: parent.0,
                    name: parent.1.into(),
                    namespace: parent.2.map(Into::into),
                },
                limits: Default::default(),
                state: Default::default(),
                strict: false,
                access: Vec::new(),
                namespace_access: Default::default(),
            },
        );
        qa.metadata.namespace = Some(ns.into());
        qa.metadata.generation = Some(1);
        qa.metadata.finalizers = Some(vec![crate::crd::FINALIZER.into()]);
        qa
    }

    fn under_tenant(ns: &str, name: &str, tenant: &str) -> QuotaAllocation {
        qa(ns, name, (ParentKind::TenantQuota, tenant, None))
    }

    fn with_bound(mut qa: QuotaAllocation, status: &str, reason: &str) -> QuotaAllocation {
        qa.status = Some(QuotaStatus {
            conditions: vec![Condition {
                type_: "Bound".into(),
                status: status.into(),
                reason: reason.into(),
                message: String::new(),
                last_transition_time: crate::status::now(),
                observed_generation: None,
            }],
            ..Default::default()
        });
        qa
    }

    fn names(refs: &[ObjectRef<QuotaAllocation>]) -> Vec<String> {
        let mut v: Vec<String> = refs
            .iter()
            .map(|r| format!("{}/{}", r.namespace.as_deref().unwrap_or(""), r.name))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn status_only_changes_pass_neither_predicate() {
        let a = with_bound(under_tenant("a", "x", "t"), "True", "Allocated");
        let mut b = a.clone();
        b.status.as_mut().unwrap().last_sync_time = Some(crate::status::now());
        b.status.as_mut().unwrap().exceeded = true;
        assert_eq!(lifecycle(&a), lifecycle(&b));
        assert_eq!(allocation_change(&a), allocation_change(&b));
    }

    #[test]
    fn spec_finalizers_and_deletion_pass_lifecycle() {
        let a = under_tenant("a", "x", "t");
        let mut spec = a.clone();
        spec.metadata.generation = Some(2);
        let mut fin = a.clone();
        fin.metadata.finalizers = Some(vec!["f".into()]);
        let mut del = a.clone();
        del.metadata.deletion_timestamp = Some(crate::status::now());
        for b in [spec, fin, del] {
            assert_ne!(lifecycle(&a), lifecycle(&b));
        }
    }

    #[test]
    fn a_binding_change_passes_allocation_change_only() {
        let waiting = with_bound(under_tenant("a", "x", "t"), "False", "ParentExhausted");
        let bound = with_bound(under_tenant("a", "x", "t"), "True", "Allocated");
        assert_eq!(lifecycle(&waiting), lifecycle(&bound));
        assert_ne!(allocation_change(&waiting), allocation_change(&bound));
    }

    #[test]
    fn a_change_wakes_waiting_siblings_children_and_the_parent_allocation() {
        let all: Vec<Arc<QuotaAllocation>> = vec![
            with_bound(under_tenant("a", "bound", "t"), "True", "Allocated"),
            with_bound(
                under_tenant("b", "waiting", "t"),
                "False",
                "ParentExhausted",
            ),
            under_tenant("c", "new", "t"),
            under_tenant("a", "other-tenant", "u"),
            qa("a", "child", (ParentKind::QuotaAllocation, "me", None)),
            qa(
                "z",
                "remote-child",
                (ParentKind::QuotaAllocation, "me", Some("a")),
            ),
            qa("z", "not-mine", (ParentKind::QuotaAllocation, "me", None)),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        let me = under_tenant("a", "me", "t");
        assert_eq!(
            names(&woken_by_allocation(&me, &all)),
            vec!["a/child", "b/waiting", "c/new", "z/remote-child"]
        );

        let nested = qa("a", "child", (ParentKind::QuotaAllocation, "me", None));
        assert_eq!(
            names(&woken_by_allocation(&nested, &all)),
            vec!["a/me", "z/remote-child"],
            "the parent allocation, and the sibling (same parent a/me) that is not bound"
        );
    }

    #[test]
    fn objects_without_the_finalizer_wait_for_their_own_event() {
        let mut new = under_tenant("a", "new", "t");
        new.metadata.finalizers = None;
        let all = vec![Arc::new(new)];
        let me = under_tenant("a", "me", "t");
        assert!(woken_by_allocation(&me, &all).is_empty());
        assert!(allocations_of_tenant("t", &all).is_empty());
        assert!(allocations_in_namespace("a", &all).is_empty());
    }

    #[test]
    fn a_change_does_not_wake_itself_through_the_sibling_rule() {
        let me = Arc::new(under_tenant("a", "me", "t"));
        assert!(woken_by_allocation(&me, std::slice::from_ref(&me)).is_empty());
    }

    #[tokio::test]
    async fn changes_pass_once_and_deletions_always() {
        let a = under_tenant("a", "x", "t");
        let mut status_only = with_bound(a.clone(), "True", "Allocated");
        status_only.status.as_mut().unwrap().conditions.clear();
        let mut edited = a.clone();
        edited.metadata.generation = Some(2);
        let other = under_tenant("a", "y", "t");
        let events = vec![
            Ok(watcher::Event::Init),
            Ok(watcher::Event::InitApply(a.clone())),
            Ok(watcher::Event::InitApply(other.clone())),
            Ok(watcher::Event::InitDone),
            Ok(watcher::Event::Apply(status_only)),
            Ok(watcher::Event::Apply(edited.clone())),
            Ok(watcher::Event::Apply(edited.clone())),
            Ok(watcher::Event::Delete(edited.clone())),
            Ok(watcher::Event::Apply(edited)),
        ];
        let passed: Vec<(String, Option<i64>)> =
            changed_or_deleted(stream::iter(events), lifecycle::<QuotaAllocation>)
                .map(|r| {
                    let o = r.unwrap();
                    (o.name_any(), o.metadata.generation)
                })
                .collect()
                .await;
        assert_eq!(
            passed,
            vec![
                ("x".into(), Some(1)),
                ("y".into(), Some(1)),
                ("x".into(), Some(2)),
                ("x".into(), Some(2)),
                ("x".into(), Some(2)),
            ],
            "first sight, the edit, the deletion, a recreation: not the status-only or repeated update"
        );
    }

    #[test]
    fn tenants_and_namespaces_wake_their_allocations() {
        let all: Vec<Arc<QuotaAllocation>> = vec![
            under_tenant("a", "x", "t"),
            under_tenant("b", "y", "t"),
            under_tenant("a", "z", "u"),
            qa("a", "nested", (ParentKind::QuotaAllocation, "x", None)),
        ]
        .into_iter()
        .map(Arc::new)
        .collect();
        assert_eq!(names(&allocations_of_tenant("t", &all)), vec!["a/x", "b/y"]);
        assert_eq!(
            names(&allocations_in_namespace("a", &all)),
            vec!["a/nested", "a/x", "a/z"]
        );
        assert_eq!(tenant_of(&all[0]), Some("t"));
        assert_eq!(tenant_of(&all[3]), None);
    }
}
