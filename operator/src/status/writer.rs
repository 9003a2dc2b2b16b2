//! The one place that writes status (server-side apply) and records Events.
//!
//! One writer per object at a time, computing from what was written last:
//! only this operator writes status, and the watched object lags the write,
//! so the reconcilers and the usage sync never compute from the same old
//! status (which would record an Event twice).

use std::sync::Arc;

use dashmap::DashMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::{Input, Observation, compute};
use crate::crd::QuotaStatus;
use crate::error::Result;
use crate::quota_object::QuotaObject;

/// The field manager of every status patch.
pub const MANAGER: &str = "edge-quota-operator";

/// The current time as a Kubernetes `Time`.
pub fn now() -> Time {
    Time(Timestamp::now())
}

/// Writes the status of both kinds; cheap to clone (shared state).
#[derive(Clone)]
pub struct StatusWriter {
    client: kube::Client,
    recorder: Arc<Recorder>,
    /// The last status written per object (by uid): newer than the watched
    /// object, which lags the write.
    written: Arc<DashMap<String, Written>>,
    /// One writer per object (by uid) at a time. Readers of `written` never
    /// wait for it.
    writers: Arc<DashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The last status written for an object, and the version of the service
/// node it was computed from.
#[derive(Debug, Clone)]
struct Written {
    status: QuotaStatus,
    node_version: u64,
}

impl std::fmt::Debug for StatusWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWriter")
            .field("objects", &self.written.len())
            .finish_non_exhaustive()
    }
}

// === impl StatusWriter ===

impl StatusWriter {
    /// A writer whose Events name this operator instance (`identity`).
    pub fn new(client: kube::Client, identity: &str) -> Self {
        let reporter = Reporter {
            controller: MANAGER.into(),
            instance: Some(identity.to_owned()),
        };
        StatusWriter {
            recorder: Arc::new(Recorder::new(client.clone(), reporter)),
            client,
            written: Arc::default(),
            writers: Arc::default(),
        }
    }

    /// Computes the new status from an observation and writes it
    /// (server-side apply) only if it changed; records the Events its
    /// transitions call for. Returns the status written (or kept).
    pub async fn write<K: QuotaObject>(
        &self,
        obj: &K,
        observation: Observation<'_>,
    ) -> Result<QuotaStatus> {
        let key = obj.meta().uid.clone().unwrap_or_else(|| obj.name_any());
        let writer = self.writers.entry(key.clone()).or_default().clone();
        let _one_writer = writer.lock().await;
        let last = self.written.get(&key).map(|w| w.clone());
        let previous = last
            .as_ref()
            .map(|w| w.status.clone())
            .or_else(|| obj.quota_status().cloned());
        let last_version = last.as_ref().map_or(0, |w| w.node_version);
        // A node view older than the one already written (a reconcile that
        // read the node before a sync wrote a newer view) would flap the
        // conditions.
        let node_version = match &observation {
            Observation::Synced { node, .. } if node.version < last_version => {
                return Ok(previous.unwrap_or_default());
            }
            Observation::Synced { node, .. } => node.version,
            _ => last_version,
        };
        let binary = obj.binary_resources();
        let (new, events) = compute(Input {
            kind: K::KIND,
            generation: obj.meta().generation,
            previous: previous.as_ref(),
            observation,
            near_limit_percent: obj.near_limit_percent(),
            binary: &binary,
            deleting: obj.meta().deletion_timestamp.is_some(),
            now: now(),
        });
        let unchanged = previous
            .as_ref()
            .is_some_and(|old| same_but_sync_time(old, &new));
        // Recorded before the patch: whoever the patch's watch event wakes
        // (children reading this binding) already reads the new status.
        self.written.insert(
            key.clone(),
            Written {
                status: if unchanged {
                    previous.clone().unwrap_or_default()
                } else {
                    new.clone()
                },
                node_version,
            },
        );
        if !unchanged {
            let patch = serde_json::json!({
                "apiVersion": K::api_version(&()),
                "kind": K::kind(&()),
                "status": new,
            });
            let patched = obj
                .api(self.client.clone())
                .patch_status(
                    &obj.name_any(),
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(&patch),
                )
                .await;
            if let Err(e) = patched {
                match last {
                    Some(w) => self.written.insert(key, w),
                    None => self.written.remove(&key).map(|(_, w)| w),
                };
                return Err(e.into());
            }
        }
        let reference = obj.object_ref(&());
        for e in events {
            let event = Event {
                type_: if e.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: e.reason.into(),
                note: Some(e.note.chars().take(1000).collect()),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(err) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(error = %err, reason = e.reason, "cannot record event");
            }
        }
        Ok(new)
    }

    /// The newest status of an object: what this operator wrote last, or
    /// what the (possibly older) cached object says.
    pub fn latest<K: QuotaObject>(&self, obj: &K) -> Option<QuotaStatus> {
        let written = obj
            .meta()
            .uid
            .as_ref()
            .and_then(|uid| self.written.get(uid).map(|w| w.status.clone()));
        written.or_else(|| obj.quota_status().cloned())
    }

    /// Forgets what was written for a deleted object.
    pub fn forget<K: QuotaObject>(&self, obj: &K) {
        if let Some(uid) = &obj.meta().uid {
            self.written.remove(uid);
            self.writers.remove(uid);
        }
    }
}

/// Whether two statuses differ only in `lastSyncTime`.
fn same_but_sync_time(a: &QuotaStatus, b: &QuotaStatus) -> bool {
    let strip = |s: &QuotaStatus| QuotaStatus {
        last_sync_time: None,
        ..s.clone()
    };
    strip(a) == strip(b)
}
