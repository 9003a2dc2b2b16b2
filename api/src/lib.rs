//! The contract between edge-quota's programs: the bodies of the v1 API
//! and a typed client of the quota service.
//!
//! ```text
//!   quota-operator ──┐                  ┌── quota-service (axum handlers)
//!                    ├──▶ quota-api ◀───┤
//!   your Rust code ──┘   v1 bodies,     └── reads them strictly
//!                        Client
//! ```
//!
//! The operator depends on this crate alone to reach the service, so it
//! builds without the service's database stack; a change of the wire
//! format is a change of this one small crate.

mod client;
pub mod rules;
pub mod schema;
mod unique_map;
pub mod v1;

pub use client::{Client, ClientError};
pub use unique_map::UniqueMap;
