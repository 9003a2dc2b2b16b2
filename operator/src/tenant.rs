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

use crate::allocation::ParentKey;
use crate::context::{self, Context, FINALIZER, QuotaObject};
use crate::crd::TenantQuota;
use crate::error::{Error, Result};
use crate::index::children_of;
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

async fn blocked(tq: &TenantQuota, ctx: &Context, children: Vec<String>) -> Result<Action> {
    let list = children.join(", ");
    context::write_status(ctx, tq, Observation::DeletionBlocked { children }).await?;
    Err(Error::DeletionBlocked(list))
}
