//! The flusher: moves counted usage from memory to the database, and (with a
//! shared database) brings back what other replicas wrote.
//!
//! ```text
//!  every PERSISTENCE_INTERVAL_SECS, at shutdown, on demand, before a reset:
//!    take_dirty() ──deltas──▶ Store::write_flush (seq N, + unconfirmed earlier seqs)
//!         ▲                         │ ok                      │ failed
//!         │                         ▼                         ▼
//!         │          shared DB: Store::changes(since)   before commit: requeue (not written)
//!         │            → sync_nodes, apply_totals       commit unknown: keep as unconfirmed,
//!         └──────────────────────────────────────────── send again with the next flush
//! ```
//!
//! Flushes never overlap: the same lock also serialises the write-through
//! operations (limits, reset), so the database sees changes in the order
//! memory did. A failed flush marks the store degraded (readiness says so);
//! the periodic task retries with backoff, and nothing counted meanwhile is
//! lost: it stays in memory until a flush commits it, exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

use crate::counters::CounterStore;
use crate::persistence::{Checkpoint, SentBatch, Store, StoreError};

/// Longest wait between retries while the database is unreachable.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(10);

/// Least time between two reads of a shared database on behalf of calls
/// naming a node this replica does not know: calls for ids that exist
/// nowhere cost the database at most this many reads.
const CATCH_UP_GAP: Duration = Duration::from_millis(100);

/// What one successful flush wrote and read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    pub usage_rows: usize,
    pub new_tenants: usize,
    /// Nodes another replica changed, taken into memory.
    pub synced_nodes: usize,
    /// Usage rows read back from a shared database.
    pub refreshed_rows: usize,
    /// Time spent reading back from a shared database (part of `elapsed`).
    pub refresh_elapsed: Duration,
    /// From taking the dirty counters to the commit (and the read-back).
    pub elapsed: Duration,
    /// The SQLite checkpoint after the flush (not part of `elapsed`).
    pub checkpoint: Option<Checkpoint>,
    pub checkpoint_elapsed: Duration,
}

/// Totals since start, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Flushes that committed (including ones with nothing to write).
    pub flushes: u64,
    /// Flushes and write-throughs that failed.
    pub failures: u64,
    /// Usage rows written by committed flushes.
    pub usage_rows: u64,
    /// Duration of the last committed flush, in microseconds.
    pub last_flush_micros: u64,
    /// Time spent in flushes (committed or not) and the checkpoints after
    /// them, in microseconds: what flushing takes from the service.
    pub busy_micros: u64,
}

/// The persistence health that `/health` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushHealth {
    pub degraded: bool,
    pub last_flush_at: Option<i64>,
    pub last_error: Option<String>,
}

/// Flush bookkeeping, changed only under the write lock.
#[derive(Debug, Default)]
struct Progress {
    /// Sequence number of the next flush.
    next_seq: u64,
    /// Batches whose commit outcome is unknown, oldest first.
    unconfirmed: Vec<SentBatch>,
    /// The database version this process has seen everything up to.
    seen: i64,
    /// When the last read-back of a shared database began.
    refreshed_at: Option<Instant>,
}

/// Flushes dirty counters; see the module docs.
#[derive(Debug)]
pub struct Flusher {
    counters: Arc<CounterStore>,
    db: Store,
    /// Identifies this process in `quota_flush_log`.
    replica: String,
    lock: Mutex<()>,
    progress: std::sync::Mutex<Progress>,
    degraded: AtomicBool,
    last_flush_at: AtomicI64,
    last_error: std::sync::Mutex<Option<String>>,
    flushes: AtomicU64,
    failures: AtomicU64,
    usage_rows: AtomicU64,
    last_flush_micros: AtomicU64,
    busy_micros: AtomicU64,
}

impl Flusher {
    /// `seen` is the database version the loaded state reflects.
    pub fn new(counters: Arc<CounterStore>, db: Store, replica: String, seen: i64) -> Self {
        Flusher {
            counters,
            db,
            replica,
            lock: Mutex::new(()),
            progress: std::sync::Mutex::new(Progress {
                next_seq: 1,
                unconfirmed: Vec::new(),
                seen,
                refreshed_at: None,
            }),
            degraded: AtomicBool::new(false),
            last_flush_at: AtomicI64::new(i64::MIN),
            last_error: std::sync::Mutex::new(None),
            flushes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            usage_rows: AtomicU64::new(0),
            last_flush_micros: AtomicU64::new(0),
            busy_micros: AtomicU64::new(0),
        }
    }

    /// Takes the write lock: no flush runs until the guard is dropped.
    pub async fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Writes everything counted so far, in one transaction (and, with a
    /// shared database, reads back what other replicas wrote).
    ///
    /// Then, with the lock released, copies the SQLite WAL into the
    /// database file: write-through calls waiting for the lock need not
    /// wait for that too (0.4 s after a million-row flush). A failed
    /// checkpoint loses nothing (the WAL keeps the commits; the next one
    /// copies them) and is only logged.
    pub async fn flush(&self) -> Result<FlushReport, StoreError> {
        let mut report = {
            let _guard = self.lock.lock().await;
            self.flush_locked().await?
        };
        let started = Instant::now();
        match self.db.checkpoint().await {
            Ok(c) => report.checkpoint = c,
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; the next flush retries it")
            }
        }
        report.checkpoint_elapsed = started.elapsed();
        self.add_busy(report.checkpoint_elapsed);
        Ok(report)
    }

    /// [`Flusher::flush`] for a caller that holds [`Flusher::write_lock`].
    pub async fn flush_locked(&self) -> Result<FlushReport, StoreError> {
        let started = Instant::now();
        let result = self.flush_inner(started).await;
        self.add_busy(started.elapsed());
        result
    }

    /// Counts `d` as time spent flushing (`edge_quota_flush_seconds_total`).
    fn add_busy(&self, d: Duration) {
        self.busy_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The flush itself; its report's `elapsed` counts from `started`.
    async fn flush_inner(&self, started: Instant) -> Result<FlushReport, StoreError> {
        let batch = self.counters.take_dirty();
        let (seq, unconfirmed) = {
            let mut p = lock(&self.progress);
            let seq = p.next_seq;
            p.next_seq += 1;
            (seq, std::mem::take(&mut p.unconfirmed))
        };
        let mut report = FlushReport::default();
        if !batch.is_empty() || !unconfirmed.is_empty() {
            let current = SentBatch { seq, batch };
            let now = self.counters.now();
            match self
                .db
                .write_flush(&self.replica, &unconfirmed, &current, now)
                .await
            {
                Ok(outcome) => {
                    self.counters.remember_rows(&outcome.learned);
                    report.usage_rows = outcome.usage_rows;
                    report.new_tenants = outcome.new_tenants;
                    if !outcome.already_applied.is_empty() {
                        tracing::info!(
                            seqs = ?outcome.already_applied,
                            "earlier flushes had been applied after all; not written again"
                        );
                    }
                }
                Err(e) => {
                    let mut p = lock(&self.progress);
                    p.unconfirmed = unconfirmed;
                    if e.may_have_committed() {
                        p.unconfirmed.push(current);
                    } else {
                        drop(p);
                        self.counters.requeue(current.batch);
                    }
                    self.record_failure(&e);
                    return Err(e);
                }
            }
        }
        if self.db.backend().shared() {
            let refresh_started = Instant::now();
            let (synced, refreshed) = self.refresh().await.inspect_err(|e| {
                self.record_failure(e);
            })?;
            report.synced_nodes = synced;
            report.refreshed_rows = refreshed;
            report.refresh_elapsed = refresh_started.elapsed();
        }
        self.record_success();
        report.elapsed = started.elapsed();
        self.flushes.fetch_add(1, Ordering::Relaxed);
        self.usage_rows
            .fetch_add(report.usage_rows as u64, Ordering::Relaxed);
        self.last_flush_micros.store(
            u64::try_from(report.elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        Ok(report)
    }

    /// Brings in what other replicas committed before `asked_at`, for a call
    /// naming a node this replica does not know yet (created through another
    /// replica moments ago): a flush with its read-back, unless one began
    /// after `asked_at` already. Concurrent callers share one read, and reads
    /// on their behalf are [`CATCH_UP_GAP`] apart.
    pub async fn catch_up(&self, asked_at: Instant) -> Result<(), StoreError> {
        if !self.db.backend().shared() {
            return Ok(());
        }
        let began = |p: &Progress| p.refreshed_at.is_some_and(|t| t >= asked_at);
        let last = lock(&self.progress).refreshed_at;
        if let Some(next) = last.map(|t| t + CATCH_UP_GAP)
            && next > Instant::now()
        {
            tokio::time::sleep_until(next.into()).await;
        }
        let _guard = self.lock.lock().await;
        if began(&lock(&self.progress)) {
            return Ok(());
        }
        self.flush_locked().await.map(|_| ())
    }

    /// Reads what changed in the shared database since the last refresh.
    async fn refresh(&self) -> Result<(usize, usize), StoreError> {
        let since = {
            let mut p = lock(&self.progress);
            p.refreshed_at = Some(Instant::now());
            p.seen
        };
        let changes = self.db.changes(self.counters.now(), since).await?;
        let counts = (changes.nodes.len(), changes.totals.len());
        self.counters.sync_nodes(changes.nodes);
        self.counters.apply_totals(&changes.totals);
        lock(&self.progress).seen = changes.version;
        Ok(counts)
    }

    /// Records a successful write-through or flush.
    pub fn record_success(&self) {
        self.last_flush_at
            .store(self.counters.now(), Ordering::Relaxed);
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("store reachable again; persistence caught up");
        }
        *lock(&self.last_error) = None;
    }

    /// Records a failed write.
    pub fn record_failure(&self, e: &StoreError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.degraded.store(true, Ordering::Relaxed);
        *lock(&self.last_error) = Some(e.to_string());
    }

    pub fn health(&self) -> FlushHealth {
        let at = self.last_flush_at.load(Ordering::Relaxed);
        FlushHealth {
            degraded: self.degraded.load(Ordering::Relaxed),
            last_flush_at: (at != i64::MIN).then_some(at),
            last_error: lock(&self.last_error).clone(),
        }
    }

    pub fn stats(&self) -> FlushStats {
        FlushStats {
            flushes: self.flushes.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            usage_rows: self.usage_rows.load(Ordering::Relaxed),
            last_flush_micros: self.last_flush_micros.load(Ordering::Relaxed),
            busy_micros: self.busy_micros.load(Ordering::Relaxed),
        }
    }

    /// Flushes every `interval` until `stop` is cancelled; after a failure,
    /// retries sooner (1 s, doubling up to 10 s) so the database catches up
    /// soon after it returns. The final flush at shutdown is the caller's
    /// (see [`crate::server`]), after requests drained.
    pub fn spawn_periodic(
        self: Arc<Self>,
        interval: Duration,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut delay = interval;
            let mut retry = Duration::from_secs(1);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                match self.flush().await {
                    Ok(r) => {
                        if r.usage_rows + r.new_tenants + r.synced_nodes > 0 {
                            tracing::debug!(
                                usage_rows = r.usage_rows,
                                new_tenants = r.new_tenants,
                                synced_nodes = r.synced_nodes,
                                refreshed_rows = r.refreshed_rows,
                                elapsed_ms = r.elapsed.as_millis() as u64,
                                checkpoint_ms = r.checkpoint_elapsed.as_millis() as u64,
                                "flushed"
                            );
                        }
                        delay = interval;
                        retry = Duration::from_secs(1);
                    }
                    Err(e) => {
                        tracing::warn!(
                            error = %e,
                            pending_rows = self.counters.pending_rows(),
                            retry_in_ms = retry.as_millis() as u64,
                            "flush failed; serving from memory, will retry"
                        );
                        delay = retry.min(interval.max(Duration::from_secs(1)));
                        retry = (retry * 2).min(MAX_RETRY_DELAY);
                    }
                }
            }
        })
    }
}

/// Locks a mutex, ignoring poisoning: the bookkeeping stays valid even if a
/// holder panicked, and losing batches would be worse than keeping them.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
