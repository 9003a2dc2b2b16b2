#!/usr/bin/env python3
"""Instructions the server spends per request, counted with callgrind: the
measure of a change to the request path that the machine's other tenants
do not disturb (wall-clock figures move by 20 % between runs here).

    bench/instructions.py BIN [BIN ...] [--requests-secs 10] [--scenarios increment,consume] [--keep DIR]

Each BIN is a quota-service binary (say, the release builds of two commits
in two target dirs), optionally with settings: `BIN@RATELIMIT_FIELDS=true`
(several joined with `,`). For each scenario and binary it starts the binary
under `valgrind --tool=callgrind` with one worker thread, creates what the
scenario needs, warms up, zeroes the counts, runs wrk (one thread, 16
connections) with the scenario's script from bench/wrk/, dumps the counts
and divides the total by the requests wrk completed. Prints one markdown
table with each binary's ratio to the first.
"""

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRK = os.path.join(ROOT, "bench", "wrk")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from run import free_port  # noqa: E402  (the runner's helper, not a copy)


def log(msg):
    print(f"instructions: {msg}", file=sys.stderr, flush=True)


def call(url, method="GET", body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def setup_consume(base):
    """root -> mid -> leaf-1, as bench/run.py builds for consume.lua."""
    big = 10**15
    call(f"{base}/api/v1/quotas/bench-root", "PUT", {"limits": {"messages": {"max": big}}})
    call(f"{base}/api/v1/quotas/bench-mid", "PUT", {"parent": "bench-root", "limits": {"messages": {"max": big // 2}}})
    call(f"{base}/api/v1/quotas/bench-leaf-1", "PUT", {"parent": "bench-mid", "limits": {"messages": {"max": big // 4}}})


SETUP = {"increment": lambda base: None, "consume": setup_consume}


def wrk(base, script, secs):
    out = subprocess.run(
        ["wrk", "-t1", "-c16", f"-d{secs}s", "-s", os.path.join(WRK, f"{script}.lua"), base],
        capture_output=True, text=True, check=True,
        env=dict(os.environ, BENCH_TENANT_PREFIX="bench"),
    ).stdout
    m = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"BENCH non2xx=(\d+)", out)
    if not m or not non2xx or int(non2xx.group(1)) != 0:
        raise SystemExit(f"wrk failed or saw non-2xx answers:\n{out}")
    return int(m.group(1))


def measure(spec, scenario, secs, keep=None):
    binary, _, settings = spec.partition("@")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = dict(
            PATH=os.environ.get("PATH", ""),
            QUOTA_HOST="127.0.0.1",
            QUOTA_PORT=str(port),
            QUOTA_DATA_DIR=os.path.join(tmp, "data"),
            PERSISTENCE_INTERVAL_SECS="3600",
            LOG_LEVEL="warn",
            DEFAULT_MESSAGE_LIMIT="100000000000",
            TOKIO_WORKER_THREADS="1",
        )
        env.update(kv.split("=", 1) for kv in settings.split(",") if kv)
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary],
            env=env, stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "log"), "w"),
        )
        try:
            deadline = time.time() + 120
            while True:
                try:
                    if call(f"{base}/ready") == 200:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    raise SystemExit(f"{binary} did not become ready:\n" + open(os.path.join(tmp, "log")).read())
                time.sleep(0.5)
            SETUP[scenario](base)
            wrk(base, scenario, 3)  # warm up: first calls, thread-locals, allocator
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            requests = wrk(base, scenario, secs)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            dumps = sorted(glob.glob(out + ".*"), key=os.path.getmtime)
            if not dumps:
                raise SystemExit("callgrind wrote no dump")
            if keep:
                os.makedirs(keep, exist_ok=True)
                name = f"{scenario}-{os.path.basename(binary)}{settings.replace('=', '-').replace(',', '-')}.callgrind"
                subprocess.run(["cp", dumps[-1], os.path.join(keep, name)], check=True)
            with open(dumps[-1]) as f:
                total = next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
            return total / requests, requests
        finally:
            proc.terminate()
            proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--requests-secs", type=int, default=10)
    ap.add_argument("--scenarios", default="increment,consume")
    ap.add_argument("--keep", help="copy each run's callgrind dump here (for callgrind_annotate)")
    args = ap.parse_args()
    rows = []
    for scenario in args.scenarios.split(","):
        first = None
        for binary in args.binaries:
            per_request, requests = measure(binary, scenario, args.requests_secs, args.keep)
            first = first or per_request
            log(f"{scenario} {binary}: {per_request:,.0f} instructions per request ({requests} requests)")
            rows.append((scenario, binary, per_request, per_request / first, requests))
    print("| scenario | binary | instructions per request | ratio to the first | requests |")
    print("|---|---|---|---|---|")
    for scenario, binary, per_request, ratio, requests in rows:
        print(f"| {scenario} | `{binary}` | {per_request:,.0f} | {ratio:.3f} | {requests} |")


if __name__ == "__main__":
    main()
