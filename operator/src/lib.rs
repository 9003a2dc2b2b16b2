//! edge-quota's Kubernetes operator.
//!
//! ```text
//!  kubectl apply ──▶ TenantQuota / QuotaAllocation ──▶ reconcile ──▶ quota service (/api/v1)
//!                          ▲                                             │
//!                          └────────── status (usage, conditions) ◀──────┘ snapshot poll
//! ```
//!
//! - [`crd`]: the two custom resources and their generated CRDs.

pub mod crd;
