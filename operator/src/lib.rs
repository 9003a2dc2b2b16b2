//! edge-quota's Kubernetes operator.
//!
//! ```text
//!  kubectl apply ──▶ TenantQuota / QuotaAllocation ──▶ reconcile ──▶ quota service (/api/v1)
//!                          ▲                                             │
//!                          └────────── status (usage, conditions) ◀──────┘ snapshot poll
//! ```
//!
//! - [`crd`]: the two custom resources and their generated CRDs.
//! - [`quantity`]: limits as whole numbers, and back for people.
//! - [`status`]: status, conditions and Events as pure functions.

pub mod crd;
pub mod quantity;
pub mod status;
