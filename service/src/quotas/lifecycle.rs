//! Opening the service, flushes and readiness, and the write-through
//! primitives every change uses (one transaction with its audit record).

use super::*;

impl Quotas {
    /// Opens the database named by the configuration and loads every node.
    pub async fn open(config: &Config, clock: SharedClock) -> Result<Self, StoreError> {
        let db = Store::open(&config.database).await?;
        let defaults = Limits {
            message_limit: config.default_message_limit,
            bandwidth_limit_bytes: config.default_bandwidth_limit_bytes,
        };
        let now = clock.now();
        let counters = Arc::new(CounterStore::with_capacity(
            clock,
            defaults,
            config.enable_auto_reset,
            db.node_count().await?,
        ));
        // Each page goes into the store as soon as it is built, while the
        // next one is read.
        let (version, loading) = db.load_into(now, counters.loading()).await?;
        loading.finish();
        let instance_id = format!("{:x}-{:x}", std::process::id(), now_nanos());
        let flusher = Arc::new(Flusher::new(
            counters.clone(),
            db.clone(),
            instance_id.clone(),
            version,
        ));
        Ok(Quotas {
            counters,
            db,
            flusher,
            instance_id,
            ratelimit_fields: config.ratelimit_fields,
        })
    }

    /// Makes a node created through another replica moments ago known here
    /// before a call naming it is answered: with a shared database, an id
    /// this replica does not know first catches up with the database (see
    /// [`Flusher::catch_up`]). Known ids, and a single replica, cost one
    /// lookup or nothing. A failed read changes nothing: the call is
    /// answered from memory, as any call during an outage.
    pub async fn catch_up_on(&self, id: &str) {
        if !self.db.backend().shared() || self.counters.contains(id) {
            return;
        }
        if let Err(e) = self.flusher.catch_up(std::time::Instant::now()).await {
            tracing::debug!(error = %e, id, "could not read the database for an unknown node");
        }
    }

    pub fn tenant_count(&self) -> usize {
        self.counters.len()
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    pub fn now(&self) -> i64 {
        self.counters.now()
    }

    /// Flushes dirty counters now.
    pub async fn flush(&self) -> Result<FlushReport, StoreError> {
        self.flusher.flush().await
    }

    /// Ready to take traffic that needs the store: it answers a ping within
    /// two seconds and the last write to it succeeded. `Err` says why not.
    pub async fn ready(&self) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(2), self.db.ping()).await {
            Err(_) => return Err("the database did not answer within 2 s".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(())) => {}
        }
        let h = self.flusher.health();
        if h.degraded {
            return Err(format!(
                "the last write failed: {}",
                h.last_error.unwrap_or_default()
            ));
        }
        Ok(())
    }

    pub fn flush_health(&self) -> FlushHealth {
        self.flusher.health()
    }

    pub fn flush_stats(&self) -> crate::flush::FlushStats {
        self.flusher.stats()
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
    pub fn database(&self) -> &Store {
        &self.db
    }

    /// The resources a node holds claims of (a claim of nothing too).
    pub(super) fn claimed_resources(&self, id: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .counters
            .claims(id)
            .unwrap_or_default()
            .into_values()
            .map(|c| c.resource)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Writes `ops` in one transaction, recording the store's health.
    pub(super) async fn write(&self, ops: &[WriteOp]) -> Result<(), StoreError> {
        match self.db.apply(ops).await {
            Ok(()) => {
                self.flusher.record_success();
                Ok(())
            }
            Err(e) => {
                self.flusher.record_failure(&e);
                Err(e)
            }
        }
    }

    pub(super) fn audit(
        &self,
        actor: &str,
        action: &str,
        node_id: &str,
        before: Option<serde_json::Value>,
        after: Option<serde_json::Value>,
    ) -> WriteOp {
        WriteOp::Audit(AuditRecord {
            ts: self.now(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            node_id: node_id.to_owned(),
            before,
            after,
        })
    }
}

pub(super) fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}
