//! What the two kinds have in common: their status, their API, the id of
//! their node in the quota service.

use std::collections::BTreeSet;

use kube::api::Api;
use kube::{Resource, ResourceExt};

use crate::crd::{QuotaAllocation, QuotaStatus, TenantQuota};
use crate::{ids, quantity};

/// Which kind the status belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    TenantQuota,
    QuotaAllocation,
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
