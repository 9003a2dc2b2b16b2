//! A flush's rows as the one parameter each upsert reads: a JSON object
//! keyed by node id (`{"node":[delta,"last updated"],...}`), or SQLite's
//! binary JSONB of the same object, written in one pass into one buffer.

use super::{StoreError, to_sql};
use crate::domain::calendar::rfc3339_stamp;
use crate::rows::UsageDelta;

/// Rows of one period and quota type as the JSON object the upsert reads,
/// keyed by node id (`{"node":[delta,"last updated"],...}`), written in one
/// pass into one buffer: a million rows went through a million-element
/// vector of tuples and serde before. A node id is a key once: merge sums
/// the deltas of one row.
pub(super) fn rows_json(rows: &[&UsageDelta<'_>]) -> Result<String, StoreError> {
    let mut out = Vec::with_capacity(rows.len() * 48 + 2);
    out.push(b'{');
    for (i, m) in rows.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // Node ids are validated, but escape them as any text.
        serde_json::to_writer(&mut out, m.node_id).map_err(|e| StoreError::Corrupt {
            table: "(batch)",
            detail: format!("cannot encode rows as JSON: {e}"),
        })?;
        // Stamps never hold a byte JSON escapes.
        out.extend_from_slice(b":[");
        out.extend_from_slice(itoa::Buffer::new().format(to_sql(m.delta)).as_bytes());
        out.extend_from_slice(b",\"");
        out.extend_from_slice(rfc3339_stamp(m.last_updated).as_bytes());
        out.extend_from_slice(b"\"]");
    }
    out.push(b'}');
    String::from_utf8(out).map_err(|e| StoreError::Corrupt {
        table: "(batch)",
        detail: format!("rows are not UTF-8: {e}"),
    })
}

/// The same object as [`rows_json`] in SQLite's JSONB
/// (<https://sqlite.org/jsonb.html>): each element is a header (type in the
/// low four bits, payload size in the high four or in the 1, 2 or 4 bytes
/// after) and its payload. Node ids go in raw (`TEXTRAW`): no escaping.
/// With `row_ids`, each array starts with the row's id:
/// `{"node":[id,delta,"last updated"],...}`.
pub(super) fn rows_jsonb(rows: &[&UsageDelta<'_>], row_ids: bool) -> Result<Vec<u8>, StoreError> {
    const INT: u8 = 3;
    const TEXT: u8 = 7;
    const TEXTRAW: u8 = 10;
    const ARRAY: u8 = 11;
    const OBJECT: u8 = 12;
    let too_big = || StoreError::Corrupt {
        table: "(batch)",
        detail: "a flush chunk passes 4 GiB".to_owned(),
    };
    let mut out = Vec::with_capacity(rows.len() * 40 + 5);
    // The object's size is known at the end: a 4-byte size is always
    // allowed, however small the payload.
    out.extend_from_slice(&[0xe0 | OBJECT, 0, 0, 0, 0]);
    for m in rows {
        jsonb_header(&mut out, TEXTRAW, m.node_id.len()).ok_or_else(too_big)?;
        out.extend_from_slice(m.node_id.as_bytes());
        let mut row_digits = itoa::Buffer::new();
        let row = match m.stored_row {
            Some(row) if row_ids => row_digits.format(row.get()).as_bytes(),
            _ => &[],
        };
        let mut digits = itoa::Buffer::new();
        let delta = digits.format(to_sql(m.delta)).as_bytes();
        let stamp = rfc3339_stamp(m.last_updated);
        let stamp = stamp.as_bytes();
        let row_len = if row.is_empty() {
            0
        } else {
            jsonb_header_len(row.len()) + row.len()
        };
        let items = row_len
            + jsonb_header_len(delta.len())
            + delta.len()
            + jsonb_header_len(stamp.len())
            + stamp.len();
        jsonb_header(&mut out, ARRAY, items).ok_or_else(too_big)?;
        if !row.is_empty() {
            jsonb_header(&mut out, INT, row.len()).ok_or_else(too_big)?;
            out.extend_from_slice(row);
        }
        jsonb_header(&mut out, INT, delta.len()).ok_or_else(too_big)?;
        out.extend_from_slice(delta);
        jsonb_header(&mut out, TEXT, stamp.len()).ok_or_else(too_big)?;
        out.extend_from_slice(stamp);
    }
    let size = u32::try_from(out.len() - 5).map_err(|_| too_big())?;
    if let Some(at) = out.get_mut(1..5) {
        at.copy_from_slice(&size.to_be_bytes());
    }
    Ok(out)
}

/// Appends a JSONB header; `None` if `size` passes 4 GiB.
pub(super) fn jsonb_header(out: &mut Vec<u8>, kind: u8, size: usize) -> Option<()> {
    if size <= 11 {
        out.push(((size as u8) << 4) | kind);
    } else if let Ok(s) = u8::try_from(size) {
        out.extend_from_slice(&[0xc0 | kind, s]);
    } else if let Ok(s) = u16::try_from(size) {
        out.push(0xd0 | kind);
        out.extend_from_slice(&s.to_be_bytes());
    } else {
        out.push(0xe0 | kind);
        out.extend_from_slice(&u32::try_from(size).ok()?.to_be_bytes());
    }
    Some(())
}

/// The length of [`jsonb_header`] for `size`.
pub(super) fn jsonb_header_len(size: usize) -> usize {
    match size {
        0..=11 => 1,
        12..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::rfc3339;
    use crate::domain::counter::RowId;
    use crate::domain::window::Window;
    use crate::rows::messages_delta as d;

    /// The rows' object as serde writes it, each array led by the row id
    /// with `row_ids`.
    fn serde_object(rows: &[UsageDelta<'_>], row_ids: bool) -> String {
        let members: Vec<String> = rows
            .iter()
            .map(|m| {
                let value = match m.stored_row {
                    Some(id) if row_ids => {
                        serde_json::to_string(&(id.get(), to_sql(m.delta), rfc3339(m.last_updated)))
                    }
                    _ => serde_json::to_string(&(to_sql(m.delta), rfc3339(m.last_updated))),
                };
                format!(
                    "{}:{}",
                    serde_json::to_string(m.node_id).unwrap_or_default(),
                    value.unwrap_or_default()
                )
            })
            .collect();
        format!("{{{}}}", members.join(","))
    }

    #[test]
    fn rows_are_the_json_object_serde_writes_for_them() {
        let today = Window::Day.period_at(86_400 * 20_000);
        let rows = [
            d("a", today, 3, 1),
            d("quo\"te\\", today, 512, 9),
            d("b", today, u64::MAX / 2, 2),
        ];
        let refs: Vec<&UsageDelta<'_>> = rows.iter().collect();
        assert_eq!(
            rows_json(&refs).unwrap_or_default(),
            serde_object(&rows, false)
        );
        assert_eq!(rows_json(&[]).unwrap_or_default(), "{}");
    }

    /// SQLite itself checks the JSONB (strictly: `json_valid(x, 8)`) and
    /// renders it back as the text JSON PostgreSQL gets.
    #[tokio::test]
    async fn jsonb_rows_are_what_sqlite_reads_as_the_text_rows() {
        use sqlx::{Connection, Row};
        let today = Window::Day.period_at(86_400 * 20_000);
        let long = "n".repeat(300);
        let sized: Vec<String> = [11, 12, 255, 256].iter().map(|n| "s".repeat(*n)).collect();
        let mut rows = vec![
            d("a", today, 3, 1),
            d("quo\"te\\ \u{1}\t/zürich", today, 512, 9),
            d("", today, 0, 0),
            d("b", today, u64::MAX, 1_795_348_800),
            d(&long, today, 123_456_789_012, 2),
        ];
        rows.extend(sized.iter().map(|id| d(id, today, 1, 3)));
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .expect("in-memory SQLite");
        for n in [0, 1, rows.len()] {
            let refs: Vec<&UsageDelta<'_>> = rows.iter().take(n).collect();
            let blob = rows_jsonb(&refs, false).expect("jsonb");
            let row = sqlx::query("SELECT json_valid(?1, 8), json(?1)")
                .bind(blob)
                .fetch_one(&mut db)
                .await
                .expect("query");
            assert_eq!(row.get::<i64, _>(0), 1, "{n} rows: valid JSONB");
            assert_eq!(row.get::<String, _>(1), rows_json(&refs).expect("json"));
        }
        // With row ids first in each array, of every size a header holds.
        for (m, id) in rows
            .iter_mut()
            .zip([1, 9, 10, 11, 255, 256, 65_536, i64::MAX, 42])
        {
            m.stored_row = RowId::new(id);
        }
        let refs: Vec<&UsageDelta<'_>> = rows.iter().collect();
        let row = sqlx::query("SELECT json_valid(?1, 8), json(?1)")
            .bind(rows_jsonb(&refs, true).expect("jsonb"))
            .fetch_one(&mut db)
            .await
            .expect("query");
        assert_eq!(row.get::<i64, _>(0), 1, "with row ids: valid JSONB");
        assert_eq!(row.get::<String, _>(1), serde_object(&rows, true));
    }

    #[test]
    fn jsonb_headers_take_the_smallest_size_that_fits() {
        for (size, len) in [
            (0, 1),
            (11, 1),
            (12, 2),
            (255, 2),
            (256, 3),
            (65_535, 3),
            (65_536, 5),
        ] {
            let mut out = Vec::new();
            assert_eq!(jsonb_header(&mut out, 7, size), Some(()));
            assert_eq!((out.len(), jsonb_header_len(size)), (len, len), "{size}");
        }
        assert_eq!(jsonb_header(&mut Vec::new(), 7, 1 << 33), None);
    }
}
