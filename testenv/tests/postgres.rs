//! The PostgreSQL test server starts, answers SQL, and is shared by the tests
//! of one binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn a_real_postgres_answers() {
    let url = testenv::postgres();
    assert!(
        url.starts_with("postgres://postgres@127.0.0.1:") && url.ends_with("/quota"),
        "{url}"
    );
    assert_eq!(testenv::postgres(), url, "one server per test binary");
    let out = Command::new("psql")
        .args([
            url,
            "-tAc",
            "select current_database(), current_setting('server_version_num')::int >= 150000",
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "quota|t");
}
