//! The quota service's operations, independent of HTTP.
//!
//! ```text
//!   http handlers ──▶ Quotas ──▶ CounterStore (memory, every call)
//!                        └─────▶ Flusher ──▶ SqliteStore (write-through ops, flushes)
//! ```
//!
//! Usage (`increment`, `check`, reads) touches memory only. Limits and resets
//! are written through: the database is updated first, then memory, and the
//! call answers after both; a database error leaves both unchanged.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::SharedClock;
use crate::config::{Config, DatabaseUrl};
use crate::counters::{CounterStore, DirtyBatch};
use crate::domain::counter::Overflow;
use crate::domain::tenant::{Limits, TenantView, Usage};
use crate::flush::{FlushHealth, FlushReport, Flusher};
use crate::persistence::{SqliteStore, StoreError};

/// A change of limits; `None` keeps the current (or default) value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsUpdate {
    pub message_limit: Option<u64>,
    pub bandwidth_limit_bytes: Option<u64>,
}

/// The service's state and operations.
#[derive(Debug)]
pub struct Quotas {
    counters: Arc<CounterStore>,
    db: SqliteStore,
    flusher: Arc<Flusher>,
    auto_reset: bool,
}

impl Quotas {
    /// Opens the database named by the configuration and loads every tenant.
    pub async fn open(config: &Config, clock: SharedClock) -> Result<Self, StoreError> {
        let DatabaseUrl::Sqlite(path) = &config.database;
        let db = SqliteStore::open(path).await?;
        let defaults = Limits {
            message_limit: config.default_message_limit,
            bandwidth_limit_bytes: config.default_bandwidth_limit_bytes,
        };
        let counters = Arc::new(CounterStore::new(clock, defaults, config.enable_auto_reset));
        counters.load(db.load().await?);
        let flusher = Arc::new(Flusher::new(counters.clone(), db.clone()));
        Ok(Quotas {
            counters,
            db,
            flusher,
            auto_reset: config.enable_auto_reset,
        })
    }

    pub fn tenant_count(&self) -> usize {
        self.counters.len()
    }

    pub fn auto_reset(&self) -> bool {
        self.auto_reset
    }

    pub fn now(&self) -> i64 {
        self.counters.now()
    }

    /// Counts usage (always) and returns the tenant after it.
    pub fn increment(&self, tenant_id: &str, usage: Usage) -> Result<TenantView, Overflow> {
        self.counters.increment(tenant_id, usage)
    }

    /// The tenant (or an unknown tenant's defaults) and whether `usage` more
    /// fits. Changes nothing.
    pub fn check(&self, tenant_id: &str) -> TenantView {
        self.counters.get_or_default(tenant_id)
    }

    pub fn get(&self, tenant_id: &str) -> Option<TenantView> {
        self.counters.get(tenant_id)
    }

    pub fn list(&self) -> Vec<(String, TenantView)> {
        self.counters.list()
    }

    /// Writes new limits to the database, then to memory.
    pub async fn set_limits(
        &self,
        tenant_id: &str,
        update: LimitsUpdate,
    ) -> Result<TenantView, StoreError> {
        let _serialised = self.flusher.write_lock().await;
        let current = self
            .counters
            .get(tenant_id)
            .map(|v| v.limits)
            .unwrap_or_else(|| self.counters.default_limits());
        let limits = Limits {
            message_limit: update.message_limit.unwrap_or(current.message_limit),
            bandwidth_limit_bytes: update
                .bandwidth_limit_bytes
                .unwrap_or(current.bandwidth_limit_bytes),
        };
        match self.db.upsert_limits(tenant_id, limits, self.now()).await {
            Ok(()) => self.flusher.record_success(),
            Err(e) => {
                self.flusher.record_failure(&e);
                return Err(e);
            }
        }
        Ok(self.counters.set_limits(tenant_id, limits))
    }

    /// Zeroes the tenant's current periods in the database, then in memory.
    /// `Ok(None)` for an unknown tenant.
    pub async fn reset(&self, tenant_id: &str) -> Result<Option<TenantView>, StoreError> {
        let _serialised = self.flusher.write_lock().await;
        let Some(rows) = self.counters.reset_rows(tenant_id) else {
            return Ok(None);
        };
        let batch = DirtyBatch {
            new_tenants: Vec::new(),
            usage: rows,
        };
        match self.db.write_batch(&batch).await {
            Ok(()) => self.flusher.record_success(),
            Err(e) => {
                self.flusher.record_failure(&e);
                return Err(e);
            }
        }
        Ok(self.counters.reset(tenant_id))
    }

    /// Flushes dirty counters now.
    pub async fn flush(&self) -> Result<FlushReport, StoreError> {
        self.flusher.flush().await
    }

    pub fn flush_health(&self) -> FlushHealth {
        self.flusher.health()
    }

    pub fn pending_rows(&self) -> usize {
        self.counters.pending_rows()
    }

    /// Starts the periodic flusher.
    pub fn spawn_flusher(
        &self,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        self.flusher.clone().spawn_periodic(interval, stop)
    }

    /// The database (tests and tools read it directly).
    pub fn database(&self) -> &SqliteStore {
        &self.db
    }
}
