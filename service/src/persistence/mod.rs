//! Persistence: where nodes, limits and usage outlive the process.
//!
//! ```text
//!                     ┌──────────── Store (sqlx Any pool) ───────────┐
//!  Quotas ──write──▶  │ write.rs   write-through ops, one tx per call │ ──▶ SQLite file (WAL)
//!  Flusher ─flush─▶   │ flush.rs   usage deltas + flush log, strict   │      or
//!  startup/refresh ─▶ │ load.rs    whole state, or what changed       │ ──▶ PostgreSQL
//!                     └───────────────────────────────────────────────┘
//! ```
//!
//! The service's state lives in memory ([`crate::counters`]); this layer
//! loads it at startup, writes structure changes through before a call
//! answers, and adds flushed usage to the stored totals.
//!
//! One implementation serves both databases. The SQL is written once in the
//! dialect both accept (numbered `$N` parameters, `ON CONFLICT`,
//! `RETURNING`, text timestamps); [`Backend`] holds the few differences
//! (connection setup, migrations, whether other replicas may write). Two
//! hand-kept copies of every statement would drift; one copy cannot.
//!
//! Several replicas may share one PostgreSQL database:
//! - usage is flushed as deltas (`used = used + delta`), so replicas never
//!   overwrite each other's counts;
//! - every flush records `(replica_id, seq)` in `quota_flush_log` in the same
//!   transaction, so a flush whose outcome was unknown is not counted twice
//!   when retried;
//! - every write transaction first increments `quota_clock` (which serialises
//!   writers until commit) and stamps the rows it writes with that version;
//!   each flush then reads back what changed since the version it last saw.

mod flush;
mod key_order;
mod load;
mod row_json;
mod write;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyPool, Arguments, ConnectOptions, Encode, Executor, Type};

pub use flush::{FlushOutcome, SentBatch, StrictAdd};
pub use write::{AuditEntry, AuditRecord, GrantRow, WriteOp};

use crate::domain::counter::MAX_COUNT;
use crate::domain::resource::{MESSAGES, MESSAGES_STORED_AS};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Rows per multi-row statement (at most 7 parameters each: under SQLite's
/// 32,766 and PostgreSQL's 65,535 parameter limits).
const ROWS_PER_STATEMENT: usize = 1_000;

/// Where state is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created with its directory on first run).
    Sqlite(PathBuf),
    /// A PostgreSQL database, possibly shared by several replicas.
    Postgres(String),
}

/// The database kind behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// Whether other processes may write the same database, so that each
    /// flush must read back what they changed. A SQLite file has one writer.
    pub fn shared(self) -> bool {
        self == Backend::Postgres
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A persistence operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open the database {location}: {source}")]
    Open {
        location: String,
        source: sqlx::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    /// The commit was sent but its answer never came: the transaction may or
    /// may not have been applied.
    #[error("database commit outcome unknown: {0}")]
    CommitUnknown(sqlx::Error),
    #[error("corrupt row in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    /// A task of a read (building a page, reading pages) failed or was
    /// cancelled before it finished.
    #[error("reading the database was interrupted: {0}")]
    Interrupted(String),
}

impl StoreError {
    /// Whether the failed write may nevertheless have been applied.
    pub fn may_have_committed(&self) -> bool {
        matches!(self, StoreError::CommitUnknown(_))
    }
}

/// What a SQLite checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every frame of the WAL is in the database file now.
    pub complete: bool,
    /// Frames (pages) the WAL held.
    pub frames: u64,
}

/// The database holding the service's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// For messages: the file path, or the URL without its password.
    location: String,
    /// Nodes per page of a load (see `load`).
    load_page: i64,
    /// Usage rows per chunk of a flush (see `flush`).
    flush_chunk: usize,
}

// === impl Store: connection ===

impl Store {
    /// Connects (creating a SQLite file and its directory on first run) and
    /// applies the migrations.
    pub async fn open(location: &Location) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, shown, options, pool) = match location {
            Location::Sqlite(path) => {
                create_parent_dir(path)?;
                let url = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .to_url_lossy();
                let pool = AnyPoolOptions::new()
                    // One writer at a time anyway; a second connection lets a
                    // read (audit page, grants) run beside a flush.
                    .max_connections(2)
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL: readers never block the writer. In WAL mode
                            // NORMAL survives a process crash (the OS has the
                            // data); only a power loss may lose the last
                            // transactions.
                            // No automatic checkpoints: the commit that
                            // passes 1,000 WAL pages would copy the WAL into
                            // the database file inside the flush or request
                            // that made it; the flusher checkpoints after
                            // each flush instead ([`Store::checkpoint`]).
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA cache_size = -32768; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = 0;",
                            )
                            .await?;
                            Ok(())
                        })
                    });
                (
                    Backend::Sqlite,
                    path.display().to_string(),
                    AnyConnectOptions::from_str(url.as_str()),
                    pool,
                )
            }
            Location::Postgres(url) => {
                let pool = AnyPoolOptions::new()
                    .max_connections(4)
                    // During an outage a flush or a write-through call fails
                    // after this long instead of hanging.
                    .acquire_timeout(Duration::from_secs(3));
                (
                    Backend::Postgres,
                    redact(url),
                    AnyConnectOptions::from_str(url),
                    pool,
                )
            }
        };
        let open_err = |source| StoreError::Open {
            location: shown.clone(),
            source,
        };
        let options = options.map_err(open_err)?;
        let pool = pool.connect_with(options).await.map_err(open_err)?;
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            location: shown,
            load_page: load::PAGE,
            flush_chunk: flush::CHUNK,
        })
    }

    /// Reads loads in pages of `nodes` (at least 1) instead of the default
    /// 100,000: for tests of the paging with few nodes.
    pub fn set_load_page(&mut self, nodes: i64) {
        self.load_page = nodes.max(1);
    }

    /// Writes flushes in chunks of `rows` (at least 1) instead of the
    /// default 50,000: for tests of the chunking with few rows.
    pub fn set_flush_chunk(&mut self, rows: usize) {
        self.flush_chunk = rows.max(1);
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The file path or the URL (without password), for messages.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The pool (tests run raw SQL against the real database).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Whether the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Copies what the SQLite WAL holds into the database file (a passive
    /// checkpoint: it waits for no one, and leaves frames a reader still
    /// needs for the next one). Nothing to do on PostgreSQL (`None`).
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>, StoreError> {
        if self.backend != Backend::Sqlite {
            return Ok(None);
        }
        let (busy, frames, copied): (i64, i64, i64) =
            sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                .fetch_one(&self.pool)
                .await?;
        Ok(Some(Checkpoint {
            complete: busy == 0 && frames == copied,
            frames: frames.max(0) as u64,
        }))
    }

    /// Closes the pool, waiting for connections to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn create_parent_dir(path: &Path) -> Result<(), StoreError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// The URL with its password replaced, for logs and errors.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("****"));
            u.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) if !url.contains('@') => url.to_owned(),
        Err(_) => "<not shown: it may hold a password>".to_owned(),
    }
}

// === SQL helpers shared by the submodules ===

/// SQL text built with placeholders in each database's preferred form:
/// `$1, $2, ...` for PostgreSQL, anonymous `?` for SQLite. (`?` is not
/// PostgreSQL syntax; numbered parameters work in SQLite, but binding them
/// costs a linear name lookup each, quadratic in the parameters of a
/// statement: over a third of a SQLite flush's time, measured with perf.)
pub(crate) struct Sql {
    text: String,
    args: AnyArguments,
    n: usize,
    backend: Backend,
}

impl Sql {
    pub(crate) fn new(backend: Backend, text: &str) -> Self {
        Sql {
            text: text.to_owned(),
            args: AnyArguments::default(),
            n: 0,
            backend,
        }
    }

    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Appends the next placeholder and binds `value` to it.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + Encode<'static, Any> + Type<Any>,
    {
        self.n += 1;
        match self.backend {
            Backend::Postgres => {
                self.text.push('$');
                self.text.push_str(&self.n.to_string());
            }
            Backend::Sqlite => self.text.push('?'),
        }
        // Encoding into the Any buffer only moves the value; it cannot fail
        // for the types used here (text, integers, NULLs).
        let _ = self.args.add(value);
        self
    }

    /// Appends a row source over `json`, an array of arrays bound as one
    /// text parameter: select its columns with `value ->> 0`, `value ->> 1`...
    /// (both databases read `->>` on JSON the same way).
    pub(crate) fn json_rows(&mut self, json: String) -> &mut Self {
        match self.backend {
            Backend::Postgres => {
                self.text.push_str("json_array_elements(CAST(");
                self.bind(json);
                self.text.push_str(" AS json))");
            }
            Backend::Sqlite => {
                // Parsed once into SQLite's binary JSON: `->>` on a text
                // element re-parses it for every column (2.5x the cost of
                // the whole 1,000,000-row flush statement).
                self.text.push_str("jsonb_each(jsonb(");
                self.bind(json);
                self.text.push_str("))");
            }
        }
        self
    }

    /// Appends `VALUES (..), (..)`: `row` binds the columns of one row,
    /// calling [`Sql::bind`] once per column.
    pub(crate) fn values<R>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
        mut row: impl FnMut(&mut Row<'_>, R),
    ) -> &mut Self {
        self.text.push_str(" VALUES ");
        for (i, r) in rows.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.text.push('(');
            row(
                &mut Row {
                    sql: self,
                    first: true,
                },
                r,
            );
            self.text.push(')');
        }
        self
    }

    pub(crate) fn into_parts(self) -> (sqlx::AssertSqlSafe<String>, AnyArguments) {
        (sqlx::AssertSqlSafe(self.text), self.args)
    }
}

/// The columns of one row in [`Sql::values`].
pub(crate) struct Row<'a> {
    sql: &'a mut Sql,
    first: bool,
}

impl Row<'_> {
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Self
    where
        T: 'static + Encode<'static, Any> + Type<Any>,
    {
        if !std::mem::take(&mut self.first) {
            self.sql.text.push_str(", ");
        }
        self.sql.bind(value);
        self
    }
}

/// `quota_usage.quota_type` of a resource (the flat tracker named messages
/// `message_count`, which is therefore no resource's name).
pub(crate) fn quota_type(resource: &str) -> &str {
    if resource == MESSAGES {
        MESSAGES_STORED_AS
    } else {
        resource
    }
}

pub(crate) fn resource_of(quota_type: &str) -> &str {
    if quota_type == MESSAGES_STORED_AS {
        MESSAGES
    } else {
        quota_type
    }
}

pub(crate) fn corrupt(table: &'static str, detail: String) -> StoreError {
    StoreError::Corrupt { table, detail }
}

pub(crate) fn to_sql(n: u64) -> i64 {
    // Counters and limits never pass MAX_COUNT (= i64::MAX).
    i64::try_from(n.min(MAX_COUNT)).unwrap_or(i64::MAX)
}

pub(crate) fn to_count(table: &'static str, n: i64) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(table, format!("negative value {n}")))
}

/// Increments `quota_clock` and returns the new version. Called first in
/// every write transaction: the row stays locked until the transaction ends,
/// so writers (of every replica) commit in version order.
pub(crate) async fn bump_clock(conn: &mut sqlx::AnyConnection) -> Result<i64, StoreError> {
    let (v,): (i64,) = sqlx::query_as(
        "UPDATE quota_clock SET version = version + 1 WHERE id = 1 RETURNING version",
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(v)
}
