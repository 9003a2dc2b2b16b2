//! The PostgreSQL migrations, on a real PostgreSQL server: they apply, give
//! every table the same columns as the SQLite migrations, and keep the same
//! rules (unique usage rows, append-only audit trail).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::{PgPool, SqlitePool};

const TABLES: [&str; 9] = [
    "quota_clock",
    "quota_flush_log",
    "quota_nodes",
    "quota_node_limits",
    "quota_limits",
    "quota_usage",
    "quota_claims",
    "quota_grants",
    "quota_audit_logs",
];

async fn sqlite_columns(pool: &SqlitePool, table: &str) -> Vec<String> {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT name FROM pragma_table_info('{table}') ORDER BY cid"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn pg_columns(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table.to_owned())
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn postgres_schema_matches_sqlite_and_keeps_its_rules() {
    let pg = PgPool::connect(&testenv::postgres_database())
        .await
        .unwrap();
    sqlx::migrate!("../migrations/postgres")
        .run(&pg)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqlitePool::connect_with(
        sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("quotas.db"))
            .create_if_missing(true),
    )
    .await
    .unwrap();
    sqlx::migrate!("../migrations/sqlite")
        .run(&sqlite)
        .await
        .unwrap();

    for table in TABLES {
        let (s, p) = (
            sqlite_columns(&sqlite, table).await,
            pg_columns(&pg, table).await,
        );
        assert!(!s.is_empty(), "{table} missing in SQLite");
        assert_eq!(p, s, "columns of {table}");
    }

    // Usage rows are unique per (tenant_id, period, quota_type).
    let insert = "INSERT INTO quota_usage (tenant_id, period, quota_type, used, last_updated) VALUES ('a', '2026-11-22', 'message_count', 1, 'x')";
    sqlx::query(insert).execute(&pg).await.unwrap();
    assert!(sqlx::query(insert).execute(&pg).await.is_err());

    // The audit trail is append-only.
    sqlx::query(
        "INSERT INTO quota_audit_logs (ts, actor, action, node_id) VALUES ('t', 'a', 'put', 'n')",
    )
    .execute(&pg)
    .await
    .unwrap();
    for stmt in [
        "UPDATE quota_audit_logs SET actor = 'mallory'",
        "DELETE FROM quota_audit_logs",
        "TRUNCATE quota_audit_logs",
    ] {
        let err = sqlx::query(stmt)
            .execute(&pg)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("append-only"), "{stmt}: {err}");
    }

    // The flat view answers as in SQLite.
    for stmt in [
        "INSERT INTO quota_nodes VALUES ('acme', NULL, 'active', NULL, NULL, 't', 't')",
        "INSERT INTO quota_node_limits VALUES ('acme', 'messages', 50000, 'day'), ('acme', 'bandwidth', 1024, 'month')",
    ] {
        sqlx::query(stmt).execute(&pg).await.unwrap();
    }
    let row: (String, i64, i64) =
        sqlx::query_as("SELECT tenant_id, message_limit, bandwidth_limit_bytes FROM quota_limits")
            .fetch_one(&pg)
            .await
            .unwrap();
    assert_eq!(row, ("acme".to_owned(), 50_000, 1024));
}
