//! The real `quota-service` binary as a child process.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

pub struct ServiceProcess {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl ServiceProcess {
    /// Starts the binary on `data_dir` and waits until it listens and
    /// `/health` answers. A port taken between `free_port` and the bind (by
    /// a test running beside this one) is retried on another port: without
    /// the check, `/health` could be answered by that other process.
    pub async fn start(data_dir: &Path, env: &[(&str, &str)]) -> Self {
        for _ in 0..5 {
            let port = free_port();
            let log = data_dir.with_extension(format!("{port}.log"));
            let log_file = std::fs::File::create(&log).expect("log file");
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_quota-service"));
            cmd.env_clear()
                .env("QUOTA_HOST", "127.0.0.1")
                .env("QUOTA_PORT", port.to_string())
                .env("QUOTA_DATA_DIR", data_dir)
                .env("DATABASE_URL", super::database_url(data_dir))
                .env("LOG_LEVEL", "info")
                .stdout(Stdio::null())
                .stderr(log_file)
                .kill_on_drop(true);
            for (k, v) in env {
                cmd.env(k, v);
            }
            let child = cmd.spawn().expect("spawn quota-service");
            let mut p = ServiceProcess {
                child,
                base: format!("http://127.0.0.1:{port}"),
                log,
            };
            if p.wait_healthy(port).await {
                return p;
            }
        }
        panic!("quota-service could not get a free port in 5 tries");
    }

    /// True once this process logs that it listens on `port` and `/health`
    /// answers; false if it exited because the port was taken. Any other
    /// exit or a timeout fails the test with the log.
    async fn wait_healthy(&mut self, port: u16) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        let listening = format!(":{port}");
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log_text();
                if log.contains("cannot listen") {
                    return false;
                }
                panic!("quota-service exited ({status}) before it was healthy; log:\n{log}");
            }
            let ours = self
                .log_text()
                .lines()
                .any(|l| l.contains("listening") && l.contains(&listening));
            if ours {
                let resp = client.get(format!("{}/health", self.base)).send().await;
                if resp.is_ok_and(|r| r.status().is_success()) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "quota-service did not become healthy; log:\n{}",
            self.log_text()
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: Signal) {
        let pid = self.child.id().expect("running child") as i32;
        kill(Pid::from_raw(pid), sig).expect("kill");
    }

    /// SIGTERM, then waits for the exit; returns whether it exited 0.
    pub async fn terminate(self) -> (bool, String) {
        self.stop_with(Signal::SIGTERM).await
    }

    /// Sends `sig`, then waits for the exit; returns whether it exited 0.
    pub async fn stop_with(mut self, sig: Signal) -> (bool, String) {
        self.signal(sig);
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("service stops within 30 s of the signal")
            .expect("wait");
        (status.success(), self.log_text())
    }

    /// SIGKILL: the process dies at once, no flush.
    pub async fn kill9(mut self) {
        self.signal(Signal::SIGKILL);
        let _ = self.child.wait().await;
    }
}
