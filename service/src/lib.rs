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
//! Where to look (imports run one way: `http -> quotas -> counters -> rows
//! <- persistence`, and everything may use `domain`):
//!
//! | module | holds |
//! |---|---|
//! | `http/` | the routes: `flat.rs`, `v1/`, errors (`error.rs`), strict bodies |
//! | `quotas/` | the operations, independent of HTTP ([`Quotas`]) |
//! | `counters/` | the in-memory store (DashMap), the request path |
//! | `rows/` | the rows the counters and the database exchange |
//! | `flush.rs`, `persistence/` | durability: flushes, write-through, load |
//! | [`domain`] | the rules, pure code: windows, counters, the hierarchy |
//! | `server.rs` | startup and graceful shutdown ([`run`]) |
//!
//! The wire types and a typed client are the `quota-api` crate.

mod auth;
mod clock;
mod config;
mod counters;
pub mod domain;
mod flush;
mod http;
mod persistence;
mod quotas;
mod rows;
mod server;

pub use auth::{
    Admins, AuthError, AuthStats, Authenticator, CacheLimits, Review, ReviewError, Reviewer,
    StaticTokens, TokenReviewer, TokensFileError,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::{AuthConfig, AuthMode};
pub use config::{Config, ConfigError, LogFormat};
pub use counters::NodeView;
pub use http::{AppState, app};

/// The OpenAPI document of the service's API (what `GET /openapi.json`
/// answers) and where its committed copy lives.
pub mod openapi {
    pub use crate::http::openapi::{COMMITTED_PATH, to_json};
    pub use crate::http::openapi_document as document;
}
pub use quotas::{ClaimSpec, LimitSpec, NodeSpec, QuotaError, Quotas};
pub use server::{ServerError, run, shutdown_signal};

/// The storage layer's own interface: the database [`storage::Store`], the
/// in-memory [`storage::CounterStore`] and the rows they exchange. Public
/// for the storage's integration tests (a real SQLite file, a real
/// PostgreSQL server) and its benchmarks; the service itself reaches them
/// through [`Quotas`].
pub mod storage {
    pub use crate::counters::{CounterStore, Loading, flat_node};
    pub use crate::persistence::{Backend, FlushOutcome, Location, SentBatch, Store, StoreError};
    pub use crate::rows::{DirtyBatch, LoadedNode, NodeSink, UsageDelta, UsageDeltas};
}

/// Request-body parsing, measured on its own by the hot-path benchmarks.
pub mod bodies {
    pub use crate::http::UsageRequest;
    pub use crate::http::strict_json;
}
