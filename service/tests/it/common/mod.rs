//! Shared test helpers: the real router on a real database, with a clock
//! the test sets.
//!
//! The store is chosen by `EDGE_QUOTA_TEST_STORE`: `sqlite` (default; a
//! real file in a temp dir) or `postgres` (a new database per data
//! directory on the real PostgreSQL server of `testenv::postgres()`).
//! `make test` runs the whole service suite once with each.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use quota_service::Config;
use quota_service::ManualClock;
use quota_service::domain::calendar::{SECS_PER_DAY, days_from_civil};
use quota_service::storage::{Backend, Location, Store};
use quota_service::{Authenticator, Quotas, app};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

pub mod process;

/// The store kind the suite runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

pub fn store_kind() -> StoreKind {
    match std::env::var("EDGE_QUOTA_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("sqlite") => StoreKind::Sqlite,
        Ok("postgres") => StoreKind::Postgres,
        Ok(other) => panic!("EDGE_QUOTA_TEST_STORE={other:?}: expected sqlite or postgres"),
    }
}

/// Where a service with data directory `data_dir` keeps its state: the
/// SQLite file in it, or one PostgreSQL database per directory (the same
/// one every time it is asked, so a restart finds its data).
pub fn location_for(data_dir: &Path) -> Location {
    match store_kind() {
        StoreKind::Sqlite => Location::Sqlite(data_dir.join("quotas.db")),
        StoreKind::Postgres => {
            static DATABASES: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
            let mut dbs = DATABASES
                .get_or_init(Default::default)
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let url = dbs
                .entry(data_dir.to_owned())
                .or_insert_with(testenv::postgres_database);
            Location::Postgres(url.clone())
        }
    }
}

/// `DATABASE_URL` for a service with data directory `data_dir`.
pub fn database_url(data_dir: &Path) -> String {
    match location_for(data_dir) {
        Location::Sqlite(path) => format!("sqlite://{}", path.display()),
        Location::Postgres(url) => url,
    }
}

/// Opens the store a service with data directory `data_dir` uses (to look
/// at what it wrote).
pub async fn open_store(data_dir: &Path) -> Store {
    Store::open(&location_for(data_dir))
        .await
        .expect("open the store")
}

/// Makes every insert into the audit log fail with `message` (a broken
/// database, as far as write-through calls can tell).
pub async fn break_audit_inserts(store: &Store, message: &str) {
    let stmts: Vec<String> = match store.backend() {
        Backend::Sqlite => vec![format!(
            "CREATE TRIGGER broken BEFORE INSERT ON quota_audit_logs BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )],
        Backend::Postgres => vec![
            format!(
                "CREATE FUNCTION broken() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION '{message}'; END; $$ LANGUAGE plpgsql"
            ),
            "CREATE TRIGGER broken BEFORE INSERT ON quota_audit_logs FOR EACH ROW EXECUTE FUNCTION broken()".into(),
        ],
    };
    for stmt in stmts {
        sqlx::query(sqlx::AssertSqlSafe(stmt))
            .execute(store.pool())
            .await
            .expect("break the audit log");
    }
}

/// Undoes [`break_audit_inserts`].
pub async fn repair_audit_inserts(store: &Store) {
    let stmts: &[&str] = match store.backend() {
        Backend::Sqlite => &["DROP TRIGGER broken"],
        Backend::Postgres => &[
            "DROP TRIGGER broken ON quota_audit_logs",
            "DROP FUNCTION broken()",
        ],
    };
    for stmt in stmts {
        sqlx::query(*stmt)
            .execute(store.pool())
            .await
            .expect("repair the audit log");
    }
}

/// 2026-11-22T12:00:00Z
pub fn noon_nov22() -> i64 {
    at(2026, 11, 22, 12, 0, 0)
}

pub fn at(y: i64, mo: u32, d: u32, h: i64, mi: i64, s: i64) -> i64 {
    days_from_civil(y, mo, d) * SECS_PER_DAY + h * 3600 + mi * 60 + s
}

pub fn config(dir: &TempDir, extra: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::new();
    let data = dir.path().join("data");
    vars.insert("QUOTA_DATA_DIR".into(), data.display().to_string());
    vars.insert("DATABASE_URL".into(), database_url(&data));
    vars.insert("DEFAULT_MESSAGE_LIMIT".into(), "100".into());
    vars.insert("DEFAULT_BANDWIDTH_LIMIT_GB".into(), "1".into());
    for (k, v) in extra {
        vars.insert(k.to_string(), v.to_string());
    }
    match Config::from_lookup(|k| vars.get(k).cloned()) {
        Ok(c) => c,
        Err(e) => panic!("test config: {e}"),
    }
}

/// The service in-process: its router, state, clock and data directory.
pub struct TestApp {
    pub dir: TempDir,
    pub clock: Arc<ManualClock>,
    pub quotas: Arc<Quotas>,
    pub extra: Vec<(String, String)>,
    /// With access control: the authenticator and the token `call` sends.
    pub caller: Option<(Arc<Authenticator>, String)>,
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(&[]).await
    }

    pub async fn with(extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::new(noon_nov22());
        let quotas = Quotas::open(&config(&dir, extra), clock.clone())
            .await
            .expect("open quotas");
        let expected = match store_kind() {
            StoreKind::Sqlite => Backend::Sqlite,
            StoreKind::Postgres => Backend::Postgres,
        };
        assert_eq!(quotas.database().backend(), expected, "the suite's store");
        TestApp {
            dir,
            clock,
            quotas: Arc::new(quotas),
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            caller: None,
        }
    }

    /// Turns access control on: static tokens from `tokens_yaml`, the
    /// subjects in `admins` owning every node, `call` sending `token`.
    pub fn with_static_tokens(mut self, tokens_yaml: &str, admins: &[&str], token: &str) -> Self {
        let path = self.dir.path().join("tokens.yaml");
        std::fs::write(&path, tokens_yaml).expect("write the tokens file");
        let admins = quota_service::Admins::new(admins.iter().map(|a| a.to_string()).collect());
        let tokens = quota_service::StaticTokens::load(path, admins).expect("load the tokens file");
        self.caller = Some((Authenticator::with_static(tokens), token.to_owned()));
        self
    }

    /// The service with access control on, `call` sending the token of an
    /// owner of every node: what every answer must be the same with.
    pub async fn as_admin() -> Self {
        Self::new().await.with_static_tokens(
            "- token: admin-token-0123456789\n  subject: admin\n",
            &["admin"],
            "admin-token-0123456789",
        )
    }

    /// The token `call` sends from now on (access control on).
    pub fn use_token(&mut self, token: &str) {
        if let Some((_, t)) = self.caller.as_mut() {
            *t = token.to_owned();
        }
    }

    /// Opens the same data directory again, as a restarted process would.
    pub async fn reopen(&self) -> Arc<Quotas> {
        let extra: Vec<(&str, &str)> = self
            .extra
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let q = Quotas::open(&config(&self.dir, &extra), self.clock.clone())
            .await
            .expect("reopen quotas");
        Arc::new(q)
    }

    pub async fn call(&self, method: Method, uri: &str, body: Option<&str>) -> (StatusCode, Value) {
        match &self.caller {
            None => call(&self.quotas, method, uri, body).await,
            Some((auth, token)) => {
                let req = request(method, uri, bearer(token).as_deref(), body);
                send_to(&self.quotas, auth, req).await
            }
        }
    }

    pub async fn post(&self, uri: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, uri, Some(&body.to_string())).await
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Value) {
        self.call(Method::GET, uri, None).await
    }

    /// A POST whose answer's headers matter too.
    pub async fn post_with_headers(
        &self,
        uri: &str,
        body: Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let body = body.to_string();
        let (auth, authorization) = match &self.caller {
            None => (Authenticator::none(), None),
            Some((auth, token)) => (auth.clone(), bearer(token)),
        };
        let req = request(Method::POST, uri, authorization.as_deref(), Some(&body));
        send_with_headers(&self.quotas, &auth, req).await
    }
}

/// One request through the real router.
pub async fn call(
    quotas: &Arc<Quotas>,
    method: Method,
    uri: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Body::from(body.unwrap_or_default().to_owned()))
        .expect("request");
    send(quotas, req).await
}

/// A request with this `Authorization` header value (if any) and body.
pub fn request(
    method: Method,
    uri: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> Request<Body> {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = authorization {
        req = req.header("authorization", a);
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    req.body(Body::from(body.unwrap_or_default().to_owned()))
        .expect("request")
}

/// `Bearer <token>`, or no header for an empty token.
pub fn bearer(token: &str) -> Option<String> {
    (!token.is_empty()).then(|| format!("Bearer {token}"))
}

pub async fn send(quotas: &Arc<Quotas>, req: Request<Body>) -> (StatusCode, Value) {
    send_to(quotas, &Authenticator::none(), req).await
}

/// One request through the real router with this authenticator.
pub async fn send_to(
    quotas: &Arc<Quotas>,
    auth: &Arc<Authenticator>,
    req: Request<Body>,
) -> (StatusCode, Value) {
    let (status, _, json) = send_with_headers(quotas, auth, req).await;
    (status, json)
}

/// [`send_to`], with the answer's headers.
pub async fn send_with_headers(
    quotas: &Arc<Quotas>,
    auth: &Arc<Authenticator>,
    req: Request<Body>,
) -> (StatusCode, HeaderMap, Value) {
    let resp = app(quotas.clone(), auth.clone())
        .oneshot(req)
        .await
        .expect("router is infallible");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        panic!(
            "{status}: response is not JSON: {:?}",
            String::from_utf8_lossy(&bytes)
        )
    });
    (status, headers, json)
}

/// Asserts an error answer: status, code, and a non-empty message.
pub fn assert_error(resp: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(resp.0, status, "body: {}", resp.1);
    assert_eq!(resp.1["error"]["code"], code, "body: {}", resp.1);
    let msg = resp.1["error"]["message"].as_str().unwrap_or_default();
    assert!(!msg.is_empty(), "error without a message: {}", resp.1);
}
