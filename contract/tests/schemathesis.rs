//! schemathesis against the release binary, from the committed OpenAPI
//! document as the service serves it: every check (all are on by default), every
//! phase (the document's examples, coverage of its boundaries, fuzzing,
//! stateful sequences along its links), bounded by examples per operation
//! and by time. Zero failures; `openapi/schemathesis.toml` holds the few
//! changed expectations, each with its reason.

// Test helpers: a failure here is the test's failure, named by the message.
#![allow(clippy::expect_used)]

use std::process::Command;

use contract::{ADMIN_TOKEN, Service, python_tools};

/// Examples per operation and phase, and the run's time budget (seconds).
const MAX_EXAMPLES: &str = "25";
const MAX_TIME_SECS: &str = "150";

#[test]
fn schemathesis_finds_nothing() {
    let tools = python_tools();
    let service = Service::start();
    let report = service.dir.path().join("report");
    let out = Command::new(tools.join("st"))
        .current_dir(service.dir.path())
        .arg("--config-file")
        .arg(testenv::repo_root().join("openapi/schemathesis.toml"))
        .arg("--no-color")
        .arg("run")
        .arg(format!("{}/openapi.json", service.url))
        .args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")])
        // Every check is on by default (max_response_time aside, which needs
        // a limit); `--checks all` is not passed because a check named on
        // the command line overrides the one per-operation exclusion in
        // schemathesis.toml (ChecksConfig.from_hierarchy).
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--max-time", MAX_TIME_SECS])
        // One worker: with two threads, hypothesis' lambda descriptions call
        // `ast.parse` concurrently, which CPython 3.11 can fail with
        // "SystemError: AST constructor recursion depth mismatch" (seen in
        // CI as a schemathesis Runtime Error).
        .args(["--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["--report", "junit"])
        .arg("--report-dir")
        .arg(&report)
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary = stdout
        .find("SUMMARY")
        .map(|at| &stdout[at..])
        .unwrap_or(&stdout);
    println!("{summary}");
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}\nservice log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        service.log()
    );
    // It ran: every operation of the document was tested, apart from the
    // one schemathesis loads the document from. It leaves that operation
    // out by design (`_serves_schema_document`); `service/tests/it/openapi.rs`
    // checks that it serves the committed document, without a token.
    // The stateful phase is one more test case of the report.
    let schema_operation = "GET /openapi.json".to_string();
    let mut expected: Vec<String> = contract::documented_operations()
        .into_iter()
        .filter(|label| *label != schema_operation)
        .chain(["Stateful tests".to_string()])
        .collect();
    expected.sort();
    assert_eq!(tested_operations(&report), expected, "{summary}");
}

/// The operations the JUnit report has a test case for, sorted.
fn tested_operations(report_dir: &std::path::Path) -> Vec<String> {
    let mut labels = Vec::new();
    for entry in std::fs::read_dir(report_dir).expect("read the report dir") {
        let path = entry.expect("report entry").path();
        let xml = std::fs::read_to_string(&path).expect("read the JUnit report");
        for case in xml.split("<testcase name=\"").skip(1) {
            if let Some(end) = case.find('"') {
                labels.push(case[..end].to_string());
            }
        }
    }
    labels.sort();
    labels.dedup();
    labels
}
