//! What a flush takes from the counters: new tenants and usage deltas.
//!
//! ```text
//!  CounterStore::take_dirty() ──▶ DirtyBatch { new_tenants, usage: UsageDeltas }
//!                                        │
//!                                        ▼
//!                 Store::write_flush (merge, sort, chunked upserts)
//! ```
//!
//! A batch holds the node ids of all its deltas in one text buffer: a
//! million dirty counters are then a few allocations, not a million (taking
//! a million ids one `String` each, then freeing them, was a fifth of a
//! million-row flush).

use std::ops::Range;

use crate::domain::counter::RowId;
use crate::domain::resource::ResourceName;
use crate::domain::tenant::Limits;
use crate::domain::window::Period;

/// Everything a flush must write.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirtyBatch {
    pub new_tenants: Vec<NewTenantRow>,
    pub usage: UsageDeltas,
    /// Nodes with a parent among those with usage here: one may have been
    /// deleted by another replica meanwhile, and its usage then moves to
    /// its parent (see `persistence::flush`).
    pub children: Vec<String>,
}

impl DirtyBatch {
    pub fn is_empty(&self) -> bool {
        self.new_tenants.is_empty() && self.usage.is_empty()
    }
}

/// A flat tenant created on first use, to insert if missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTenantRow {
    pub tenant_id: String,
    pub limits: Limits,
    pub created_at: i64,
}

/// Usage to add to one `quota_usage` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageDelta<'a> {
    pub node_id: &'a str,
    pub resource: &'a ResourceName,
    pub period: Period,
    pub delta: u64,
    pub last_updated: i64,
    /// The row's id, when the counter knows it (see `Counter::stored_row`).
    pub stored_row: Option<RowId>,
}

/// Node ids one after the other in one buffer, each addressed by the byte
/// range [`IdText::push`] gave it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct IdText(String);

// === impl IdText ===

impl IdText {
    fn push(&mut self, id: &str) -> Range<usize> {
        let start = self.0.len();
        self.0.push_str(id);
        start..self.0.len()
    }

    /// Appends all of `other`; its ranges move by the returned offset.
    fn append(&mut self, other: &IdText) -> usize {
        let offset = self.0.len();
        self.0.push_str(&other.0);
        offset
    }

    fn get(&self, range: &Range<usize>) -> &str {
        // Ranges come from `push`/`append`, which keep them on the
        // boundaries of the ids they copied.
        self.0.get(range.clone()).unwrap_or_default()
    }
}

/// A list of [`UsageDelta`]s whose node ids share one buffer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UsageDeltas {
    ids: IdText,
    rows: Vec<Row>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    /// The node id's bytes in `ids`.
    id: Range<usize>,
    resource: ResourceName,
    period: Period,
    delta: u64,
    last_updated: i64,
    stored_row: Option<RowId>,
}

// === impl UsageDeltas ===

impl UsageDeltas {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, d: UsageDelta<'_>) {
        let id = self.ids.push(d.node_id);
        self.rows.push(Row {
            id,
            resource: d.resource.clone(),
            period: d.period,
            delta: d.delta,
            last_updated: d.last_updated,
            stored_row: d.stored_row,
        });
    }

    /// Appends all of `other`.
    pub fn append(&mut self, other: UsageDeltas) {
        let offset = self.ids.append(&other.ids);
        self.rows.extend(other.rows.into_iter().map(|mut r| {
            r.id = r.id.start + offset..r.id.end + offset;
            r
        }));
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = UsageDelta<'_>> + '_ {
        self.rows.iter().map(|r| self.delta(r))
    }

    /// The `i`th delta.
    pub fn get(&self, i: usize) -> Option<UsageDelta<'_>> {
        self.rows.get(i).map(|r| self.delta(r))
    }

    fn delta<'a>(&'a self, r: &'a Row) -> UsageDelta<'a> {
        UsageDelta {
            node_id: self.ids.get(&r.id),
            resource: &r.resource,
            period: r.period,
            delta: r.delta,
            last_updated: r.last_updated,
            stored_row: r.stored_row,
        }
    }
}

impl<'a> FromIterator<UsageDelta<'a>> for UsageDeltas {
    fn from_iter<I: IntoIterator<Item = UsageDelta<'a>>>(iter: I) -> Self {
        let mut out = UsageDeltas::new();
        for d in iter {
            out.push(d);
        }
        out
    }
}

/// Row ids a flush learned: rows it inserted, or found by key because the
/// counter did not know the id. Handed back to the counters after the
/// commit, so the next flush addresses those rows by id.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredRows {
    ids: IdText,
    groups: Vec<StoredGroup>,
}

/// The rows of one resource and period.
#[derive(Debug, Clone, PartialEq, Eq)]
struct StoredGroup {
    resource: ResourceName,
    period: Period,
    /// The node id's bytes in `ids`, and its row.
    rows: Vec<(Range<usize>, RowId)>,
}

// === impl StoredRows ===

impl StoredRows {
    /// Starts the rows of `resource` in `period`; [`StoredRows::push`] adds
    /// to the group started last.
    pub fn start_group(&mut self, resource: &ResourceName, period: Period) {
        self.groups.push(StoredGroup {
            resource: resource.clone(),
            period,
            rows: Vec::new(),
        });
    }

    pub fn push(&mut self, node_id: &str, row: RowId) {
        if let Some(g) = self.groups.last_mut() {
            g.rows.push((self.ids.push(node_id), row));
        }
    }

    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.rows.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(node id, resource, period, row)` of every row learned.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ResourceName, Period, RowId)> + '_ {
        self.groups.iter().flat_map(move |g| {
            g.rows
                .iter()
                .map(move |(id, row)| (self.ids.get(id), &g.resource, g.period, *row))
        })
    }
}

/// A `messages` delta, for tests.
#[cfg(test)]
pub(crate) fn messages_delta(
    node_id: &str,
    period: Period,
    delta: u64,
    last_updated: i64,
) -> UsageDelta<'_> {
    static MESSAGES: std::sync::LazyLock<ResourceName> =
        std::sync::LazyLock::new(|| crate::domain::resource::MESSAGES.into());
    UsageDelta {
        node_id,
        resource: &MESSAGES,
        period,
        delta,
        last_updated,
        stored_row: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::window::Window;

    fn delta<'a>(node_id: &'a str, resource: &'a ResourceName, delta: u64) -> UsageDelta<'a> {
        UsageDelta {
            node_id,
            resource,
            period: Window::Day.period_at(86_400 * 20_000),
            delta,
            last_updated: 7,
            stored_row: None,
        }
    }

    #[test]
    fn deltas_come_back_as_pushed_and_appended() {
        let messages: ResourceName = "messages".into();
        let storage: ResourceName = "storage".into();
        let mut a: UsageDeltas = [delta("acme", &messages, 3), delta("b", &storage, 1)]
            .into_iter()
            .collect();
        let b: UsageDeltas = [delta("", &messages, 4), delta("zürich-team", &storage, 9)]
            .into_iter()
            .collect();
        a.append(b);
        a.append(UsageDeltas::new());
        assert_eq!(a.len(), 4);
        let got: Vec<(&str, &str, u64)> = a
            .iter()
            .map(|d| (d.node_id, &**d.resource, d.delta))
            .collect();
        assert_eq!(
            got,
            vec![
                ("acme", "messages", 3),
                ("b", "storage", 1),
                ("", "messages", 4),
                ("zürich-team", "storage", 9)
            ]
        );
        assert_eq!(a.get(3).map(|d| d.node_id), Some("zürich-team"));
        assert_eq!(a.get(4), None);
        assert!(UsageDeltas::new().is_empty());
    }
}
