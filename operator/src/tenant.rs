//! The TenantQuota reconciler: a tenant is a root node in the service.
//!
//! apply:   PUT the node (limits, state) ─▶ grants ─▶ status from the node
//! cleanup: wait while allocations still point here ─▶ DELETE the node

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use quota_service::client::ClientError;

use crate::context::{self, Context, FINALIZER, QuotaObject};
use crate::crd::TenantQuota;
use crate::error::{Error, Result};
use crate::index::{ParentKey, children_of};
use crate::status::Observation;

/// Routes to apply or cleanup through the finalizer.
pub async fn reconcile(tq: Arc<TenantQuota>, ctx: Arc<Context>) -> Result<Action> {
    let api: Api<TenantQuota> = Api::all(ctx.client.clone());
    finalizer(&api, FINALIZER, tq, |event| async {
        match event {
            Finalizer::Apply(tq) => apply(&tq, &ctx).await,
            Finalizer::Cleanup(tq) => cleanup(&tq, &ctx).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))
}

async fn apply(tq: &TenantQuota, ctx: &Context) -> Result<Action> {
    let id = tq.node_id();
    if let Some(owner) = other_owner(tq, &ctx.tenants.state()) {
        let message = format!(
            "tenantId {id:?} belongs to TenantQuota {owner} (created first); this one is not pushed: give it another tenantId, or delete one of them"
        );
        tracing::warn!(tenant = %tq.name_any(), node = %id, %owner, "tenantId claimed by another TenantQuota");
        context::write_status(ctx, tq, Observation::TenantIdConflict { message }).await?;
        // The owner may go; this one then takes the id.
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let limits = tq
        .spec
        .limits
        .iter()
        .map(|(n, l)| (n.clone(), (l.max.0.clone(), l.window)))
        .collect();
    let body = context::put_body(None, &limits, tq.spec.state, tq.spec.strict, false)?;
    match ctx.service.put_node(&id, &body).await {
        Ok((node, created)) => {
            if created {
                tracing::info!(tenant = %tq.name_any(), node = %id, "created node");
            }
            ctx.capacity_may_have_freed(ParentKey::Tenant(tq.name_any()));
            context::sync_access(ctx, &id, &tq.spec.access).await?;
            context::write_status(
                ctx,
                tq,
                Observation::Synced {
                    node: &node,
                    binding: None,
                },
            )
            .await?;
            Ok(Action::requeue(Duration::from_secs(300)))
        }
        Err(e) => {
            let message = e.to_string();
            context::write_status(ctx, tq, Observation::ServiceError { message }).await?;
            Err(e.into())
        }
    }
}

async fn cleanup(tq: &TenantQuota, ctx: &Context) -> Result<Action> {
    let name = tq.name_any();
    if other_owner(tq, &ctx.tenants.state()).is_some() {
        // The node is another TenantQuota's: nothing of this one to remove.
        context::forget(ctx, tq);
        return Ok(Action::await_change());
    }
    let children: Vec<String> =
        children_of(&ctx.children, &ctx.allocations, &ParentKey::Tenant(name))
            .iter()
            .map(|qa| format!("{}/{}", qa.namespace().unwrap_or_default(), qa.name_any()))
            .collect();
    if !children.is_empty() {
        return blocked(tq, ctx, children).await;
    }
    match ctx.service.delete_node(&tq.node_id()).await {
        Ok(_) => {
            context::forget(ctx, tq);
            Ok(Action::await_change())
        }
        Err(ClientError::Api { code, message, .. }) if code == "has_children" => {
            blocked(tq, ctx, vec![message]).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The name of the TenantQuota that owns `tq`'s node when it is not `tq`:
/// of those naming the same node, the oldest (creation time, then name).
/// Ids never collide with allocations' (`qa:` is refused for `tenantId`).
pub fn other_owner(tq: &TenantQuota, all: &[Arc<TenantQuota>]) -> Option<String> {
    let id = tq.node_id();
    let key = |t: &TenantQuota| (t.metadata.creation_timestamp.clone(), t.name_any());
    all.iter()
        .filter(|t| t.node_id() == id && t.metadata.uid != tq.metadata.uid)
        .filter(|t| key(t) < key(tq))
        .min_by_key(|t| key(t))
        .map(|t| t.name_any())
}

async fn blocked(tq: &TenantQuota, ctx: &Context, children: Vec<String>) -> Result<Action> {
    let list = children.join(", ");
    context::write_status(ctx, tq, Observation::DeletionBlocked { children }).await?;
    Err(Error::DeletionBlocked(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tq(name: &str, tenant_id: Option<&str>, created: &str) -> Arc<TenantQuota> {
        let mut t: TenantQuota = serde_json::from_value(serde_json::json!({
            "apiVersion": "quota.edgepolicy.io/v1alpha1",
            "kind": "TenantQuota",
            "metadata": {"name": name, "uid": format!("uid-{name}"), "creationTimestamp": created},
            "spec": {"limits": {}},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        t.spec.tenant_id = tenant_id.map(str::to_owned);
        Arc::new(t)
    }

    #[test]
    fn the_oldest_claimant_of_a_tenant_id_owns_it() {
        let first = tq("acme", None, "2026-12-01T00:00:00Z");
        let second = tq("acme-copy", Some("acme"), "2026-12-02T00:00:00Z");
        let same_time = tq("aaa", Some("acme"), "2026-12-02T00:00:00Z");
        let other = tq("globex", None, "2026-11-01T00:00:00Z");
        let all = vec![first.clone(), second.clone(), other.clone()];
        assert_eq!(other_owner(&first, &all), None, "the first keeps it");
        assert_eq!(other_owner(&second, &all).as_deref(), Some("acme"));
        assert_eq!(other_owner(&other, &all), None, "another id");
        // Created in the same second: the name decides, the same way for all.
        let all = vec![second.clone(), same_time.clone()];
        assert_eq!(other_owner(&same_time, &all), None);
        assert_eq!(other_owner(&second, &all).as_deref(), Some("aaa"));
        // The owner gone, the next one takes it.
        assert_eq!(other_owner(&second, std::slice::from_ref(&second)), None);
    }
}
