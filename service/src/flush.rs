//! The flusher: moves dirty counters from memory to the database.
//!
//! It runs every `PERSISTENCE_INTERVAL_SECS`, once more at shutdown, and on
//! demand. Flushes never overlap: the same lock also serialises the
//! write-through operations (limits, reset), so the database sees changes in
//! the order memory did. A failed flush hands its batch back to the counter
//! store and marks the store degraded; the next flush retries it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

use crate::counters::CounterStore;
use crate::persistence::{SqliteStore, StoreError};

/// What one successful flush wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub usage_rows: usize,
    pub new_tenants: usize,
    pub elapsed: Duration,
}

/// The persistence health that `/health` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushHealth {
    pub degraded: bool,
    pub last_flush_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Flushes dirty counters; see the module docs.
#[derive(Debug)]
pub struct Flusher {
    counters: Arc<CounterStore>,
    db: SqliteStore,
    lock: Mutex<()>,
    degraded: AtomicBool,
    last_flush_at: AtomicI64,
    last_error: std::sync::Mutex<Option<String>>,
}

impl Flusher {
    pub fn new(counters: Arc<CounterStore>, db: SqliteStore) -> Self {
        Flusher {
            counters,
            db,
            lock: Mutex::new(()),
            degraded: AtomicBool::new(false),
            last_flush_at: AtomicI64::new(i64::MIN),
            last_error: std::sync::Mutex::new(None),
        }
    }

    /// Takes the write lock: no flush runs until the guard is dropped.
    pub async fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Writes everything dirty now, in one transaction.
    pub async fn flush(&self) -> Result<FlushReport, StoreError> {
        let _guard = self.lock.lock().await;
        self.flush_locked().await
    }

    /// [`Flusher::flush`] for a caller that holds [`Flusher::write_lock`].
    pub async fn flush_locked(&self) -> Result<FlushReport, StoreError> {
        let started = Instant::now();
        let batch = self.counters.take_dirty();
        let report = FlushReport {
            usage_rows: batch.usage.len(),
            new_tenants: batch.new_tenants.len(),
            elapsed: Duration::ZERO,
        };
        if batch.is_empty() {
            return Ok(report);
        }
        match self.db.write_batch(&batch).await {
            Ok(()) => {
                self.record_success();
                Ok(FlushReport {
                    elapsed: started.elapsed(),
                    ..report
                })
            }
            Err(e) => {
                self.counters.requeue(batch);
                self.record_failure(&e);
                Err(e)
            }
        }
    }

    /// Records a successful write-through or flush.
    pub fn record_success(&self) {
        self.last_flush_at
            .store(self.counters.now(), Ordering::Relaxed);
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("store reachable again; persistence caught up");
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Records a failed write.
    pub fn record_failure(&self, e: &StoreError) {
        self.degraded.store(true, Ordering::Relaxed);
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    pub fn health(&self) -> FlushHealth {
        let at = self.last_flush_at.load(Ordering::Relaxed);
        FlushHealth {
            degraded: self.degraded.load(Ordering::Relaxed),
            last_flush_at: (at != i64::MIN).then_some(at),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }

    /// Flushes every `interval` until `stop` is cancelled. The final flush at
    /// shutdown is the caller's (see [`crate::server`]), after requests drained.
    pub fn spawn_periodic(
        self: Arc<Self>,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                match self.flush().await {
                    Ok(r) if r.usage_rows + r.new_tenants > 0 => tracing::debug!(
                        usage_rows = r.usage_rows,
                        new_tenants = r.new_tenants,
                        elapsed_ms = r.elapsed.as_millis() as u64,
                        "flushed"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(
                        error = %e,
                        pending_rows = self.counters.pending_rows(),
                        "flush failed; serving from memory, will retry"
                    ),
                }
            }
        })
    }
}
