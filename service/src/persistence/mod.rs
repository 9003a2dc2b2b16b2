//! Persistence: where limits and usage outlive the process.
//!
//! The service's state lives in memory ([`crate::counters`]); this layer
//! loads it at startup, writes limits through before a call answers, and
//! writes flush batches in one transaction each. [`sqlite`] is the embedded
//! default (one file, WAL mode).

pub mod sqlite;

pub use sqlite::{AuditEntry, AuditRecord, GrantRow, SqliteStore, WriteOp};

/// A persistence operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
}
