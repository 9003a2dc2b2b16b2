//! Writes the OpenAPI document of the quota service's API (the one
//! `GET /openapi.json` answers) to a file, default
//! `openapi/edge-quota.json`; `--check` compares instead of writing and
//! fails when the file is stale. `make generate` runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use quota_service::openapi;

fn main() -> ExitCode {
    let mut check = false;
    let mut path = PathBuf::from(openapi::COMMITTED_PATH);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!(
                    "usage: openapigen [--check] [FILE]   (default FILE: {})",
                    openapi::COMMITTED_PATH
                );
                return ExitCode::SUCCESS;
            }
            other => path = PathBuf::from(other),
        }
    }
    let json = openapi::to_json(&openapi::document());
    if check {
        if std::fs::read_to_string(&path).ok().as_deref() == Some(json.as_str()) {
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "openapigen: {} is stale; run `make generate`",
            path.display()
        );
        return ExitCode::FAILURE;
    }
    let written = match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &json)),
        None => std::fs::write(&path, &json),
    };
    match written {
        Ok(()) => {
            println!("openapigen: wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("openapigen: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
