//! The QuotaAllocation reconciler: an allocation is a child node, reserved
//! from its parent.
//!
//! ```text
//! apply:  resolve parentRef ──(missing / cycle / namespace refused)──▶ Bound=False, not pushed
//!           │
//!           ├─ an older sibling is still waiting ──▶ zero limits, Bound=False ParentExhausted
//!           ▼
//!         PUT with its limits ──409 does_not_fit──▶ zero limits (or keep the limits it had)
//!           │                                        Bound=False ParentExhausted
//!           ▼
//!         Bound=True, grants, status from the node
//! cleanup: wait while allocations point here ─▶ DELETE the node
//! ```
//!
//! Allocations bind in creation order: while an older allocation of the same
//! parent waits for capacity, a younger one does not take what frees up.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use quota_api::ClientError;

use crate::context::Context;
use crate::crd::FINALIZER;
use crate::crd::{AccessGrant, NamespaceAccess, QuotaAllocation, Role, TenantQuota};
use crate::error::{Error, Result};
use crate::index::{ParentKey, children_of, own_key, parent_key};
use crate::quota_object::QuotaObject;
use crate::selector;
use crate::service_node;
use crate::status::{BindReason, Binding, Observation};
use crate::status::{bound_condition, is_bound};

/// Routes to apply or cleanup through the finalizer.
pub async fn reconcile(qa: Arc<QuotaAllocation>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<QuotaAllocation> =
        Api::namespaced(ctx.client.clone(), &qa.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, qa, |event| async {
        match event {
            Finalizer::Apply(qa) => apply(&qa, &ctx).await,
            Finalizer::Cleanup(qa) => cleanup(&qa, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

/// The parent as far as binding needs it.
struct Parent {
    node_id: String,
    key: ParentKey,
}

fn rejected(reason: BindReason, message: impl Into<String>) -> Binding {
    Binding::Rejected {
        reason,
        message: message.into(),
    }
}

/// Follows `parentRef` up to the tenant: the direct parent, or why it cannot bind.
async fn resolve(
    qa: &QuotaAllocation,
    ctx: &Context,
) -> Result<std::result::Result<Parent, Binding>> {
    let ns = qa.namespace().unwrap_or_default();
    let me = (ns.clone(), qa.name_any());
    let mut seen: HashSet<(String, String)> = HashSet::from([me.clone()]);
    let mut key = parent_key(qa);
    let mut direct: Option<Parent> = None;
    let mut unbound: Option<String> = None;
    for _ in 0..64 {
        match key {
            ParentKey::Tenant(name) => {
                let Some(tq) = ctx.tenants.get(&ObjectRef::new(&name)) else {
                    return Ok(Err(rejected(
                        BindReason::ParentNotFound,
                        format!("TenantQuota {name} does not exist"),
                    )));
                };
                // A bound allocation keeps working while its tenant waits to be
                // deleted; nothing new binds under it.
                if tq.metadata.deletion_timestamp.is_some() && !was_bound(qa, ctx) {
                    return Ok(Err(rejected(
                        BindReason::ParentNotFound,
                        format!("TenantQuota {name} is being deleted"),
                    )));
                }
                // Its node is another TenantQuota's: allocating under it
                // would take from that one.
                if let Some(owner) = crate::ids::other_owner(&tq, &ctx.tenants.state()) {
                    return Ok(Err(rejected(
                        BindReason::ParentNotFound,
                        format!(
                            "TenantQuota {name} is not in the quota service: its tenantId belongs to TenantQuota {owner}"
                        ),
                    )));
                }
                if !namespace_allowed(&tq, &ns, ctx).await? {
                    return Ok(Err(rejected(
                        BindReason::NamespaceNotAllowed,
                        format!(
                            "the allocationNamespaceSelector of TenantQuota {name} does not select namespace {ns}"
                        ),
                    )));
                }
                if let Some(why) = unbound {
                    return Ok(Err(rejected(BindReason::ParentNotFound, why)));
                }
                let parent = direct.unwrap_or(Parent {
                    node_id: tq.node_id(),
                    key: ParentKey::Tenant(name),
                });
                return Ok(Ok(parent));
            }
            ParentKey::Allocation(pns, pname) => {
                if !seen.insert((pns.clone(), pname.clone())) {
                    return Ok(Err(rejected(
                        BindReason::CycleDetected,
                        format!("parentRef leads back to {pns}/{pname}"),
                    )));
                }
                let Some(p) = ctx.allocations.get(&ObjectRef::new(&pname).within(&pns)) else {
                    return Ok(Err(rejected(
                        BindReason::ParentNotFound,
                        format!("QuotaAllocation {pns}/{pname} does not exist"),
                    )));
                };
                if direct.is_none() {
                    // Checked once the whole chain is known to be sound.
                    let bound = is_bound(ctx.status.latest(p.as_ref()).as_ref());
                    if !bound || (p.metadata.deletion_timestamp.is_some() && !was_bound(qa, ctx)) {
                        unbound = Some(format!("QuotaAllocation {pns}/{pname} is not bound"));
                    }
                    direct = Some(Parent {
                        node_id: p.node_id(),
                        key: ParentKey::Allocation(pns.clone(), pname.clone()),
                    });
                }
                key = parent_key(&p);
            }
        }
    }
    Ok(Err(rejected(
        BindReason::CycleDetected,
        "parentRef chain deeper than 64",
    )))
}

async fn namespace_allowed(tq: &TenantQuota, ns: &str, ctx: &Context) -> Result<bool> {
    let Some(sel) = &tq.spec.allocation_namespace_selector else {
        return Ok(false);
    };
    let labels = namespace_labels(ns, ctx).await?;
    selector::matches(sel, &labels).map_err(Error::Spec)
}

/// A namespace's labels from the namespace cache; read from the API server
/// when the cache is not ready or has not seen the namespace yet.
async fn namespace_labels(ns: &str, ctx: &Context) -> Result<BTreeMap<String, String>> {
    let ready = tokio::time::timeout(Duration::from_secs(5), ctx.namespaces.wait_until_ready())
        .await
        .is_ok_and(|r| r.is_ok());
    if ready && let Some(cached) = ctx.namespaces.get(&ObjectRef::new(ns)) {
        return Ok(cached.metadata.labels.clone().unwrap_or_default());
    }
    Ok(Api::<Namespace>::all(ctx.client.clone())
        .get(ns)
        .await?
        .metadata
        .labels
        .unwrap_or_default())
}

/// An older allocation of the same parent that this one waits for.
struct Older {
    name: String,
    /// It has not been reconciled yet (no Bound condition), as opposed to
    /// waiting for capacity.
    untried: bool,
}

/// Older allocations of the same parent (by creation time, then
/// namespace/name) that wait for capacity or have not tried yet.
fn older_waiting(qa: &QuotaAllocation, key: &ParentKey, ctx: &Context) -> Vec<Older> {
    let mine = (
        qa.metadata.creation_timestamp.clone(),
        qa.namespace(),
        qa.name_any(),
    );
    let mut older: Vec<_> = children_of(&ctx.children, &ctx.allocations, key)
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter(|o| {
            (
                o.metadata.creation_timestamp.clone(),
                o.namespace(),
                o.name_any(),
            ) < mine
        })
        .filter_map(|o| {
            let status = ctx.status.latest(o.as_ref());
            let untried = holds_back(bound_condition(status.as_ref()))?;
            let name = format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any());
            Some(Older { name, untried })
        })
        .collect();
    older.sort_by(|a, b| a.name.cmp(&b.name));
    older
}

/// Siblings whose status says bound but whose nodes the service does not
/// hold (it is being restored): their names. One read of the parent's
/// node, whose `children` are the nodes the service holds under it.
async fn bound_siblings_missing(
    qa: &QuotaAllocation,
    parent: &Parent,
    ctx: &Context,
) -> Result<Vec<String>> {
    let bound: Vec<Arc<QuotaAllocation>> =
        children_of(&ctx.children, &ctx.allocations, &parent.key)
            .into_iter()
            .filter(|o| {
                o.metadata.uid != qa.metadata.uid && o.metadata.deletion_timestamp.is_none()
            })
            .filter(|o| is_bound(ctx.status.latest(o.as_ref()).as_ref()))
            .collect();
    if bound.is_empty() {
        return Ok(Vec::new());
    }
    let held: std::collections::HashSet<String> =
        match ctx.service.get_node(&parent.node_id).await? {
            Some(node) => node.children.into_iter().collect(),
            None => std::collections::HashSet::new(),
        };
    Ok(missing_from(&bound, &held))
}

/// The names of `bound` whose nodes are not in `held` (pure: unit-tested).
fn missing_from(
    bound: &[Arc<QuotaAllocation>],
    held: &std::collections::HashSet<String>,
) -> Vec<String> {
    bound
        .iter()
        .filter(|o| !held.contains(&o.node_id()))
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect()
}

/// Whether an older sibling with this `Bound` condition holds a younger
/// one back, and if so whether it is still untried (`Some(true)`) or waits
/// for capacity (`Some(false)`). It gets the first try while it has not
/// been reconciled (no condition) or was refused because the parent they
/// share was missing (`ParentNotFound`: in a bulk apply the tenant's node
/// may be pushed a moment after its allocations are first seen; the
/// younger sibling must not take the capacity meanwhile). Bound, or
/// refused for reasons of its own (namespace, cycle): it does not.
fn holds_back(bound: Option<(&str, &str)>) -> Option<bool> {
    match bound {
        None | Some(("False", "ParentNotFound")) => Some(true),
        Some(("False", "ParentExhausted")) => Some(false),
        Some(_) => None,
    }
}

/// How long after its creation an allocation waits quietly (no status, no
/// Event) for older siblings that have not been reconciled yet: in a bulk
/// apply they bind within moments, and a `ParentExhausted` warning for
/// each younger sibling would be noise (and an extra status write and
/// Event each). After that it says what it waits for.
const QUIET_WAIT_SECS: i64 = 30;

/// Whether `qa` should wait quietly for `waiting` (see [`QUIET_WAIT_SECS`]).
fn wait_quietly(qa: &QuotaAllocation, ctx: &Context, waiting: &[Older]) -> bool {
    let young =
        qa.metadata.creation_timestamp.as_ref().is_some_and(|t| {
            crate::status::now().0.as_second() - t.0.as_second() < QUIET_WAIT_SECS
        });
    young
        && waiting.iter().all(|o| o.untried)
        && bound_condition(ctx.status.latest(qa).as_ref()).is_none()
}

/// Bound, as this operator last wrote it (the watched object may lag).
fn was_bound(qa: &QuotaAllocation, ctx: &Context) -> bool {
    is_bound(ctx.status.latest(qa).as_ref())
}

async fn apply(qa: &QuotaAllocation, ctx: &Context) -> Result<Action> {
    let id = qa.node_id();
    let parent = match resolve(qa, ctx).await? {
        Ok(p) => p,
        Err(binding) => {
            tracing::debug!(allocation = %qa.name_any(), ?binding, "not bindable");
            // Not bindable: make sure the service holds nothing for it.
            match ctx.service.delete_node(&id).await {
                Ok(_) => ctx.capacity_may_have_freed(parent_key(qa)),
                Err(ClientError::Api { .. }) => {}
                Err(e) => return unavailable(ctx, qa, e).await,
            }
            // A missing or unbound parent is often a moment away (a bulk
            // apply, a restarted service re-pushing parents first): retried
            // sooner than a refused namespace or a cycle, which wait for an
            // edit (and are woken by it).
            let retry = match &binding {
                Binding::Rejected {
                    reason: BindReason::ParentNotFound,
                    ..
                } => 10,
                _ => 30,
            };
            ctx.status
                .write(qa, Observation::NotPushed { binding })
                .await?;
            return Ok(Action::requeue(Duration::from_secs(retry)));
        }
    };
    let limits: BTreeMap<String, (String, Option<crate::crd::Window>)> = qa
        .spec
        .limits
        .iter()
        .map(|(n, l)| (n.clone(), (l.max.0.clone(), None)))
        .collect();
    let full = service_node::put_body(
        Some(parent.node_id.clone()),
        &limits,
        qa.spec.state,
        qa.spec.strict,
        false,
    )?;
    let zero = service_node::put_body(
        Some(parent.node_id.clone()),
        &limits,
        qa.spec.state,
        qa.spec.strict,
        true,
    )?;

    if !was_bound(qa, ctx) {
        // A service that lost its store gets every spec again, in no
        // order: the siblings whose status says bound take their capacity
        // back first, so one that was waiting cannot take it from them.
        let restoring = bound_siblings_missing(qa, &parent, ctx).await?;
        if !restoring.is_empty() {
            tracing::debug!(allocation = %qa.name_any(), ?restoring, "waits for bound siblings to be restored");
            return Ok(Action::requeue(Duration::from_secs(3)));
        }
    }
    let waiting = if was_bound(qa, ctx) {
        Vec::new()
    } else {
        older_waiting(qa, &parent.key, ctx)
    };
    if !waiting.is_empty() && wait_quietly(qa, ctx, &waiting) {
        // Their Bound condition wakes this one (triggers.rs); the requeue is
        // the fallback.
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let outcome = if waiting.is_empty() {
        ctx.service
            .put_node(&id, &full)
            .await
            .map(|(n, _)| (n, Binding::Bound))
    } else {
        Err(ClientError::Api {
            status: 409,
            code: "does_not_fit".into(),
            message: format!(
                "waiting for older allocations of the same parent: {}",
                waiting
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            details: None,
        })
    };
    let (node, binding) = match outcome {
        Ok(ok) => ok,
        Err(ClientError::Api { code, message, .. }) if code == "does_not_fit" => {
            let existing = ctx.service.get_node(&id).await?;
            let keep =
                was_bound(qa, ctx) && existing.as_ref().is_some_and(|n| n.state != "deleted");
            let pushed = match (keep, existing) {
                // Already bound: it keeps the limits it has (and stays
                // bound, so the next try keeps them too); it just cannot
                // grow yet.
                (true, Some(n)) => Ok((n, Binding::GrowthPending { message })),
                _ => ctx
                    .service
                    .put_node(&id, &zero)
                    .await
                    .map(|(n, _)| (n, rejected(BindReason::ParentExhausted, message))),
            };
            match pushed {
                Ok(ok) => ok,
                Err(ClientError::Api { message, .. }) => {
                    return not_pushed(ctx, qa, rejected(BindReason::ParentExhausted, message))
                        .await;
                }
                Err(e) => return unavailable(ctx, qa, e).await,
            }
        }
        Err(ClientError::Api { code, message, .. }) if code == "parent_not_found" => {
            if was_bound(qa, ctx) {
                // The parent object exists (resolve found it) but its node
                // does not: a service being restored, parents a moment
                // away. A bound allocation stays bound meanwhile, or a
                // waiting sibling would take its capacity.
                tracing::debug!(allocation = %qa.name_any(), %message, "parent node not restored yet");
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            return not_pushed(ctx, qa, rejected(BindReason::ParentNotFound, message)).await;
        }
        Err(e) => return unavailable(ctx, qa, e).await,
    };
    // Its limits may have shrunk: siblings waiting for the parent, and its
    // own children, may fit now.
    ctx.capacity_may_have_freed(parent.key.clone());
    ctx.capacity_may_have_freed(own_key(qa));
    service_node::sync_access(&ctx.service, &id, &effective_access(qa)).await?;
    let bound = binding == Binding::Bound;
    tracing::debug!(allocation = %qa.name_any(), ?binding, "pushed");
    ctx.status
        .write(
            qa,
            Observation::Synced {
                node: &node,
                binding: Some(binding),
            },
        )
        .await?;
    // A waiting allocation (or a growth) retries soon; capacity changes
    // also wake it.
    let every = if bound { 300 } else { 15 };
    Ok(Action::requeue(Duration::from_secs(every)))
}

/// Not bindable now: status says why; try again soon (parents, capacity and
/// a restarted service all change).
async fn not_pushed(ctx: &Context, qa: &QuotaAllocation, binding: Binding) -> Result<Action> {
    tracing::debug!(allocation = %qa.name_any(), ?binding, "not pushed");
    ctx.status
        .write(qa, Observation::NotPushed { binding })
        .await?;
    Ok(Action::requeue(Duration::from_secs(5)))
}

/// The service could not be reached or refused: status says so; retried.
async fn unavailable(ctx: &Context, qa: &QuotaAllocation, e: ClientError) -> Result<Action> {
    let message = e.to_string();
    ctx.status
        .write(qa, Observation::ServiceError { message })
        .await?;
    Err(e.into())
}

async fn cleanup(qa: &QuotaAllocation, ctx: &Context) -> Result<Action> {
    let children: Vec<String> = children_of(&ctx.children, &ctx.allocations, &own_key(qa))
        .iter()
        .map(|o| format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any()))
        .collect();
    if !children.is_empty() {
        let list = children.join(", ");
        ctx.status
            .write(qa, Observation::DeletionBlocked { children })
            .await?;
        return Err(Error::DeletionBlocked(list));
    }
    match ctx.service.delete_node(&qa.node_id()).await {
        Ok(_) => {
            ctx.status.forget(qa);
            // Its unused limits went back to the parent.
            ctx.capacity_may_have_freed(parent_key(qa));
            Ok(Action::await_change())
        }
        Err(ClientError::Api { code, message, .. }) if code == "has_children" => {
            ctx.status
                .write(
                    qa,
                    Observation::DeletionBlocked {
                        children: vec![message.clone()],
                    },
                )
                .await?;
            Err(Error::DeletionBlocked(message))
        }
        Err(e) => Err(e.into()),
    }
}

/// `spec.access` and the grant of the allocation's own namespace
/// (`spec.namespaceAccess`, reporter by default): its ServiceAccounts use
/// the allocation with their own tokens.
fn effective_access(qa: &QuotaAllocation) -> Vec<AccessGrant> {
    let mut access = qa.spec.access.clone();
    let role = match qa.spec.namespace_access {
        NamespaceAccess::Reporter => Some(Role::Reporter),
        NamespaceAccess::Reader => Some(Role::Reader),
        NamespaceAccess::None => None,
    };
    if let (Some(role), Some(ns)) = (role, qa.namespace()) {
        access.push(AccessGrant {
            subject: format!("group:system:serviceaccounts:{ns}"),
            role,
        });
    }
    access
}

#[cfg(test)]
mod tests {
    #[test]
    fn bound_siblings_the_service_does_not_hold_are_missing() {
        let qa = |ns: &str, name: &str| -> Arc<QuotaAllocation> {
            Arc::new(
                serde_json::from_value(serde_json::json!({
                    "apiVersion": "quota.edgepolicy.io/v1alpha1",
                    "kind": "QuotaAllocation",
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"parentRef": {"kind": "TenantQuota", "name": "t"}, "limits": {}},
                }))
                .unwrap_or_else(|e| panic!("{e}")),
            )
        };
        let bound = vec![qa("a", "x"), qa("b", "y")];
        let held: std::collections::HashSet<String> = ["qa:a:x".to_owned()].into();
        assert_eq!(missing_from(&bound, &held), vec!["b/y".to_owned()]);
        let all: std::collections::HashSet<String> =
            ["qa:a:x".to_owned(), "qa:b:y".to_owned()].into();
        assert!(missing_from(&bound, &all).is_empty());
    }

    use super::{Arc, QuotaAllocation, holds_back, missing_from};

    #[test]
    fn which_older_siblings_hold_a_younger_one_back() {
        assert_eq!(holds_back(None), Some(true), "not reconciled yet");
        assert_eq!(
            holds_back(Some(("False", "ParentNotFound"))),
            Some(true),
            "refused for the parent they share: still untried"
        );
        assert_eq!(
            holds_back(Some(("False", "ParentExhausted"))),
            Some(false),
            "waits for capacity"
        );
        for own in [
            ("True", "Allocated"),
            ("False", "NamespaceNotAllowed"),
            ("False", "CycleDetected"),
        ] {
            assert_eq!(holds_back(Some(own)), None, "{own:?}");
        }
    }

    use super::{AccessGrant, NamespaceAccess, Role, effective_access};

    #[test]
    fn an_allocation_s_namespace_reports_to_it_unless_told_otherwise() {
        let mut qa: QuotaAllocation = serde_json::from_value(serde_json::json!({
            "apiVersion": "quota.edgepolicy.io/v1alpha1",
            "kind": "QuotaAllocation",
            "metadata": {"name": "web", "namespace": "team-a"},
            "spec": {
                "parentRef": {"kind": "TenantQuota", "name": "t"},
                "limits": {},
                "access": [{"subject": "alice", "role": "admin"}],
            },
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let group = |role| AccessGrant {
            subject: "group:system:serviceaccounts:team-a".into(),
            role,
        };
        let alice = AccessGrant {
            subject: "alice".into(),
            role: Role::Admin,
        };
        assert_eq!(
            effective_access(&qa),
            [alice.clone(), group(Role::Reporter)]
        );
        qa.spec.namespace_access = NamespaceAccess::Reader;
        assert_eq!(effective_access(&qa), [alice.clone(), group(Role::Reader)]);
        qa.spec.namespace_access = NamespaceAccess::None;
        assert_eq!(effective_access(&qa), [alice]);
    }
}
