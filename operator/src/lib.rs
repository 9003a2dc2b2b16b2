//! edge-quota's Kubernetes operator.
//!
//! ```text
//!  kubectl apply ──▶ TenantQuota / QuotaAllocation ──▶ reconcile ──▶ quota service (/api/v1)
//!                          ▲                                             │
//!                          └────────── status (usage, conditions) ◀──────┘ snapshot poll
//! ```
//!
//! - [`crd`]: the two custom resources and their generated CRDs.
//! - [`tenant`], [`allocation`]: the reconcilers (routing to `finalizer()`).
//! - [`index`]: allocations by parent, kept from the watch.
//! - [`triggers`]: which watched changes wake which reconciles.
//! - [`sync`]: the usage sync (snapshot poll → status).
//! - [`status`]: status, conditions and Events as pure functions.
//! - [`context`]: shared clients and caches; the status writer.
//! - [`controller`]: wiring; [`leader`]: Lease election; [`config`]: environment;
//!   [`health`]: the liveness endpoint.
//! - [`quantity`], [`selector`], [`ids`]: small pure helpers.

pub mod allocation;
pub mod config;
pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod health;
pub mod ids;
pub mod index;
pub mod leader;
pub mod quantity;
pub mod quota_object;
pub mod selector;
pub mod service_node;
pub mod status;
pub mod sync;
pub mod tenant;
pub mod triggers;
