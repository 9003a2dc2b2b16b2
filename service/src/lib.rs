//! edge-quota's quota service.
//!
//! Services on an edge cluster call it to report usage and to ask whether a
//! tenant may proceed. Counters live in memory and are flushed to SQLite;
//! limits are written through.
//!
//! ```text
//!            ┌──────────── quota-service ─────────────────────────────┐
//!  HTTP ───▶ │ http (routes, errors) ─▶ quotas (operations)           │
//!            │                             ├─▶ counters (DashMap)     │
//!            │                             └─▶ flush ─▶ persistence   │──▶ quotas.db
//!            │ domain: calendar, window, counter, tenant, tenant_id   │
//!            └────────────────────────────────────────────────────────┘
//! ```
//!
//! Where to look: [`http`] for the routes, [`counters`] for the in-memory
//! store, [`flush`] and [`persistence`] for durability, [`domain`] for the
//! rules (pure code), [`server`] for startup and graceful shutdown.

pub mod clock;
pub mod config;
pub mod counters;
pub mod domain;
pub mod flush;
pub mod http;
pub mod persistence;
pub mod quotas;
pub mod rows;
pub mod server;

pub use http::app;
pub use quotas::Quotas;
