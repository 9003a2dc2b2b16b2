//! The outage server keeps what it acknowledged: its `stop` is a crash
//! (immediate shutdown), so it runs with fsync and synchronous commits on;
//! a row committed just before the stop is there after the start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Runs one statement through psql against `url`; its output, trimmed.
fn psql(url: &str, sql: &str) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed by hack/postgres.sh")
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.exists())
        .expect("psql");
    let out = Command::new(bin)
        .args([url, "-XAtqc", sql])
        .output()
        .expect("run psql");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn an_outage_server_keeps_every_acknowledged_commit_across_its_crash() {
    let server = testenv::PostgresServer::start("durable");
    for setting in ["fsync", "synchronous_commit", "full_page_writes"] {
        assert_eq!(
            psql(&server.url, &format!("SHOW {setting}")),
            "on",
            "{setting}"
        );
    }
    psql(&server.url, "CREATE TABLE t (n int)");
    for round in 0..5 {
        psql(&server.url, &format!("INSERT INTO t VALUES ({round})"));
        server.stop();
        server.restart();
        assert_eq!(
            psql(&server.url, "SELECT count(*) FROM t"),
            (round + 1).to_string(),
            "round {round}"
        );
    }
    assert_eq!(
        psql(&server.url, "SHOW synchronous_commit"),
        "on",
        "after a restart too"
    );
}
