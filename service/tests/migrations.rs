//! Upgrading a database written by the flat-only version (migration 0001):
//! limits and usage carry over, `quota_limits` keeps answering as before.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{config, noon_nov22};
use quota_service::Quotas;
use quota_service::clock::ManualClock;
use sqlx::sqlite::SqliteConnectOptions;

#[tokio::test]
async fn a_flat_only_database_upgrades_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db_path = data.join("quotas.db");

    // 1. A database as the first version left it: only migration 0001.
    let old_migrations = dir.path().join("old-migrations");
    std::fs::create_dir_all(&old_migrations).unwrap();
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations/sqlite/0001_flat_quotas.sql");
    std::fs::copy(&src, old_migrations.join("0001_flat_quotas.sql")).unwrap();
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
    for stmt in [
        "INSERT INTO quota_limits VALUES ('acme', 500, 1073741824, '2026-11-01T00:00:00Z', '2026-11-02T00:00:00Z')",
        "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) VALUES ('acme', '2026-11-21', 'message_count', 77, '2026-11-21T10:00:00Z')",
        "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) VALUES ('acme', '2026-11-22', 'message_count', 12, '2026-11-22T10:00:00Z')",
        "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) VALUES ('acme', '2026-11', 'bandwidth', 4096, '2026-11-22T10:00:00Z')",
    ] {
        sqlx::query(stmt).execute(&pool).await.unwrap();
    }
    pool.close().await;

    // 2. This version opens it.
    let quotas = Arc::new(
        Quotas::open(
            // This test is about an old SQLite file, whatever the suite's store.
            &config(
                &dir,
                &[("DATABASE_URL", &format!("sqlite://{}", db_path.display()))],
            ),
            ManualClock::new(noon_nov22()),
        )
        .await
        .unwrap(),
    );
    let v = quotas.get("acme").expect("acme survived the upgrade");
    assert_eq!(
        (v.limits.message_limit, v.limits.bandwidth_limit_bytes),
        (500, 1 << 30)
    );
    assert_eq!((v.messages.used, v.bandwidth.used), (12, 4096));
    let node = quotas.node("acme").unwrap();
    assert_eq!(node.resource("messages").unwrap().window.as_str(), "day");

    // The old table name still answers, with the old columns.
    let pool = quotas.database().pool();
    let row: (String, i64, i64) =
        sqlx::query_as("SELECT tenant_id, message_limit, bandwidth_limit_bytes FROM quota_limits")
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!(row, ("acme".to_owned(), 500, 1 << 30));
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
