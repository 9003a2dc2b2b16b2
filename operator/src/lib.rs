//! edge-quota's Kubernetes operator.
//!
//! ```text
//!  kubectl apply ──▶ TenantQuota / QuotaAllocation ──▶ reconcile ──▶ quota service (/api/v1)
//!                          ▲                                             │
//!                          └────────── status (usage, conditions) ◀──────┘ snapshot poll
//! ```
//!
//! Imports run one way:
//!
//! ```text
//!   controller ──▶ tenant, allocation, sync ──▶ index, triggers, service_node
//!        │                    │                          │
//!        └───▶ context ──▶ status (compute, events, writer) ──▶ quota_object, crd
//! ```
//!
//! - [`crd`]: the two custom resources and their generated CRDs (public:
//!   the types users build objects with).
//! - `tenant`, `allocation`: the reconcilers (routing to `finalizer()`).
//! - `sync`: the usage sync (snapshot poll → status).
//! - `index`: allocations by parent, kept from the watch; `triggers`: which
//!   watched changes wake which reconciles.
//! - `status`: status, conditions and Events as pure functions, and the
//!   one writer of status (`status/writer.rs`).
//! - `context`: shared clients, stores and the wake-up of waiting
//!   allocations.
//! - `quota_object`: what both kinds share; `service_node`: the body a
//!   spec is pushed as, and its grants.
//! - `controller`: wiring ([`run`]); `leader`: Lease election ([`Elector`]);
//!   `config`: environment ([`Config`]); [`health`]: the liveness endpoint.
//! - `quantity`, `selector`, `ids`: small pure helpers.

mod allocation;
mod config;
mod context;
mod controller;
pub mod crd;
mod error;
pub mod health;
mod ids;
mod index;
mod leader;
mod quantity;
mod quota_object;
mod selector;
mod service_node;
mod status;
mod sync;
mod tenant;
mod triggers;

pub use config::Config;
pub use controller::run;
pub use error::Error;
pub use leader::Elector;
