//! The custom resources: `TenantQuota` and `QuotaAllocation`
//! (`quota.edgepolicy.io/v1alpha1`).
//!
//! ```text
//!   TenantQuota acme (cluster)              ── root node "acme" in the service
//!   ├── QuotaAllocation team-a (ns: a)      ── child node "qa.a.team-a"
//!   │   └── QuotaAllocation squad (ns: a)   ── grandchild
//!   └── QuotaAllocation team-b (ns: b)
//! ```
//!
//! The YAML in `crds/` is generated from these types by `crdgen`
//! (`make generate`); a test fails when it is stale. Every field carries a
//! description (so `kubectl explain` works) and the rules an object can check
//! by itself are CEL validations, enforced by the API server at admission.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// API group of both kinds.
pub const GROUP: &str = "quota.edgepolicy.io";
/// API version of both kinds.
pub const VERSION: &str = "v1alpha1";
/// The finalizer on both kinds: the service node is deleted first.
pub const FINALIZER: &str = "quota.edgepolicy.io/node";

/// CEL: every key of a limits map is a valid resource name (`message_count`
/// is reserved: the quota service stores `messages` under that name).
const RESOURCE_NAMES: &str =
    "self.all(k, k.matches('^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$') && k != 'message_count')";
const RESOURCE_NAMES_MESSAGE: &str = "resource names must be 1-63 characters of a-z 0-9 . _ -, starting and ending with a letter or digit, and not message_count (reserved)";

/// CEL: a quantity that is a whole, non-negative number (`100`, `10Gi`, `1k`;
/// not `-1`, `0.5` or `100m`).
const WHOLE_QUANTITY: &str = "isQuantity(string(self)) && quantity(string(self)).isInteger() && quantity(string(self)).asInteger() >= 0";
/// Names the refused value: the API server's own error shows an
/// int-or-string as `Invalid value: ""`.
const WHOLE_QUANTITY_MESSAGE: &str =
    "'max must be a whole, non-negative quantity such as 100 or 10Gi; got ' + string(self)";

/// A tenant's quota: the root of a quota tree. Cluster-scoped; created by
/// cluster admins.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "quota.edgepolicy.io",
    version = "v1alpha1",
    kind = "TenantQuota",
    plural = "tenantquotas",
    shortname = "tq",
    status = "QuotaStatus",
    printcolumn = r#"{"name":"Usage","type":"string","jsonPath":".status.summary","description":"Used/max per resource"}"#,
    printcolumn = r#"{"name":"Exceeded","type":"boolean","jsonPath":".status.exceeded"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule::new("has(self.tenantId) == has(oldSelf.tenantId)").message("tenantId is immutable: it cannot be added or removed"))]
pub struct TenantQuotaSpec {
    /// The tenant's id in the quota service (what services report usage
    /// for). Defaults to the object's name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("tenantId is immutable"))]
    #[x_kube(validation = kube::core::Rule::new("self.matches('^[A-Za-z0-9._:-]{1,128}$')").message("tenantId must be 1-128 characters of A-Z a-z 0-9 . _ : -"))]
    #[x_kube(validation = kube::core::Rule::new("!self.startsWith('qa:')").message("tenantId must not start with qa: (the ids of QuotaAllocations' nodes)"))]
    #[schemars(length(max = 128))]
    pub tenant_id: Option<String>,

    /// Limits per resource name. `messages` (window day) and `bandwidth`
    /// (window month, bytes) are built in; any other name needs a window.
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = kube::core::Rule::new(RESOURCE_NAMES).message(RESOURCE_NAMES_MESSAGE))]
    #[x_kube(validation = kube::core::Rule::new("self.all(k, k in ['messages', 'bandwidth'] || has(self[k].window))").message("every resource except messages and bandwidth needs a window"))]
    #[x_kube(validation = kube::core::Rule::new("!('messages' in self) || !has(self['messages'].window) || self['messages'].window == 'day'").message("messages always has window day"))]
    #[x_kube(validation = kube::core::Rule::new("!('bandwidth' in self) || !has(self['bandwidth'].window) || self['bandwidth'].window == 'month'").message("bandwidth always has window month"))]
    pub limits: Limits,

    /// `Active` (default) or `Suspended`: a suspended tenant's whole tree is
    /// refused all usage.
    #[serde(default)]
    pub state: QuotaState,

    /// Percent of a limit at which the `NearLimit` condition turns true
    /// (default 80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self >= 1 && self <= 100").message("nearLimitPercent must be 1-100"))]
    pub near_limit_percent: Option<i32>,

    /// Which namespaces may create QuotaAllocations from this tenant. Unset:
    /// none may (only the cluster admin's own TenantQuota is set up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_namespace_selector: Option<LabelSelector>,

    /// Count every usage call in the quota service's database, with the
    /// limit checked in the same statement: exact even with several service
    /// replicas, at one database round trip per call. Default false
    /// (counted in memory, flushed every few seconds).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,

    /// Who may call the quota service for this tenant, and with which role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 64))]
    pub access: Vec<AccessGrant>,
}

/// A share of a parent quota, carved out by a tenant admin. Namespaced.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[kube(
    group = "quota.edgepolicy.io",
    version = "v1alpha1",
    kind = "QuotaAllocation",
    plural = "quotaallocations",
    shortname = "qa",
    namespaced,
    status = "QuotaStatus",
    printcolumn = r#"{"name":"Parent","type":"string","jsonPath":".spec.parentRef.name"}"#,
    printcolumn = r#"{"name":"Usage","type":"string","jsonPath":".status.summary","description":"Used/max per resource"}"#,
    printcolumn = r#"{"name":"Exceeded","type":"boolean","jsonPath":".status.exceeded"}"#,
    printcolumn = r#"{"name":"Bound","type":"string","jsonPath":".status.conditions[?(@.type==\"Bound\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Bound\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct QuotaAllocationSpec {
    /// The quota this allocation is carved from. Immutable.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("parentRef is immutable"))]
    pub parent_ref: ParentRef,

    /// Limits per resource name; each must exist in the parent, whose window
    /// it inherits. Reserved from the parent when the allocation binds.
    #[schemars(extend("maxProperties" = 32))]
    #[x_kube(validation = kube::core::Rule::new(RESOURCE_NAMES).message(RESOURCE_NAMES_MESSAGE))]
    pub limits: BTreeMap<String, AllocationLimit>,

    /// `Active` (default) or `Suspended`.
    #[serde(default)]
    pub state: QuotaState,

    /// Count every usage call in the quota service's database, with the
    /// limit checked in the same statement: exact even with several service
    /// replicas, at one database round trip per call. Default false
    /// (counted in memory, flushed every few seconds).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict: bool,

    /// Who may call the quota service for this allocation, and with which role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("maxItems" = 64))]
    pub access: Vec<AccessGrant>,

    /// What the ServiceAccounts of this allocation's namespace may do with
    /// it, with their own tokens: `reporter` (default: a workload here
    /// reports usage and reads it, nothing else), `reader`, or `none`
    /// (only the grants in `access`).
    #[serde(default)]
    pub namespace_access: NamespaceAccess,
}

/// The grant a QuotaAllocation gives its own namespace's ServiceAccounts.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum NamespaceAccess {
    #[default]
    Reporter,
    Reader,
    None,
}

/// Limits per resource name.
pub type Limits = BTreeMap<String, ResourceLimit>;

/// A limit on one resource.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceLimit {
    /// The limit: a whole, non-negative number or Kubernetes quantity
    /// (`50000`, `100Gi`, `2k`).
    #[x_kube(validation = kube::core::Rule::new(WHOLE_QUANTITY).message(kube::core::Message::Expression(WHOLE_QUANTITY_MESSAGE.into())))]
    #[schemars(extend("maxLength" = 64))]
    pub max: Quantity,

    /// When usage starts again from zero: minute, hour, day, month (UTC
    /// calendar) or none (a capacity: claimed and released, never reset).
    /// Optional for the built-ins messages (day) and bandwidth (month).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "optional_window")]
    pub window: Option<Window>,
}

/// An optional window's schema: the values only. Left out means "the
/// built-in's"; schemars' own schema of an `Option` also listed `null`,
/// which the API server then named as a supported value though the
/// operator has no meaning for it.
fn optional_window(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<Window>()
}

/// A limit of an allocation: the window comes from the parent.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllocationLimit {
    /// The limit: a whole, non-negative number or Kubernetes quantity.
    #[x_kube(validation = kube::core::Rule::new(WHOLE_QUANTITY).message(kube::core::Message::Expression(WHOLE_QUANTITY_MESSAGE.into())))]
    #[schemars(extend("maxLength" = 64))]
    pub max: Quantity,
}

/// A reset window.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Window {
    Minute,
    Hour,
    Day,
    Month,
    None,
}

/// Whether a quota accepts usage.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, schemars::JsonSchema,
)]
pub enum QuotaState {
    #[default]
    Active,
    Suspended,
}

/// The parent of an allocation.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// `TenantQuota` or `QuotaAllocation` (for deeper trees).
    pub kind: ParentKind,
    /// The parent's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The parent QuotaAllocation's namespace (default: this object's).
    /// Not used for a TenantQuota, which is cluster-scoped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
}

/// Kinds an allocation may be carved from.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum ParentKind {
    TenantQuota,
    QuotaAllocation,
}

/// Who may call the quota service for a quota, inherited down its subtree.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessGrant {
    /// A Kubernetes user or ServiceAccount, e.g.
    /// `system:serviceaccount:team-a:mqtt-bridge`, or a group as
    /// `group:<name>` (e.g. `group:system:serviceaccounts:team-a`).
    #[schemars(length(min = 1, max = 512))]
    pub subject: String,
    /// `reader` (read the quota and its usage), `reporter` (+ increment,
    /// consume, check, claims), `admin` (+ create and change the quotas
    /// below, their grants, the audit trail) or `owner` (+ this quota's own
    /// limits, state and grants).
    pub role: Role,
}

/// A role on a quota subtree.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Reader,
    Reporter,
    Admin,
    Owner,
}

/// What the operator observed; written with server-side apply.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuotaStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The node's id in the quota service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,

    /// Usage per resource in the current period.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, ResourceStatus>,

    /// Some resource's limit is reached.
    #[serde(default)]
    pub exceeded: bool,

    /// Short usage summary for `kubectl get`, e.g. `messages 40/100, storage 1Gi/10Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,

    /// When usage was last read from the quota service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// `Ready`, `Synced`, `Exceeded`, `NearLimit`, `Overcommitted`
    /// (TenantQuota) and `Bound` (QuotaAllocation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Usage of one resource.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceStatus {
    /// The limit.
    pub max: i64,
    /// Used by this quota itself in the current period.
    pub used: i64,
    /// Used by this quota and all its allocations.
    pub subtree_used: i64,
    /// Reserved by its allocations.
    pub allocated: i64,
    /// What this quota itself may still use: max - allocated - used.
    pub available: i64,
    /// The current period: `2026-11-22` (day), `2026-11` (month), `all` (none).
    pub period: String,
    /// When the period ends and usage starts again from zero (none: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_at: Option<String>,
}

// === impl Window ===

impl Window {
    pub fn as_str(self) -> &'static str {
        match self {
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Month => "month",
            Window::None => "none",
        }
    }
}

/// The CRDs, in the order `crds/` lists them.
pub fn crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    vec![TenantQuota::crd(), QuotaAllocation::crd()]
}

/// The CRD files: `(file name, YAML)`, e.g. `tenantquotas.quota.edgepolicy.io.yaml`.
pub fn render() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
            let yaml = serde_yaml::to_string(&crd)?;
            Ok((name, format!("# Generated by `make generate` (crdgen) from operator/src/crd.rs. Do not edit.\n{yaml}")))
        })
        .collect()
}
