//! Upgrading a database written by an older version: the flat-only one
//! (migration 0001), one with rowid limits (up to 0003), one whose grants
//! could not give `owner` (up to 0004): limits, usage and grants carry over,
//! `quota_limits` keeps answering as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use std::sync::Arc;

use common::{config, noon_nov22};
use quota_service::ManualClock;
use quota_service::Quotas;
use quota_service::domain::access::Role;
use sqlx::sqlite::SqliteConnectOptions;

#[tokio::test]
async fn a_flat_only_database_upgrades_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    // 1. A database as the first version left it: only migration 0001.
    let db_path = database_before(
        &dir,
        "0001",
        &[
            "INSERT INTO quota_limits VALUES ('acme', 500, 1073741824, '2026-11-01T00:00:00Z', '2026-11-02T00:00:00Z')",
            "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) VALUES ('acme', '2026-11-21', 'message_count', 77, '2026-11-21T10:00:00Z')",
            "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) VALUES ('acme', '2026-11-22', 'message_count', 12, '2026-11-22T10:00:00Z')",
            "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) VALUES ('acme', '2026-11', 'bandwidth', 4096, '2026-11-22T10:00:00Z')",
        ],
    )
    .await;

    // 2. This version opens it.
    let quotas = Arc::new(open(&dir, &db_path).await);
    let v = quotas.get("acme").expect("acme survived the upgrade");
    assert_eq!(
        (v.limits.message_limit, v.limits.bandwidth_limit_bytes),
        (500, 1 << 30)
    );
    assert_eq!((v.messages.used, v.bandwidth.used), (12, 4096));
    let node = quotas.node("acme").unwrap();
    assert_eq!(node.resource("messages").unwrap().window.as_str(), "day");

    // The old table name still answers, with the old columns.
    assert_eq!(
        flat_limits(&quotas).await,
        ("acme".to_owned(), 500, 1 << 30)
    );
    // History rows are untouched.
    assert_eq!(
        quotas
            .database()
            .stored_usage("acme", "messages", "2026-11-21")
            .await
            .unwrap(),
        Some(77)
    );
}

/// A database as a version that knew the migrations up to `last` (e.g.
/// "0003") left it, holding what `statements` wrote.
async fn database_before(
    dir: &tempfile::TempDir,
    last: &str,
    statements: &[&'static str],
) -> std::path::PathBuf {
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db_path = data.join("quotas.db");
    let old_migrations = dir.path().join("old-migrations");
    std::fs::create_dir_all(&old_migrations).unwrap();
    let all = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
    for entry in std::fs::read_dir(&all).unwrap() {
        let name = entry.unwrap().file_name();
        if name.to_str().unwrap()[..4] <= *last {
            std::fs::copy(all.join(&name), old_migrations.join(&name)).unwrap();
        }
    }
    let opts = SqliteConnectOptions::new()
        .filename(&db_path)
        .create_if_missing(true);
    let pool = sqlx::SqlitePool::connect_with(opts).await.unwrap();
    sqlx::migrate::Migrator::new(old_migrations)
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for stmt in statements {
        sqlx::query(*stmt).execute(&pool).await.unwrap();
    }
    pool.close().await;
    db_path
}

/// This version opens the file (whatever the suite's store: these tests
/// are about old SQLite files).
async fn open(dir: &tempfile::TempDir, db_path: &std::path::Path) -> Quotas {
    Quotas::open(
        &config(
            dir,
            &[("DATABASE_URL", &format!("sqlite://{}", db_path.display()))],
        ),
        ManualClock::new(noon_nov22()),
    )
    .await
    .unwrap()
}

/// The one row of the flat tracker's `quota_limits`, now a view.
async fn flat_limits(quotas: &Quotas) -> (String, i64, i64) {
    sqlx::query_as("SELECT tenant_id, message_limit, bandwidth_limit_bytes FROM quota_limits")
        .fetch_one(quotas.database().pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn limits_move_to_a_table_clustered_by_node_without_losing_any() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = database_before(
        &dir,
        "0003",
        &[
            "INSERT INTO quota_nodes (id, parent_id, state, created_at, updated_at) VALUES ('org', NULL, 'active', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')",
            "INSERT INTO quota_nodes (id, parent_id, state, created_at, updated_at) VALUES ('org-a', 'org', 'active', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')",
            "INSERT INTO quota_nodes (id, parent_id, state, created_at, updated_at) VALUES ('acme', NULL, 'active', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')",
            "INSERT INTO quota_node_limits VALUES ('org', 'messages', 1000, 'day')",
            "INSERT INTO quota_node_limits VALUES ('org', 'volumes', 10, 'none')",
            "INSERT INTO quota_node_limits VALUES ('org-a', 'messages', 300, 'day')",
            "INSERT INTO quota_node_limits VALUES ('acme', 'messages', 500, 'day')",
            "INSERT INTO quota_node_limits VALUES ('acme', 'bandwidth', 1073741824, 'month')",
        ],
    )
    .await;

    let quotas = open(&dir, &db_path).await;
    let org = quotas.node("org").unwrap();
    assert_eq!(org.resource("messages").unwrap().max, 1000);
    assert_eq!(org.resource("messages").unwrap().allocated, 300);
    let volumes = org.resource("volumes").unwrap();
    assert_eq!((volumes.max, volumes.window.as_str()), (10, "none"));
    assert_eq!(
        quotas
            .node("org-a")
            .unwrap()
            .resource("messages")
            .unwrap()
            .max,
        300
    );
    let pool = quotas.database().pool();
    let rows: Vec<(String, String, i64, String)> = sqlx::query_as(
        "SELECT node_id, resource, max, window FROM quota_node_limits ORDER BY node_id, resource",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 5);
    // Clustered by its key: no rowid any more.
    let rowid = sqlx::query("SELECT rowid FROM quota_node_limits")
        .fetch_all(pool)
        .await;
    assert!(rowid.is_err(), "quota_node_limits is WITHOUT ROWID");
    // The view over it still answers for flat tenants.
    assert_eq!(
        flat_limits(&quotas).await,
        ("acme".to_owned(), 500, 1 << 30)
    );
    // The primary key still holds.
    let duplicate =
        sqlx::query("INSERT INTO quota_node_limits VALUES ('org', 'messages', 1, 'day')")
            .execute(pool)
            .await;
    assert!(duplicate.is_err(), "one row per (node, resource)");
}

#[tokio::test]
async fn grants_carry_over_and_may_give_owner() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = database_before(
        &dir,
        "0004",
        &[
            "INSERT INTO quota_nodes (id, parent_id, state, created_at, updated_at) VALUES ('org', NULL, 'active', '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')",
            "INSERT INTO quota_grants VALUES ('org', 'system:serviceaccount:a:web', 'reporter', '2026-11-01T00:00:00Z')",
            "INSERT INTO quota_grants VALUES ('org', 'group:ops', 'admin', '2026-11-01T00:00:00Z')",
        ],
    )
    .await;

    let quotas = open(&dir, &db_path).await;
    let grants: Vec<(String, String)> = quotas
        .grants("org")
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.subject, g.role))
        .collect();
    assert_eq!(
        grants,
        vec![
            ("group:ops".to_owned(), "admin".to_owned()),
            (
                "system:serviceaccount:a:web".to_owned(),
                "reporter".to_owned()
            ),
        ]
    );
    assert!(
        quotas
            .grant("test", "org", "root", Role::Owner)
            .await
            .unwrap()
    );
    let pool = quotas.database().pool();
    let unknown = sqlx::query("INSERT INTO quota_grants VALUES ('org', 'x', 'superuser', 't')")
        .execute(pool)
        .await;
    assert!(unknown.is_err(), "the CHECK still refuses unknown roles");
    let duplicate = sqlx::query("INSERT INTO quota_grants VALUES ('org', 'root', 'owner', 't')")
        .execute(pool)
        .await;
    assert!(duplicate.is_err(), "one row per (node, subject, role)");
}
