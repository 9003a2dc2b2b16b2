//! The usage sync: pulls what changed from the quota service every
//! `SYNC_INTERVAL_SECS` and writes it to the objects' status.
//!
//! ```text
//!  every interval: GET /api/v1/snapshot?since=V ──▶ node id → object ──▶ write_status (only if changed, 16 at once)
//!                  new instance_id?  ──▶ re-push every spec (the service restarted, maybe empty)
//!                  unreachable?      ──▶ Synced=False ServiceUnavailable on every object, once
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::ResourceExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::crd::{QuotaAllocation, QuotaStatus, TenantQuota};
use crate::index::ParentKey;
use crate::quota_object::QuotaObject;
use crate::status::{BindReason, Binding, Observation};

/// Runs until `stop` is cancelled.
pub async fn run(
    ctx: Arc<Context>,
    interval: Duration,
    repush: broadcast::Sender<()>,
    stop: CancellationToken,
) {
    let mut since = 0u64;
    let mut instance: Option<String> = None;
    let mut down = false;
    loop {
        // An interval after the last round ended: rounds on the clock wrote
        // more intermediate statuses while objects were being created, for
        // no shorter exceedance lag (docs/perf-history/05-fifth-pass-
        // startup-load.md, "Operator: status writes in parallel").
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let snap = match ctx.service.snapshot(since).await {
            Ok(s) => s,
            Err(e) => {
                if !down {
                    tracing::warn!(error = %e, "quota service unreachable");
                    mark_unavailable(&ctx, &e.to_string()).await;
                }
                down = true;
                continue;
            }
        };
        let was_down = std::mem::replace(&mut down, false);
        let snap = if instance.as_deref() != Some(snap.instance_id.as_str()) {
            if must_repush(instance.as_deref(), was_down, &snap.instance_id) {
                tracing::info!(instance = %snap.instance_id, "quota service restarted; pushing every spec again");
                let _ = repush.send(());
            }
            instance = Some(snap.instance_id.clone());
            if since == 0 {
                snap
            } else {
                // Versions restart with the service: read everything.
                match ctx.service.snapshot(0).await {
                    Ok(s) => s,
                    Err(_) => continue,
                }
            }
        } else {
            snap
        };
        since = snap.version;
        apply(&ctx, &snap.nodes).await;
    }
}

/// Whether the service answering as `current` may have lost what was pushed
/// to it: it is another instance than the one known, or the first one
/// reached after the service was unreachable (specs pushed before it went
/// down reached an instance that is gone, maybe with its data). Until the
/// first answer every attempt failed, so `was_down` (the last attempt
/// failed) says whether there were any.
fn must_repush(known: Option<&str>, was_down: bool, current: &str) -> bool {
    match known {
        Some(known) => known != current,
        None => was_down,
    }
}

/// Status writes of one sync in flight at once. Written one after another,
/// a sync that followed thousands of changed nodes (right after 6,000
/// objects were created) took many seconds, and an exceedance seen by the
/// next one waited for it.
const WRITES_IN_FLIGHT: usize = 16;

/// Writes the status of every object whose node is in `nodes`, several at
/// once (`write_status` keeps one writer per object).
async fn apply(ctx: &Context, nodes: &[quota_api::v1::NodeBody]) {
    if nodes.is_empty() {
        return;
    }
    let tenants: HashMap<String, Arc<TenantQuota>> = ctx
        .tenants
        .state()
        .into_iter()
        .map(|t| (t.node_id(), t))
        .collect();
    let allocations: HashMap<String, Arc<QuotaAllocation>> = ctx
        .allocations
        .state()
        .into_iter()
        .map(|a| (a.node_id(), a))
        .collect();
    let live = nodes.iter().filter(|n| n.state != "deleted");
    futures::stream::iter(live)
        .for_each_concurrent(WRITES_IN_FLIGHT, |node| {
            let (tenants, allocations) = (&tenants, &allocations);
            async move {
                let result = if let Some(tq) = tenants.get(&node.id) {
                    if more_available(ctx.status.latest(tq.as_ref()).as_ref(), node) {
                        ctx.capacity_may_have_freed(ParentKey::Tenant(tq.name_any()));
                    }
                    ctx.status
                        .write(
                            tq.as_ref(),
                            Observation::Synced {
                                node,
                                binding: None,
                            },
                        )
                        .await
                } else if let Some(qa) = allocations.get(&node.id) {
                    let latest = ctx.status.latest(qa.as_ref());
                    if more_available(latest.as_ref(), node) {
                        ctx.capacity_may_have_freed(crate::index::own_key(qa));
                    }
                    let binding = current_binding(latest.as_ref());
                    ctx.status
                        .write(
                            qa.as_ref(),
                            Observation::Synced {
                                node,
                                binding: Some(binding),
                            },
                        )
                        .await
                } else {
                    return;
                };
                if let Err(e) = result {
                    tracing::warn!(node = %node.id, error = %e, "cannot write status");
                }
            }
        })
        .await;
}

/// Whether a node has more available of some resource than its object's
/// status last said: a period reset (or usage released) freed capacity,
/// and allocations waiting under it may fit now.
fn more_available(status: Option<&QuotaStatus>, node: &quota_api::v1::NodeBody) -> bool {
    let Some(status) = status else {
        return false;
    };
    node.resources.iter().any(|(name, r)| {
        status
            .resources
            .get(name)
            .is_some_and(|s| i64::try_from(r.available).is_ok_and(|a| a > s.available))
    })
}

/// The binding an allocation's latest status shows (the sync does not
/// change it; the watched object may lag what the reconciler wrote).
fn current_binding(status: Option<&QuotaStatus>) -> Binding {
    let bound = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Bound"));
    match bound {
        Some(c) if c.status == "False" && c.reason == "ParentExhausted" => Binding::Rejected {
            reason: BindReason::ParentExhausted,
            message: c.message.clone(),
        },
        Some(c) if c.status == "True" && c.reason == crate::status::GROWTH_PENDING => {
            Binding::GrowthPending {
                message: c
                    .message
                    .strip_prefix(crate::status::GROWTH_PENDING_PREFIX)
                    .unwrap_or(&c.message)
                    .to_owned(),
            }
        }
        _ => Binding::Bound,
    }
}

async fn mark_unavailable(ctx: &Context, message: &str) {
    for tq in ctx.tenants.state() {
        let obs = Observation::ServiceError {
            message: message.to_owned(),
        };
        if let Err(e) = ctx.status.write(tq.as_ref(), obs).await {
            tracing::warn!(tenant = %tq.name_any(), error = %e, "cannot write status");
        }
    }
    for qa in ctx.allocations.state() {
        let obs = Observation::ServiceError {
            message: message.to_owned(),
        };
        if let Err(e) = ctx.status.write(qa.as_ref(), obs).await {
            tracing::warn!(allocation = %qa.name_any(), error = %e, "cannot write status");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{more_available, must_repush};
    use crate::crd::{QuotaStatus, ResourceStatus};
    use quota_api::v1::{NodeBody, ResourceBody};

    #[test]
    fn capacity_freed_when_a_resource_has_more_available_than_status_said() {
        let node = |available: u64| NodeBody {
            id: "t".into(),
            parent: None,
            state: "active".into(),
            strict: false,
            name: None,
            description: None,
            resources: [(
                "messages".to_owned(),
                ResourceBody {
                    max: 100,
                    window: "day".into(),
                    used: 0,
                    subtree_used: 0,
                    allocated: 0,
                    available,
                    period: "2026-12-04".into(),
                    reset_at: None,
                    exceeded: false,
                    overcommitted: false,
                },
            )]
            .into(),
            children: vec![],
            claims: 0,
            exceeded: false,
            overcommitted: false,
            version: 1,
            created_at: String::new(),
            last_updated: None,
        };
        let status = |available: i64| QuotaStatus {
            resources: [(
                "messages".to_owned(),
                ResourceStatus {
                    available,
                    ..Default::default()
                },
            )]
            .into(),
            ..Default::default()
        };
        assert!(
            more_available(Some(&status(10)), &node(100)),
            "a new period"
        );
        assert!(!more_available(Some(&status(10)), &node(10)));
        assert!(!more_available(Some(&status(10)), &node(5)), "used more");
        assert!(
            !more_available(None, &node(100)),
            "never seen: no one waits on it yet"
        );
    }

    #[test]
    fn specs_are_pushed_again_to_an_instance_that_may_have_lost_them() {
        // Another instance than the one known: it restarted.
        assert!(must_repush(Some("a"), false, "b"));
        assert!(!must_repush(Some("a"), false, "a"));
        // The first instance reached: the reconcilers' pushes went to it,
        // unless the service was down (and so restarted) before the sync
        // ever reached it.
        assert!(!must_repush(None, false, "a"));
        assert!(must_repush(None, true, "b"));
    }
}
