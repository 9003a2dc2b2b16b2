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
use quota_api::ClientError;

use crate::context::Context;
use crate::crd::FINALIZER;
use crate::crd::TenantQuota;
use crate::error::{Error, Result};
use crate::index::{ParentKey, children_of};
use crate::quota_object::QuotaObject;
use crate::service_node;
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
    if let Some(owner) = crate::ids::other_owner(tq, &ctx.tenants.state()) {
        let message = format!(
            "tenantId {id:?} belongs to TenantQuota {owner} (created first); this one is not pushed: give it another tenantId, or delete one of them"
        );
        tracing::warn!(tenant = %tq.name_any(), node = %id, %owner, "tenantId claimed by another TenantQuota");
        ctx.status
            .write(tq, Observation::TenantIdConflict { message })
            .await?;
        // The owner may go; this one then takes the id.
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let limits = tq
        .spec
        .limits
        .iter()
        .map(|(n, l)| (n.clone(), (l.max.0.clone(), l.window)))
        .collect();
    let body = service_node::put_body(None, &limits, tq.spec.state, tq.spec.strict, false)?;
    match ctx.service.put_node(&id, &body).await {
        Ok((node, created)) => {
            if created {
                tracing::info!(tenant = %tq.name_any(), node = %id, "created node");
            }
            ctx.capacity_may_have_freed(ParentKey::Tenant(tq.name_any()));
            service_node::sync_access(&ctx.service, &id, &tq.spec.access).await?;
            ctx.status
                .write(
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
            ctx.status
                .write(tq, Observation::ServiceError { message })
                .await?;
            Err(e.into())
        }
    }
}

async fn cleanup(tq: &TenantQuota, ctx: &Context) -> Result<Action> {
    let name = tq.name_any();
    if crate::ids::other_owner(tq, &ctx.tenants.state()).is_some() {
        // The node is another TenantQuota's: nothing of this one to remove.
        ctx.status.forget(tq);
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
            ctx.status.forget(tq);
            Ok(Action::await_change())
        }
        Err(ClientError::Api { code, message, .. }) if code == "has_children" => {
            blocked(tq, ctx, vec![message]).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn blocked(tq: &TenantQuota, ctx: &Context, children: Vec<String>) -> Result<Action> {
    let list = children.join(", ");
    ctx.status
        .write(tq, Observation::DeletionBlocked { children })
        .await?;
    Err(Error::DeletionBlocked(list))
}
