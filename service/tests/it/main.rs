//! The service's integration tests, one binary: each module is one
//! subject, run against the real parts (the HTTP stack via `app`, a real
//! SQLite file, a real PostgreSQL server where the module says so, the
//! release binary where a process must die). One binary links once: the
//! suite builds faster and takes a fraction of the disk of one binary per
//! file.
//!
//! `EDGE_QUOTA_TEST_STORE=postgres` runs the store-parametrized modules on
//! PostgreSQL (see `common`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod access;
mod client;
mod concurrency;
mod durability;
mod flat_api;
mod flush_log;
mod load_pages;
mod migrations;
mod model;
mod openapi;
mod postgres_schema;
mod ratelimit;
mod replicas;
mod strict_bodies;
mod v1_api;
mod windows;
