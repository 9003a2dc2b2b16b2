//! Wires the operator together: two controllers (TenantQuota,
//! QuotaAllocation) sharing one context, and the usage sync.
//!
//! ```text
//!  watch TenantQuota ──────────────▶ tenant::reconcile ─────┐
//!  watch QuotaAllocation ──────────▶ allocation::reconcile ─┼─▶ quota service
//!  watch Namespace (metadata)         (triggers.rs: which   │
//!     changes wake which objects; status-only changes none) │
//!  every SYNC_INTERVAL_SECS ───────▶ sync::run ─────────────┘─▶ status
//! ```

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates, watcher};
use quota_api::Client as ServiceClient;
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::allocation;
use crate::config::Config;
use crate::context::Context;
use crate::crd::{QuotaAllocation, TenantQuota};
use crate::error::Error;
use crate::index::{ParentKey, SharedChildren, children_of, own_key, parent_key};
use crate::{sync, tenant, triggers};

/// Runs the controllers and the usage sync until `stop` is cancelled.
pub async fn run(
    config: &Config,
    client: kube::Client,
    stop: CancellationToken,
) -> Result<(), Error> {
    let mut service = ServiceClient::new(&config.service_url)?;
    if let Some(path) = &config.service_token_file {
        service = service.with_token_file(path.clone());
    }
    let tenants: Api<TenantQuota> = Api::all(client.clone());
    let allocations: Api<QuotaAllocation> = Api::all(client.clone());
    if let Err(e) = tenants.list(&ListParams::default().limit(1)).await {
        tracing::error!(
            "the CRDs are not installed or not readable ({e}); apply crds/ first: kubectl apply -f crds/"
        );
        return Err(e.into());
    }

    // Each controller's own trigger passes spec, finalizer and deletion
    // changes only (triggers::lifecycle): status writes are not echoed back.
    let (tq_store, tq_writer) = reflector::store();
    let tq_own = watcher(tenants.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(tq_writer)
        .applied_objects()
        .predicate_filter(triggers::lifecycle, PredicateConfig::default());
    let (qa_store, qa_writer) = reflector::store();
    let children = SharedChildren::default();
    let indexed = children.clone();
    let qa_own = watcher(allocations.clone(), watcher::Config::default())
        .default_backoff()
        .reflect(qa_writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                match indexed.write() {
                    Ok(mut index) => index.observe(event),
                    Err(poisoned) => poisoned.into_inner().observe(event),
                }
            }
        })
        .applied_objects()
        .predicate_filter(triggers::lifecycle, PredicateConfig::default());
    // Namespace labels decide allocationNamespaceSelector: cached, and a
    // relabel wakes the allocations in that namespace.
    let (ns_store, ns_writer) = reflector::store();
    let namespace_labels = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .reflect(ns_writer);
    let namespace_labels = triggers::changed_or_deleted(namespace_labels, predicates::labels);
    let ctx = Arc::new(Context::new(
        client,
        service,
        &config.identity,
        tq_store.clone(),
        qa_store.clone(),
        ns_store,
        children,
    ));
    let (repush, _) = broadcast::channel::<()>(4);
    let trigger = |tx: &broadcast::Sender<()>| {
        BroadcastStream::new(tx.subscribe()).filter_map(|r| async move { r.ok() })
    };
    let allocation_events =
        || watcher(allocations.clone(), watcher::Config::default()).default_backoff();

    // A tenant being deleted waits for its allocations: their changes wake it.
    let deleting = ctx.tenants.clone();
    let tq_controller = Controller::for_stream(tq_own, tq_store)
        .watches_stream(
            triggers::changed_or_deleted(allocation_events(), triggers::lifecycle),
            move |qa| {
                triggers::tenant_of(&qa)
                    .map(ObjectRef::<TenantQuota>::new)
                    .filter(|r| {
                        deleting
                            .get(r)
                            .is_some_and(|t| t.metadata.deletion_timestamp.is_some())
                    })
            },
        )
        .reconcile_all_on(trigger(&repush))
        .graceful_shutdown_on(shutdown(&stop, ctx.tenants.clone()));

    // An allocation wakes when its tenant's spec changes, when its namespace
    // is relabelled, and when an allocation beside, above or below it
    // changes its spec or binding (triggers.rs).
    let by_tenant = ctx.clone();
    let by_namespace = ctx.allocations.clone();
    let by_allocation = ctx.clone();
    // Allocations waiting for capacity wake once the service holds a change
    // that may have freed some under their parent (context.rs).
    let by_capacity = ctx.clone();
    let freed = BroadcastStream::new(ctx.freed())
        .filter_map(|r| async move { r.ok() })
        .flat_map(move |parent| {
            let ctx = &by_capacity;
            let waiting: Vec<ObjectRef<QuotaAllocation>> =
                children_of(&ctx.children, &ctx.allocations, &parent)
                    .iter()
                    .filter(|qa| {
                        crate::status::waits_for_capacity(ctx.status.latest(qa.as_ref()).as_ref())
                    })
                    .map(|qa| ObjectRef::from_obj(qa.as_ref()))
                    .collect();
            futures::stream::iter(waiting)
        });
    let qa_controller = Controller::for_stream(qa_own, qa_store)
        .watches_stream(
            triggers::changed_or_deleted(
                watcher(tenants, watcher::Config::default()).default_backoff(),
                triggers::lifecycle,
            ),
            move |tq: TenantQuota| {
                let key = ParentKey::Tenant(tq.name_any());
                let under = children_of(&by_tenant.children, &by_tenant.allocations, &key);
                triggers::allocations_of_tenant(&tq.name_any(), &under)
            },
        )
        .watches_stream(namespace_labels, move |ns| {
            triggers::allocations_in_namespace(&ns.name_any(), &by_namespace.state())
        })
        .watches_stream(
            triggers::changed_or_deleted(allocation_events(), triggers::allocation_change),
            move |changed| {
                // Siblings and children: the only candidates.
                let ctx = &by_allocation;
                let mut near = children_of(&ctx.children, &ctx.allocations, &parent_key(&changed));
                near.extend(children_of(
                    &ctx.children,
                    &ctx.allocations,
                    &own_key(&changed),
                ));
                triggers::woken_by_allocation(&changed, &near)
            },
        )
        .reconcile_on(freed)
        .reconcile_all_on(trigger(&repush))
        .graceful_shutdown_on(shutdown(&stop, ctx.allocations.clone()));

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

// Graceful shutdown must not start before a controller's first list is
// in its store: kube-runtime holds the runner until the store is ready,
// and a watcher stopped earlier would never make it so.
fn shutdown<K>(
    stop: &CancellationToken,
    store: reflector::Store<K>,
) -> impl Future<Output = ()> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let stop = stop.clone();
    async move {
        stop.cancelled().await;
        let _ = tokio::time::timeout(Duration::from_secs(10), store.wait_until_ready()).await;
    }
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
