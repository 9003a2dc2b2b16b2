//! Wires the operator together: two controllers (TenantQuota,
//! QuotaAllocation) sharing one context, and the usage sync.
//!
//! ```text
//!  watch TenantQuota ──────────────▶ tenant::reconcile ─────┐
//!  watch QuotaAllocation ──────────▶ allocation::reconcile ─┼─▶ quota service
//!     (a tenant or allocation change also wakes the         │
//!      allocations below it and beside it)                  │
//!  every SYNC_INTERVAL_SECS ───────▶ sync::run ─────────────┘─▶ status
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use quota_service::client::Client as ServiceClient;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::allocation::{self, ParentKey, parent_key};
use crate::config::Config;
use crate::context::Context;
use crate::crd::{ParentKind, QuotaAllocation, TenantQuota};
use crate::error::Error;
use crate::{sync, tenant};

/// Runs the controllers and the usage sync until `stop` is cancelled.
pub async fn run(
    config: &Config,
    client: kube::Client,
    stop: CancellationToken,
) -> Result<(), Error> {
    let service = ServiceClient::new(&config.service_url)?;
    let tenants: Api<TenantQuota> = Api::all(client.clone());
    let allocations: Api<QuotaAllocation> = Api::all(client.clone());
    if let Err(e) = tenants.list(&ListParams::default().limit(1)).await {
        tracing::error!(
            "the CRDs are not installed or not readable ({e}); apply crds/ first: kubectl apply -f crds/"
        );
        return Err(e.into());
    }

    let tq_controller = Controller::new(tenants.clone(), watcher::Config::default());
    let qa_controller = Controller::new(allocations.clone(), watcher::Config::default());
    let ctx = Arc::new(Context::new(
        client,
        service,
        &config.identity,
        tq_controller.store(),
        qa_controller.store(),
    ));
    let (repush, _) = broadcast::channel::<()>(4);
    // Graceful shutdown must not start before a controller's first list is
    // in its store: kube-runtime holds the runner until the store is ready,
    // and a watcher stopped earlier would never make it so.
    let shutdown = |store: kube::runtime::reflector::Store<_>| {
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            let _ = tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready()).await;
        }
    };
    let trigger = |tx: &broadcast::Sender<()>| {
        BroadcastStream::new(tx.subscribe()).filter_map(|r| async move { r.ok() })
    };

    // A tenant wakes when one of its allocations changes (deletion may be waiting).
    let tq_controller = tq_controller
        .watches(allocations.clone(), watcher::Config::default(), |qa| {
            (qa.spec.parent_ref.kind == ParentKind::TenantQuota)
                .then(|| ObjectRef::new(&qa.spec.parent_ref.name))
        })
        .reconcile_all_on(trigger(&repush))
        .graceful_shutdown_on(shutdown(ctx.tenants.clone()));

    let shutdown_allocations = {
        let stop = stop.clone();
        let store = ctx.allocations.clone();
        async move {
            stop.cancelled().await;
            let _ = tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready()).await;
        }
    };
    // An allocation wakes when its tenant changes, or when an allocation
    // beside, above or below it changes (capacity moved, parent bound).
    let store = ctx.allocations.clone();
    let by_tenant = ctx.allocations.clone();
    let qa_controller = qa_controller
        .watches(tenants, watcher::Config::default(), move |tq| {
            let key = ParentKey::Tenant(tq.name_any());
            by_tenant
                .state()
                .iter()
                .filter(|qa| parent_key(qa) == key)
                .map(|qa| ObjectRef::from_obj(qa.as_ref()))
                .collect::<Vec<_>>()
        })
        .watches(allocations, watcher::Config::default(), move |changed| {
            let ns = changed.namespace().unwrap_or_default();
            let me = ParentKey::Allocation(ns, changed.name_any());
            let parent = parent_key(&changed);
            store
                .state()
                .iter()
                .filter(|qa| {
                    let k = parent_key(qa);
                    k == parent || k == me
                })
                .map(|qa| ObjectRef::from_obj(qa.as_ref()))
                .chain(match &parent {
                    ParentKey::Allocation(pns, pname) => Some(ObjectRef::new(pname).within(pns)),
                    ParentKey::Tenant(_) => None,
                })
                .collect::<Vec<_>>()
        })
        .reconcile_all_on(trigger(&repush))
        .graceful_shutdown_on(shutdown_allocations);

    let tq_run = tq_controller
        .run(tenant::reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "tenant reconcile");
            }
        });
    let qa_run = qa_controller
        .run(allocation::reconcile, error_policy, ctx.clone())
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "allocation reconcile");
            }
        });
    let sync_run = sync::run(
        ctx.clone(),
        config.sync_interval,
        repush.clone(),
        stop.clone(),
    );
    tracing::info!(service = %config.service_url, sync_secs = config.sync_interval.as_secs(), "operator running");
    tokio::join!(tq_run, qa_run, sync_run);
    tracing::info!("operator stopped");
    Ok(())
}

/// Retries: soon for a deletion that waits or a service that is down.
fn error_policy<K>(obj: Arc<K>, error: &Error, _ctx: Arc<Context>) -> Action
where
    K: kube::Resource + ResourceExt,
{
    let (level_warn, secs) = match error {
        Error::DeletionBlocked(_) => (false, 5),
        Error::Service(_) => (true, 5),
        Error::Finalizer(inner)
            if matches!(
                **inner,
                kube::runtime::finalizer::Error::CleanupFailed(Error::DeletionBlocked(_))
            ) =>
        {
            (false, 5)
        }
        _ => (true, 15),
    };
    if level_warn {
        tracing::warn!(object = %obj.name_any(), error = %error, "reconcile failed; retrying in {secs}s");
    } else {
        tracing::info!(object = %obj.name_any(), reason = %error, "waiting; retrying in {secs}s");
    }
    Action::requeue(Duration::from_secs(secs))
}
