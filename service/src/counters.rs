//! The counter store: every tenant's limits and usage, in memory.
//!
//! ```text
//!  increment ──▶ DashMap<tenant, Entry> ──(dirty flags, retired rows)──▶ take_dirty() ──▶ flush
//!                 one shard lock per call                                 (persistence)
//! ```
//!
//! This is the request path. It never awaits anything: an increment takes one
//! shard lock, rolls the periods if the clock moved on, adds, marks the entry
//! dirty and returns. Persistence happens later, in [`crate::flush`], from what
//! [`CounterStore::take_dirty`] hands over. A write that fails is handed back
//! with [`CounterStore::requeue`], so nothing acknowledged is dropped.
//!
//! Flushes write absolute values per `(tenant, period, quota_type)`, so writing
//! a row twice is harmless, and a later snapshot of the same row always wins.

use std::sync::Mutex;

use dashmap::DashMap;

use crate::clock::SharedClock;
use crate::domain::counter::{Counter, Overflow};
use crate::domain::tenant::{Limits, QuotaType, Rolled, Tenant, TenantView, Usage};
use crate::domain::window::Period;

/// One tenant in the store.
#[derive(Debug)]
struct Entry {
    tenant: Tenant,
    /// Usage changed since the last snapshot taken for a flush.
    dirty: bool,
    /// The limits row does not exist in the database yet (a new tenant that
    /// got the default limits; they are persisted with the next flush).
    limits_unsaved: bool,
}

/// One `quota_usage` row to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRow {
    pub tenant_id: String,
    pub quota_type: QuotaType,
    pub period: Period,
    pub used: u64,
    pub last_updated: i64,
}

/// One `quota_limits` row to insert if missing (a tenant's default limits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenantRow {
    pub tenant_id: String,
    pub limits: Limits,
    pub created_at: i64,
}

/// Everything a flush must write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirtyBatch {
    pub new_tenants: Vec<NewTenantRow>,
    pub usage: Vec<UsageRow>,
}

impl DirtyBatch {
    pub fn is_empty(&self) -> bool {
        self.new_tenants.is_empty() && self.usage.is_empty()
    }
}

/// A tenant loaded from the database at startup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedTenant {
    pub tenant_id: String,
    pub limits: Limits,
    /// The latest stored period of each counter, if any.
    pub messages: Option<Counter>,
    pub bandwidth: Option<Counter>,
    pub last_updated: Option<i64>,
}

/// All tenants' limits and usage.
#[derive(Debug)]
pub struct CounterStore {
    tenants: DashMap<Box<str>, Entry>,
    /// Rows that must be written by the next flush: finished periods and rows
    /// of failed flushes, in the order they were produced.
    pending: Mutex<Vec<UsageRow>>,
    pending_tenants: Mutex<Vec<NewTenantRow>>,
    clock: SharedClock,
    default_limits: Limits,
    auto_reset: bool,
}

// === impl CounterStore ===

impl CounterStore {
    pub fn new(clock: SharedClock, default_limits: Limits, auto_reset: bool) -> Self {
        CounterStore {
            tenants: DashMap::new(),
            pending: Mutex::new(Vec::new()),
            pending_tenants: Mutex::new(Vec::new()),
            clock,
            default_limits,
            auto_reset,
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    pub fn default_limits(&self) -> Limits {
        self.default_limits
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// Fills the store from the database (startup only).
    pub fn load(&self, tenants: impl IntoIterator<Item = LoadedTenant>) {
        let now = self.now();
        for t in tenants {
            let mut tenant = Tenant::new(t.limits, now);
            if let Some(c) = t.messages {
                tenant.messages = c;
            }
            if let Some(c) = t.bandwidth {
                tenant.bandwidth = c;
            }
            tenant.last_updated = t.last_updated;
            self.tenants.insert(
                t.tenant_id.into_boxed_str(),
                Entry {
                    tenant,
                    dirty: false,
                    limits_unsaved: false,
                },
            );
        }
    }

    /// Counts `usage` for `tenant_id` (created with the default limits if
    /// unknown) and returns the tenant as it stands after the increment.
    pub fn increment(&self, tenant_id: &str, usage: Usage) -> Result<TenantView, Overflow> {
        let now = self.now();
        let mut entry = match self.tenants.get_mut(tenant_id) {
            Some(e) => e,
            None => self
                .tenants
                .entry(tenant_id.into())
                .or_insert_with(|| Entry {
                    tenant: Tenant::new(self.default_limits, now),
                    dirty: false,
                    limits_unsaved: true,
                }),
        };
        let rolled = entry.tenant.increment(usage, now, self.auto_reset)?;
        let was_dirty = std::mem::replace(&mut entry.dirty, true);
        let view = entry.tenant.view(now, self.auto_reset);
        drop(entry);
        if was_dirty {
            self.retire(tenant_id, rolled, now);
        }
        Ok(view)
    }

    /// The tenant as it stands, or `None` when unknown.
    pub fn get(&self, tenant_id: &str) -> Option<TenantView> {
        let now = self.now();
        self.tenants
            .get(tenant_id)
            .map(|e| e.tenant.view(now, self.auto_reset))
    }

    /// The tenant as it stands, or a fresh tenant with the default limits
    /// when unknown (not stored: a check does not create tenants).
    pub fn get_or_default(&self, tenant_id: &str) -> TenantView {
        let now = self.now();
        self.get(tenant_id)
            .unwrap_or_else(|| Tenant::new(self.default_limits, now).view(now, self.auto_reset))
    }

    /// Every tenant, sorted by id.
    pub fn list(&self) -> Vec<(String, TenantView)> {
        let now = self.now();
        let mut all: Vec<_> = self
            .tenants
            .iter()
            .map(|e| (e.key().to_string(), e.tenant.view(now, self.auto_reset)))
            .collect();
        all.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Replaces a tenant's limits in memory (the caller has written them to
    /// the database already), creating the tenant if unknown.
    pub fn set_limits(&self, tenant_id: &str, limits: Limits) -> TenantView {
        let now = self.now();
        let mut entry = self
            .tenants
            .entry(tenant_id.into())
            .or_insert_with(|| Entry {
                tenant: Tenant::new(limits, now),
                dirty: false,
                limits_unsaved: false,
            });
        entry.tenant.set_limits(limits, now);
        entry.limits_unsaved = false;
        entry.tenant.view(now, self.auto_reset)
    }

    /// The current-period rows a reset of `tenant_id` writes (all zero), or
    /// `None` when the tenant is unknown.
    pub fn reset_rows(&self, tenant_id: &str) -> Option<Vec<UsageRow>> {
        let now = self.now();
        let view = self.get(tenant_id)?;
        Some(
            [
                (QuotaType::Messages, view.messages.period),
                (QuotaType::Bandwidth, view.bandwidth.period),
            ]
            .into_iter()
            .map(|(quota_type, period)| UsageRow {
                tenant_id: tenant_id.to_owned(),
                quota_type,
                period,
                used: 0,
                last_updated: now,
            })
            .collect(),
        )
    }

    /// Starts the tenant's current periods again from zero. The entry stays
    /// dirty-marked so the next flush writes whatever is counted after this.
    pub fn reset(&self, tenant_id: &str) -> Option<TenantView> {
        let now = self.now();
        let mut entry = self.tenants.get_mut(tenant_id)?;
        let rolled = entry.tenant.reset(now, self.auto_reset);
        let was_dirty = std::mem::replace(&mut entry.dirty, true);
        let view = entry.tenant.view(now, self.auto_reset);
        drop(entry);
        if was_dirty {
            self.retire(tenant_id, rolled, now);
        }
        Some(view)
    }

    /// Hands over everything that must be written, clearing the dirty marks.
    /// If the write fails, pass the batch to [`CounterStore::requeue`].
    pub fn take_dirty(&self) -> DirtyBatch {
        let mut batch = DirtyBatch {
            new_tenants: std::mem::take(&mut *lock(&self.pending_tenants)),
            usage: std::mem::take(&mut *lock(&self.pending)),
        };
        let now = self.now();
        for mut e in self.tenants.iter_mut() {
            if e.limits_unsaved {
                e.limits_unsaved = false;
                batch.new_tenants.push(NewTenantRow {
                    tenant_id: e.key().to_string(),
                    limits: e.tenant.limits,
                    created_at: e.tenant.last_updated.unwrap_or(now),
                });
            }
            if e.dirty {
                e.dirty = false;
                let last_updated = e.tenant.last_updated.unwrap_or(now);
                for (quota_type, c) in [
                    (QuotaType::Messages, e.tenant.messages),
                    (QuotaType::Bandwidth, e.tenant.bandwidth),
                ] {
                    batch.usage.push(UsageRow {
                        tenant_id: e.key().to_string(),
                        quota_type,
                        period: c.period,
                        used: c.used,
                        last_updated,
                    });
                }
            }
        }
        batch
    }

    /// Gives back a batch whose write failed; the next flush writes it first,
    /// before anything newer for the same rows.
    pub fn requeue(&self, batch: DirtyBatch) {
        let mut pending = lock(&self.pending);
        let newer = std::mem::replace(&mut *pending, batch.usage);
        pending.extend(newer);
        drop(pending);
        let mut tenants = lock(&self.pending_tenants);
        let newer = std::mem::replace(&mut *tenants, batch.new_tenants);
        tenants.extend(newer);
    }

    /// Rows waiting in the pending queue (finished periods, failed flushes).
    pub fn pending_rows(&self) -> usize {
        lock(&self.pending).len()
    }

    fn retire(&self, tenant_id: &str, rolled: Rolled, last_updated: i64) {
        let rows: Vec<_> = rolled
            .iter()
            .map(|(quota_type, r)| UsageRow {
                tenant_id: tenant_id.to_owned(),
                quota_type,
                period: r.period,
                used: r.used,
                last_updated,
            })
            .collect();
        if !rows.is_empty() {
            lock(&self.pending).extend(rows);
        }
    }
}

/// Locks a mutex, ignoring poisoning: the protected vectors stay valid even
/// if a holder panicked, and losing rows would be worse than keeping them.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
