//! What the reconcilers and the usage sync share: the Kubernetes and
//! quota-service clients, the watched stores, the allocations by parent,
//! the status writer, and the wake-up of allocations waiting for capacity.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::PartialObjectMeta;
use kube::runtime::reflector::Store;
use quota_api::Client as ServiceClient;

use crate::crd::{QuotaAllocation, TenantQuota};
use crate::index::{ParentKey, SharedChildren};
use crate::status::StatusWriter;

/// Shared by the controllers and the usage sync.
#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub service: ServiceClient,
    /// Writes status and records Events; one writer per object at a time.
    pub status: StatusWriter,
    pub tenants: Store<TenantQuota>,
    pub allocations: Store<QuotaAllocation>,
    /// Namespace labels, for allocationNamespaceSelector.
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    /// Allocations by parent (kept from the allocation watch).
    pub children: SharedChildren,
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
        Context {
            status: StatusWriter::new(client.clone(), identity),
            client,
            service,
            tenants,
            allocations,
            namespaces,
            children,
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
