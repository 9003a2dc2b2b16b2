//! `bench-load`: puts an exact amount of data into a running quota service
//! for the scale benchmarks of `make bench` (wrk runs for a duration, not a
//! count, so it cannot create exactly N tenants).
//!
//! ```text
//!  bench-load create --tenants N   N x POST /api/quota/increment {"tenant_id":"<prefix>-<n>"}   (creates N flat tenants)
//!  bench-load touch  --tenants N   N/100 x POST /api/v1/usage/batch (100 increments each)      (makes all N dirty)
//! ```
//!
//! Each connection sends `--depth` requests at once (HTTP/1.1 pipelining),
//! then reads their answers; request numbers are handed out from one shared
//! counter, so every number is sent exactly once. Any answer other than 200
//! is counted as an error and makes the exit status non-zero. Prints one
//! JSON line: `{"requests":..,"errors":..,"seconds":..}`.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const USAGE: &str = "usage: bench-load create|touch --addr HOST:PORT --tenants N [--prefix P] [--connections C] [--depth D]";
/// Items per batch request in `touch`.
const BATCH: usize = 100;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Create,
    Touch,
}

struct Args {
    mode: Mode,
    addr: String,
    tenants: usize,
    prefix: String,
    connections: usize,
    depth: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = match it.next().as_deref() {
        Some("create") => Mode::Create,
        Some("touch") => Mode::Touch,
        _ => return Err(USAGE.into()),
    };
    let mut args = Args {
        mode,
        addr: String::new(),
        tenants: 0,
        prefix: "scale".into(),
        connections: 8,
        depth: 32,
    };
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{flag} must be a positive number, got {value:?}"))
        };
        match flag.as_str() {
            "--addr" => args.addr = value.clone(),
            "--tenants" => args.tenants = number()?,
            "--prefix" => args.prefix = value.clone(),
            "--connections" => args.connections = number()?,
            "--depth" => args.depth = number()?,
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if args.addr.is_empty() || args.tenants == 0 {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// Request number `i` of the run, as bytes on the wire.
fn request(args: &Args, i: usize, out: &mut Vec<u8>) {
    let (path, body) = match args.mode {
        Mode::Create => (
            "/api/quota/increment",
            format!(r#"{{"tenant_id":"{}-{i}"}}"#, args.prefix),
        ),
        Mode::Touch => {
            let first = i * BATCH;
            let last = (first + BATCH).min(args.tenants);
            let items: Vec<String> = (first..last)
                .map(|n| format!(r#"{{"id":"{}-{n}","usage":{{"messages":1}}}}"#, args.prefix))
                .collect();
            (
                "/api/v1/usage/batch",
                format!(r#"{{"mode":"increment","items":[{}]}}"#, items.join(",")),
            )
        }
    };
    out.extend_from_slice(
        format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            args.addr,
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
}

/// Reads one response; returns its status code.
async fn read_response(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Result<u16, String> {
    let mut line = String::new();
    if r.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
        return Err("the server closed the connection".into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).await.map_err(|e| e.to_string())?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value
                .trim()
                .parse()
                .map_err(|_| format!("bad content-length {value:?}"))?;
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).await.map_err(|e| e.to_string())?;
    Ok(status)
}

async fn connection(
    args: Arc<Args>,
    next: Arc<AtomicUsize>,
    total: usize,
    errors: Arc<AtomicU64>,
) -> Result<(), String> {
    let stream = TcpStream::connect(&args.addr)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.addr))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::with_capacity(64 * 1024, read);
    let mut buf = Vec::new();
    loop {
        let start = next.fetch_add(args.depth, Ordering::Relaxed);
        if start >= total {
            return Ok(());
        }
        let end = (start + args.depth).min(total);
        buf.clear();
        for i in start..end {
            request(&args, i, &mut buf);
        }
        write.write_all(&buf).await.map_err(|e| e.to_string())?;
        for _ in start..end {
            if read_response(&mut read).await? != 200 {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => Arc::new(a),
        Err(e) => {
            eprintln!("bench-load: {e}");
            return ExitCode::from(2);
        }
    };
    let total = match args.mode {
        Mode::Create => args.tenants,
        Mode::Touch => args.tenants.div_ceil(BATCH),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let result: Result<(), String> = rt.block_on(async {
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| {
                tokio::spawn(connection(
                    args.clone(),
                    next.clone(),
                    total,
                    errors.clone(),
                ))
            })
            .collect();
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    });
    let errors = errors.load(Ordering::Relaxed);
    println!(
        r#"{{"requests":{total},"errors":{errors},"seconds":{:.3}}}"#,
        started.elapsed().as_secs_f64()
    );
    match result {
        Err(e) => {
            eprintln!("bench-load: {e}");
            ExitCode::FAILURE
        }
        Ok(()) if errors > 0 => {
            eprintln!("bench-load: {errors} of {total} requests were not answered 200");
            ExitCode::FAILURE
        }
        Ok(()) => ExitCode::SUCCESS,
    }
}
