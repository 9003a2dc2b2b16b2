//! What the reconcilers and the usage sync share: clients, caches, and the
//! one place that writes status (server-side apply) and Events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PartialObjectMeta, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use quota_service::client::Client as ServiceClient;
use quota_service::http::v1::{LimitBody, PutBody};

use crate::crd::{QuotaAllocation, QuotaState, QuotaStatus, TenantQuota};
use crate::error::{Error, Result};
use crate::index::{ParentKey, SharedChildren};
use crate::status::{self, Kind, Observation};
use crate::{ids, quantity};

/// The field manager of every status patch.
pub const MANAGER: &str = "edge-quota-operator";
/// The finalizer on both kinds: the service node is deleted first.
pub const FINALIZER: &str = "quota.edgepolicy.io/node";

/// Shared by the controllers and the usage sync.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub service: ServiceClient,
    pub recorder: Arc<Recorder>,
    pub tenants: Store<TenantQuota>,
    pub allocations: Store<QuotaAllocation>,
    /// Namespace labels, for allocationNamespaceSelector.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Allocations by parent (kept from the allocation watch).
    pub children: SharedChildren,
    /// The last status written per object (by uid): newer than the watched
    /// object, which lags the write.
    written: Arc<dashmap::DashMap<String, Written>>,
    /// One status writer per object (by uid) at a time: the reconcilers and
    /// the sync never compute from the same old status (which would record
    /// an Event twice). Readers of `written` never wait for it.
    writers: Arc<dashmap::DashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Parents under which capacity may have freed, sent once the service
    /// holds the change (see [`Context::capacity_may_have_freed`]).
    freed: tokio::sync::broadcast::Sender<ParentKey>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("service", &self.service.base_url())
            .finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(
        client: kube::Client,
        service: ServiceClient,
        identity: &str,
        tenants: Store<TenantQuota>,
        allocations: Store<QuotaAllocation>,
        namespaces: Store<PartialObjectMeta<Namespace>>,
        children: SharedChildren,
    ) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(identity.to_owned()),
        };
        Context {
            recorder: Arc::new(Recorder::new(client.clone(), reporter)),
            client,
            service,
            tenants,
            allocations,
            namespaces,
            children,
            written: Arc::default(),
            writers: Arc::default(),
            freed: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Says that the service now holds a change that may have freed
    /// capacity under `parent` (its limits grew, a child shrank or went):
    /// the allocations waiting under it wake (controller.rs). Sent after
    /// the service answered, never before: an allocation woken by the
    /// watch event of the edit itself could try before the service had
    /// the new state, be refused, and wait for its retry.
    pub fn capacity_may_have_freed(&self, parent: ParentKey) {
        let _ = self.freed.send(parent);
    }

    /// The parents [`Context::capacity_may_have_freed`] names, as they come.
    pub fn freed(&self) -> tokio::sync::broadcast::Receiver<ParentKey> {
        self.freed.subscribe()
    }
}

/// The last status written for an object, and the version of the service
/// node it was computed from.
#[derive(Debug, Clone)]
struct Written {
    status: QuotaStatus,
    node_version: u64,
}

/// What both kinds have in common for status writing.
pub trait QuotaObject:
    Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const KIND: Kind;
    fn quota_status(&self) -> Option<&QuotaStatus>;
    fn api(&self, client: kube::Client) -> Api<Self>;
    fn node_id(&self) -> String;
    fn near_limit_percent(&self) -> u32;
    /// Resources whose limit was written with a binary suffix (`10Gi`).
    fn binary_resources(&self) -> BTreeSet<String>;
}

impl QuotaObject for TenantQuota {
    const KIND: Kind = Kind::TenantQuota;
    fn quota_status(&self) -> Option<&QuotaStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::all(client)
    }
    fn node_id(&self) -> String {
        ids::tenant_node_id(self)
    }
    fn near_limit_percent(&self) -> u32 {
        self.spec
            .near_limit_percent
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or(80)
    }
    fn binary_resources(&self) -> BTreeSet<String> {
        binary_names(self.spec.limits.iter().map(|(n, l)| (n, &l.max.0)))
    }
}

impl QuotaObject for QuotaAllocation {
    const KIND: Kind = Kind::QuotaAllocation;
    fn quota_status(&self) -> Option<&QuotaStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
    fn node_id(&self) -> String {
        ids::allocation_node_id(&self.namespace().unwrap_or_default(), &self.name_any())
    }
    fn near_limit_percent(&self) -> u32 {
        80
    }
    fn binary_resources(&self) -> BTreeSet<String> {
        binary_names(self.spec.limits.iter().map(|(n, l)| (n, &l.max.0)))
    }
}

/// Names of the limits written with a binary suffix (`10Gi`).
fn binary_names<'a>(limits: impl Iterator<Item = (&'a String, &'a String)>) -> BTreeSet<String> {
    limits
        .filter(|(_, max)| quantity::is_binary(max))
        .map(|(n, _)| n.clone())
        .collect()
}

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Computes the new status from an observation and writes it (server-side
/// apply) only if it changed; records the Events its transitions call for.
/// Returns the status written (or kept).
pub async fn write_status<K: QuotaObject>(
    ctx: &Context,
    obj: &K,
    observation: Observation<'_>,
) -> Result<QuotaStatus> {
    // One writer per object at a time, computing from what was written last
    // (only this operator writes status; the watched object may lag).
    let key = obj.meta().uid.clone().unwrap_or_else(|| obj.name_any());
    let writer = ctx.writers.entry(key.clone()).or_default().clone();
    let _one_writer = writer.lock().await;
    let last = ctx.written.get(&key).map(|w| w.clone());
    let previous = last
        .as_ref()
        .map(|w| w.status.clone())
        .or_else(|| obj.quota_status().cloned());
    let last_version = last.as_ref().map_or(0, |w| w.node_version);
    // A node view older than the one already written (a reconcile that read
    // the node before a sync wrote a newer view) would flap the conditions.
    let node_version = match &observation {
        Observation::Synced { node, .. } if node.version < last_version => {
            return Ok(previous.unwrap_or_default());
        }
        Observation::Synced { node, .. } => node.version,
        _ => last_version,
    };
    let binary = obj.binary_resources();
    let (new, events) = status::compute(status::Input {
        kind: K::KIND,
        generation: obj.meta().generation,
        previous: previous.as_ref(),
        observation,
        near_limit_percent: obj.near_limit_percent(),
        binary: &binary,
        deleting: obj.meta().deletion_timestamp.is_some(),
        now: now(),
    });
    let unchanged = previous
        .as_ref()
        .is_some_and(|old| same_but_sync_time(old, &new));
    // Recorded before the patch: whoever the patch's watch event wakes
    // (children reading this binding) already reads the new status.
    ctx.written.insert(
        key.clone(),
        Written {
            status: if unchanged {
                previous.clone().unwrap_or_default()
            } else {
                new.clone()
            },
            node_version,
        },
    );
    if !unchanged {
        let patch = serde_json::json!({
            "apiVersion": K::api_version(&()),
            "kind": K::kind(&()),
            "status": new,
        });
        let patched = obj
            .api(ctx.client.clone())
            .patch_status(
                &obj.name_any(),
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await;
        if let Err(e) = patched {
            match last {
                Some(w) => ctx.written.insert(key, w),
                None => ctx.written.remove(&key).map(|(_, w)| w),
            };
            return Err(e.into());
        }
    }
    let reference = obj.object_ref(&());
    for e in events {
        let event = Event {
            type_: if e.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: e.reason.into(),
            note: Some(e.note.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %err, reason = e.reason, "cannot record event");
        }
    }
    Ok(new)
}

/// The newest status of an object: what this operator wrote last, or what
/// the (possibly older) cached object says.
pub fn latest_status<K: QuotaObject>(ctx: &Context, obj: &K) -> Option<QuotaStatus> {
    let written = obj
        .meta()
        .uid
        .as_ref()
        .and_then(|uid| ctx.written.get(uid).map(|w| w.status.clone()));
    written.or_else(|| obj.quota_status().cloned())
}

/// Forgets what was written for a deleted object.
pub fn forget<K: QuotaObject>(ctx: &Context, obj: &K) {
    if let Some(uid) = &obj.meta().uid {
        ctx.written.remove(uid);
        ctx.writers.remove(uid);
    }
}

/// Whether two statuses differ only in `lastSyncTime`.
fn same_but_sync_time(a: &QuotaStatus, b: &QuotaStatus) -> bool {
    let strip = |s: &QuotaStatus| QuotaStatus {
        last_sync_time: None,
        ..s.clone()
    };
    strip(a) == strip(b)
}

/// The service body for a spec: limits as whole numbers (zero for every
/// resource when `zero`), state, strictness, parent.
pub fn put_body(
    parent: Option<String>,
    limits: &BTreeMap<String, (String, Option<crate::crd::Window>)>,
    state: QuotaState,
    strict: bool,
    zero: bool,
) -> Result<PutBody> {
    let mut out = BTreeMap::new();
    for (name, (max, window)) in limits {
        let max = if zero {
            0
        } else {
            quantity::parse(max).map_err(|e| Error::Spec(format!("limits.{name}.max: {e}")))?
        };
        out.insert(
            name.clone(),
            LimitBody {
                max,
                window: window.map(|w| w.as_str().to_owned()),
            },
        );
    }
    Ok(PutBody {
        parent,
        limits: out.into(),
        state: Some(
            match state {
                QuotaState::Active => "active",
                QuotaState::Suspended => "suspended",
            }
            .to_owned(),
        ),
        strict: Some(strict),
        name: None,
        description: None,
    })
}

/// Makes the service's grants on `node_id` equal `spec.access`.
pub async fn sync_access(
    ctx: &Context,
    node_id: &str,
    access: &[crate::crd::AccessGrant],
) -> Result<()> {
    use quota_service::http::v1::GrantBody;
    let role = |r: crate::crd::Role| match r {
        crate::crd::Role::Reader => "reader",
        crate::crd::Role::Reporter => "reporter",
        crate::crd::Role::Admin => "admin",
    };
    let want: BTreeSet<(String, String)> = access
        .iter()
        .map(|g| (g.subject.clone(), role(g.role).to_owned()))
        .collect();
    let have: BTreeSet<(String, String)> = ctx.service.grants(node_id).await?.into_iter().collect();
    for (subject, role) in want.difference(&have) {
        ctx.service
            .grant(
                node_id,
                &GrantBody {
                    subject: subject.clone(),
                    role: role.clone(),
                },
            )
            .await?;
    }
    for (subject, role) in have.difference(&want) {
        ctx.service
            .revoke(
                node_id,
                &GrantBody {
                    subject: subject.clone(),
                    role: role.clone(),
                },
            )
            .await?;
    }
    Ok(())
}
