#!/usr/bin/env python3
"""`make bench`: HTTP load on loopback against release builds, as ratios to
the baseline server measured in the same run.

    bench/run.py [--duration SECS] [--rounds N] [--connections 16,64,256] [--scenarios ...] [--scale N] [--stores sqlite,postgres] [--operator TQS,QAS] [--out FILE]

For each configuration it starts the server (the baseline `bench-baseline`
or `quota-service`), runs wrk with a Lua script that builds its request once
per thread, and records requests/s, p50/p99 latency and the server's own CPU
time per request (utime + stime from /proc/<pid>/stat before and after the
run). Each configuration runs twice: unpinned (server with its default
worker threads, wrk -t2) and pinned (server on CPU 0 with one worker thread,
wrk -t1 on CPU 1). After every run the server's counters are checked against
the requests wrk counted: a run that lost or invented increments fails.

The machine is shared, so a figure of one run against the baseline's run a
minute earlier can be off by 20%. At the targets' connection count (64) the
whole plan runs `--rounds` times, baseline and services alternating; each
ratio is taken against the baseline of the same round and the table shows
the median ratio of the rounds (and the median of each figure).

Writes a markdown table to --out (default: bench/results/latest.md) and
prints it.
"""

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import statistics
from dataclasses import dataclass, field, replace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get(
    "CARGO_TARGET_DIR", os.path.expanduser("~/.cache/edge-quota/target")
)
RELEASE = os.path.join(TARGET, "release")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def http_json(url, body=None, timeout=10, token=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    if data is not None:
        req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def wait_listening(port, proc, name, within=60):
    deadline = time.time() + within
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"bench: {name} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"bench: {name} did not listen on {port} within {within}s")


# === servers ===


class Server:
    """A server process under test; `counted(prefix)` sums what it counted."""

    name = ""
    # The bearer token of the setup and the read-backs (an admin), and the
    # one wrk sends (a reporter of the run's nodes); None: no access control.
    token = None
    client_token = None

    def __init__(self, pinned):
        self.pinned = pinned
        self.port = free_port()
        self.proc = None
        self.tmp = tempfile.mkdtemp(prefix="edge-quota-bench-")

    def command(self):
        raise NotImplementedError

    def env(self):
        env = dict(os.environ)
        if self.pinned:
            env["TOKIO_WORKER_THREADS"] = "1"
        return env

    def start(self, within=60):
        cmd = self.command()
        if self.pinned:
            cmd = ["taskset", "-c", "0"] + cmd
        self.log = open(os.path.join(self.tmp, "server.log"), "a")
        self.proc = subprocess.Popen(cmd, env=self.env(), stdout=self.log, stderr=self.log)
        wait_listening(self.port, self.proc, self.name, within)
        return self

    def stop(self, keep_data=False, within=30):
        """Stops gracefully (SIGINT: both servers drain and the quota service
        flushes); removes the server's files unless `keep_data`."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(2)
            try:
                self.proc.wait(within)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if not keep_data:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def log_event(self, message):
        """The fields of the last JSON log line with this message, or None."""
        found = None
        with open(os.path.join(self.tmp, "server.log")) as f:
            for line in f:
                try:
                    fields = json.loads(line).get("fields", {})
                except ValueError:
                    continue
                if fields.get("message") == message:
                    found = fields
        return found

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise SystemExit("bench: no VmRSS in /proc/<pid>/status")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def counted(self, prefix, threads):
        """What the server counted for the run's tenants (one per wrk thread);
        both servers answer GET /api/quota/{tenant_id} with message_count."""
        return sum(
            http_json(self.url(f"/api/quota/{prefix}-{t}"), token=self.token)["message_count"]
            for t in range(1, threads + 1)
        )


class Baseline(Server):
    name = "baseline"

    def command(self):
        return [os.path.join(RELEASE, "bench-baseline")]

    def env(self):
        env = super().env()
        env["BASELINE_ADDR"] = f"127.0.0.1:{self.port}"
        return env

class QuotaService(Server):
    name = "quota-service"

    def __init__(self, pinned, flush_secs=3600, database_url=None, log_json=False, auth=None):
        super().__init__(pinned)
        self.flush_secs = flush_secs
        self.database_url = database_url
        self.log_json = log_json
        self.auth = auth

        store = "PostgreSQL" if database_url else "SQLite"
        if flush_secs < 3600:
            self.name = f"quota-service ({store}, flush every {flush_secs} s)"
        if auth:
            self.name = f"quota-service (auth {auth.mode})"
            self.token, self.client_token = auth.admin_token, auth.client_token

    def command(self):
        return [os.path.join(RELEASE, "quota-service")]

    def env(self):
        env = super().env()
        env.update(
            QUOTA_HOST="127.0.0.1",
            QUOTA_PORT=str(self.port),
            QUOTA_DATA_DIR=os.path.join(self.tmp, "data"),
            PERSISTENCE_INTERVAL_SECS=str(self.flush_secs),
            LOG_LEVEL="warn",
            DEFAULT_MESSAGE_LIMIT="100000000000",
        )
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.auth:
            env.update(self.auth.env(self.tmp))
        if self.log_json:
            env.update(LOG_LEVEL="info", LOG_FORMAT="json")
        return env


# === access control ===


class StaticAuth:
    """AUTH_MODE=static: a tokens file with an admin (in AUTH_ADMINS) for
    the setup and a reporter for the load."""

    mode = "static"
    admin_token = "bench-admin-token-0123456789"
    client_token = "bench-client-token-0123456789"
    client_subject = "bench-client"

    def env(self, tmp):
        path = os.path.join(tmp, "tokens.yaml")
        with open(path, "w") as f:
            f.write(
                f"- token: {self.admin_token}\n  subject: bench-admin\n"
                f"- token: {self.client_token}\n  subject: {self.client_subject}\n  groups: [bench]\n"
            )
        return {"AUTH_MODE": "static", "AUTH_TOKENS_FILE": path, "AUTH_ADMINS": "bench-admin"}


class KubernetesAuth:
    """AUTH_MODE=kubernetes against the test API server: ServiceAccount
    tokens of the service's audience (TokenRequest), checked with
    TokenReview; the cache is warm during the measured run."""

    mode = "kubernetes"

    def __init__(self, cluster):
        self.cluster = cluster
        ns = "bench-auth"
        cluster.kubectl("create", "namespace", ns)
        for sa in ("bench-admin", "bench-client"):
            cluster.kubectl("create", "serviceaccount", sa, "-n", ns)
        token = lambda sa: cluster.kubectl(
            "create", "token", sa, "-n", ns, "--duration=1h", "--audience=edge-quota"
        ).strip()
        self.admin_token, self.client_token = token("bench-admin"), token("bench-client")
        self.admin_subject = f"system:serviceaccount:{ns}:bench-admin"
        self.client_subject = f"system:serviceaccount:{ns}:bench-client"

    def env(self, tmp):
        return {
            "AUTH_MODE": "kubernetes",
            "AUTH_AUDIENCE": "edge-quota",
            "AUTH_ADMINS": self.admin_subject,
            "KUBECONFIG": self.cluster.kubeconfig,
        }


def grant_reporter(server, node_id):
    """Makes wrk's identity a reporter of `node_id` (and its subtree)."""
    if server.client_token:
        http_json(
            server.url(f"/api/v1/quotas/{node_id}/permissions/grant"),
            {"subject": server.auth.client_subject, "role": "reporter"},
            token=server.token,
        )


# === scenarios ===


def http_put(url, body, token=None):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT")
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def node_used(server, node_id):
    return http_json(server.url(f"/api/v1/quotas/{node_id}"), token=server.token)["resources"]["messages"]["used"]


BIG = 10**15  # limits no run can reach


class Scenario:
    """What wrk sends (`script`), what must exist first (`setup`), and how to
    read back what the server counted (`counted`, `per_request` units)."""

    name = ""
    script = ""
    per_request = 1

    def setup(self, server, prefix, threads):
        pass

    def counted(self, server, prefix, threads):
        return server.counted(prefix, threads)


class Increment(Scenario):
    name, script = "increment", "increment.lua"

    def setup(self, server, prefix, threads):
        # With access control only an admin creates a tenant: the setup does
        # (counting nothing), and wrk's identity reports to it.
        if server.client_token:
            for t in range(1, threads + 1):
                tenant = f"{prefix}-{t}"
                http_json(server.url("/api/quota/increment"), {"tenant_id": tenant, "message_count": 0}, token=server.token)
                grant_reporter(server, tenant)


class Check(Scenario):
    name, script, per_request = "check", "check.lua", 0

    def setup(self, server, prefix, threads):
        for t in range(1, threads + 1):
            http_json(server.url("/api/quota/limits"), {"tenant_id": f"{prefix}-{t}", "message_limit": BIG}, token=server.token)
            grant_reporter(server, f"{prefix}-{t}")


class Consume(Scenario):
    name, script = "consume (3 levels)", "consume.lua"

    def setup(self, server, prefix, threads):
        root, mid = f"{prefix}-root", f"{prefix}-mid"
        lim = {"messages": {"max": BIG, "window": "day"}}
        http_put(server.url(f"/api/v1/quotas/{root}"), {"limits": lim}, token=server.token)
        http_put(server.url(f"/api/v1/quotas/{mid}"), {"parent": root, "limits": {"messages": {"max": BIG // 2}}}, token=server.token)
        for t in range(1, threads + 1):
            http_put(
                server.url(f"/api/v1/quotas/{prefix}-leaf-{t}"),
                {"parent": mid, "limits": {"messages": {"max": BIG // 8}}},
                token=server.token,
            )
        # Granted at the root: every consume walks three levels for it.
        grant_reporter(server, root)

    def counted(self, server, prefix, threads):
        return sum(node_used(server, f"{prefix}-leaf-{t}") for t in range(1, threads + 1))


class Batch(Scenario):
    name, script, per_request = "batch (100 items)", "batch.lua", 100

    def setup(self, server, prefix, threads):
        for t in range(1, threads + 1):
            for i in range(100):
                http_put(
                    server.url(f"/api/v1/quotas/{prefix}-b{t}-{i}"),
                    {"limits": {"messages": {"max": BIG, "window": "day"}}},
                    token=server.token,
                )
                grant_reporter(server, f"{prefix}-b{t}-{i}")

    def counted(self, server, prefix, threads):
        return sum(
            node_used(server, f"{prefix}-b{t}-{i}") for t in range(1, threads + 1) for i in range(100)
        )


# === wrk ===


@dataclass
class Result:
    server: str
    scenario: str
    connections: int
    pinned: bool
    requests: int = 0
    seconds: float = 0.0
    rps: float = 0.0
    p50_us: float = 0.0
    p99_us: float = 0.0
    cpu_us_per_req: float = 0.0
    increments_per_s: float = 0.0
    counted: int = 0
    checks: list = field(default_factory=list)
    round: int = 0
    # Ratios to the reference run of the same round (the baseline; for the
    # persistence runs, the quota service without flushes).
    rps_ratio: float = 0.0
    p99_ratio: float = 0.0
    cpu_ratio: float = 0.0
    rounds: int = 1
    # Share of the run the service spent flushing (its
    # edge_quota_flush_seconds_total over the run's seconds): a bound on
    # what the flush costs that no other tenant of the machine disturbs.
    flush_share: float = 0.0
    # TokenReviews the service sent during the measured run (kubernetes
    # mode): bounded by the distinct tokens, never by the requests.
    reviews: float = 0.0


def with_ratios(results, reference):
    """Sets each result's ratios to `reference(r)`, a run of the same round
    (or None)."""
    for r in results:
        ref = reference(r)
        if ref and ref.rps and ref.p99_us and ref.cpu_us_per_req:
            r.rps_ratio = r.rps / ref.rps
            r.p99_ratio = r.p99_us / ref.p99_us
            r.cpu_ratio = r.cpu_us_per_req / ref.cpu_us_per_req
    return results


def medians(results):
    """One row per (scenario, server, connections, pinned): the median of
    each figure and ratio over its rounds, in first-seen order."""
    groups = {}
    for r in results:
        groups.setdefault((r.scenario, r.server, r.connections, r.pinned), []).append(r)
    rows = []
    for runs in groups.values():
        med = lambda f: statistics.median(getattr(x, f) for x in runs)
        rows.append(
            replace(
                runs[0],
                rps=med("rps"),
                increments_per_s=med("increments_per_s"),
                p50_us=med("p50_us"),
                p99_us=med("p99_us"),
                cpu_us_per_req=med("cpu_us_per_req"),
                rps_ratio=med("rps_ratio"),
                p99_ratio=med("p99_ratio"),
                cpu_ratio=med("cpu_ratio"),
                flush_share=med("flush_share"),
                reviews=max(x.reviews for x in runs),
                checks=[c for x in runs for c in x.checks],
                rounds=len(runs),
            )
        )
    return rows


def parse_latency(text):
    """wrk's latency ("456.00us", "1.23ms", "1.02s") in microseconds."""
    for unit, scale in (("us", 1.0), ("ms", 1e3), ("s", 1e6), ("m", 60e6)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    raise ValueError(f"unknown latency {text!r}")


def run_wrk(server, script, connections, duration, prefix):
    threads = 1 if server.pinned else 2
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        os.path.join(ROOT, "bench", "wrk", script),
        server.url(""),
    ]
    if server.pinned:
        cmd = ["taskset", "-c", "1"] + cmd
    env = dict(os.environ, BENCH_TENANT_PREFIX=prefix, BENCH_TOKEN=server.client_token or "")
    before = cpu_seconds(server.proc.pid)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    after = cpu_seconds(server.proc.pid)
    m = re.search(r"(\d+) requests in ([\d.]+)(ms|s|m)", out)
    if not m:
        raise SystemExit(f"bench: cannot read wrk's output:\n{out}")
    secs = float(m.group(2)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(3)]
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    non2xx = int(re.search(r"BENCH non2xx=(\d+)", out).group(1))
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": int(m.group(1)),
        "seconds": secs,
        "p50_us": parse_latency(lat["50"]),
        "p99_us": parse_latency(lat["99"]),
        "cpu": after - before,
        "non2xx": non2xx,
        "socket_errors": errors.group(1) if errors else "",
        "threads": threads,
        "raw": out,
    }


def measure(make_server, scenario, connections, pinned, duration):
    server = make_server(pinned).start()
    threads = 1 if pinned else 2
    try:
        prefix = f"b{os.getpid()}c{connections}{'p' if pinned else 'u'}"
        scenario.setup(server, prefix + "w", threads)
        scenario.setup(server, prefix, threads)
        # Warm-up: connections, allocator, the nodes' first use.
        run_wrk(server, scenario.script, connections, 1, prefix + "w")
        flushing = getattr(server, "flush_secs", 3600) < 3600
        flushed_before = metric(server, "edge_quota_flush_seconds_total") if flushing else 0.0
        authed = getattr(server, "auth", None) is not None
        reviews_before = metric(server, "edge_quota_auth_token_reviews_total") if authed else 0.0
        w = run_wrk(server, scenario.script, connections, duration, prefix)
        flushed = metric(server, "edge_quota_flush_seconds_total") - flushed_before if flushing else 0.0
        reviews = metric(server, "edge_quota_auth_token_reviews_total") - reviews_before if authed else 0.0
        r = Result(server.name, scenario.name, connections, pinned)
        r.requests = w["requests"]
        r.seconds = w["seconds"]
        r.rps = w["requests"] / w["seconds"]
        r.increments_per_s = r.rps * scenario.per_request
        r.p50_us, r.p99_us = w["p50_us"], w["p99_us"]
        r.cpu_us_per_req = w["cpu"] / max(w["requests"], 1) * 1e6
        r.flush_share = flushed / w["seconds"]
        r.reviews = reviews
        if reviews > 1:
            r.checks.append(f"{reviews:.0f} TokenReviews for one token")
        r.counted = scenario.counted(server, prefix, threads)
        # wrk counts completed responses; requests in flight when it stops
        # may be counted by the server without wrk seeing the answer.
        n = scenario.per_request
        if w["non2xx"]:
            r.checks.append(f"{w['non2xx']} non-2xx answers")
        if w["socket_errors"]:
            r.checks.append(f"socket errors: {w['socket_errors']}")
        if not (r.requests * n <= r.counted <= (r.requests + connections) * n):
            r.checks.append(f"server counted {r.counted}, wrk {r.requests} x {n}")
        return r
    finally:
        server.stop()


# === PostgreSQL ===


class Postgres:
    """A PostgreSQL server of the run's own (hack/postgres.sh), one database
    per use."""

    def __init__(self):
        self.name = f"bench-{os.getpid()}"
        out = subprocess.run(
            [os.path.join(ROOT, "hack", "postgres.sh"), "up", "--name", self.name, "--owner-pid", str(os.getpid())],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"bench: cannot start PostgreSQL:\n{out.stderr}")
        line = out.stdout.strip().splitlines()[-1]
        if not line.startswith("DATABASE_URL="):
            raise SystemExit(f"bench: hack/postgres.sh printed {line!r}")
        self.base = line.split("=", 1)[1]
        self.count = 0

    def new_database(self):
        self.count += 1
        name = f"bench_{self.count}"
        subprocess.run(["psql", self.base, "-qc", f"CREATE DATABASE {name}"], check=True, capture_output=True)
        return self.base.rsplit("/", 1)[0] + "/" + name

    def down(self):
        subprocess.run([os.path.join(ROOT, "hack", "postgres.sh"), "down", "--name", self.name], capture_output=True)


# === scale: 1,000,000 tenants ===


def bench_load(server, mode, tenants, prefix):
    out = subprocess.run(
        [os.path.join(RELEASE, "bench-load"), mode, "--addr", f"127.0.0.1:{server.port}",
         "--tenants", str(tenants), "--prefix", prefix],
        capture_output=True, text=True,
    )
    if out.returncode != 0:
        raise SystemExit(f"bench: bench-load {mode} failed: {out.stderr.strip()}")
    return json.loads(out.stdout)


def metric(server, name):
    with urllib.request.urlopen(server.url("/metrics"), timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise SystemExit(f"bench: /metrics has no {name}")


def scale(store, database_url, n):
    """Creates n flat tenants (one increment each), stops (the first flush
    writes n new tenants), starts again (load time, RSS with n resident),
    increments every tenant once more through the batch endpoint and stops
    (one flush of n dirty counters). Every count is checked."""
    r = {"store": store, "tenants": n, "checks": []}
    prefix = "scale"
    server = QuotaService(False, database_url=database_url, log_json=True).start()
    try:
        load = bench_load(server, "create", n, prefix)
        r["create_s"] = load["seconds"]
        r["rss_after_create_mib"] = server.rss_mib()
        log(f"scale {store}: {n:,} tenants created in {load['seconds']:.1f} s; flushing them (first flush)")
        server.stop(keep_data=True, within=600)
        first = server.log_event("final flush done") or {}
        r["first_flush_s"] = first.get("elapsed_ms", 0) / 1000
        if first.get("new_tenants") != n or first.get("usage_rows") != n:
            r["checks"].append(f"first flush wrote {first}")

        started = time.time()
        server.start(within=300)
        r["startup_wall_s"] = time.time() - started
        loaded = server.log_event("state loaded") or {}
        r["load_s"] = loaded.get("elapsed_ms", 0) / 1000
        if loaded.get("tenants") != n:
            r["checks"].append(f"startup loaded {loaded.get('tenants')} tenants")
        time.sleep(1)
        r["rss_loaded_mib"] = server.rss_mib()
        log(f"scale {store}: loaded in {r['load_s']:.2f} s, RSS {r['rss_loaded_mib']:.0f} MiB; touching every tenant")

        touch = bench_load(server, "touch", n, prefix)
        r["touch_increments_per_s"] = n / touch["seconds"]
        for probe in (0, n // 2, n - 1):
            got = http_json(server.url(f"/api/quota/{prefix}-{probe}"))["message_count"]
            if got != 2:
                r["checks"].append(f"{prefix}-{probe} counted {got}, expected 2")
        server.stop(keep_data=True, within=600)
        dirty = server.log_event("final flush done") or {}
        r["dirty_flush_s"] = dirty.get("elapsed_ms", 0) / 1000
        # SQLite: copying the WAL into the database file, after the flush
        # released its lock (PostgreSQL: 0).
        r["checkpoint_s"] = dirty.get("checkpoint_ms", 0) / 1000
        if dirty.get("usage_rows") != n or dirty.get("new_tenants") != 0:
            r["checks"].append(f"dirty flush wrote {dirty}")
        log(f"scale {store}: flush of {n:,} dirty counters {r['dirty_flush_s']:.2f} s; {'; '.join(r['checks']) or 'counts exact'}")
    finally:
        server.stop()
    return r


def scale_table(rows):
    out = [
        "| store | tenants | create (pipelined increments) | RSS created | first flush (all new) | startup load | RSS loaded | batch increments/s | flush of all dirty | WAL checkpoint after it | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['store']} | {r['tenants']:,} | {r['create_s']:.1f} s | {r['rss_after_create_mib']:.0f} MiB | {r['first_flush_s']:.2f} s "
            f"| {r['load_s']:.2f} s | {r['rss_loaded_mib']:.0f} MiB | {r['touch_increments_per_s']:,.0f} "
            f"| {r['dirty_flush_s']:.2f} s | {r['checkpoint_s']:.2f} s | {'; '.join(r['checks']) or 'exact'} |"
        )
    return "\n".join(out)


# === operator scale: 1,000 TenantQuotas + 5,000 QuotaAllocations ===


class Cluster:
    """The test API server + etcd (hack/cluster.sh, binaries from
    hack/test-env.sh), stopped with the run."""

    def __init__(self):
        self.name = f"bench-{os.getpid()}"
        check = subprocess.run([os.path.join(ROOT, "hack", "test-env.sh"), "--check"], capture_output=True, text=True)
        if check.returncode != 0:
            raise SystemExit(f"bench: test environment missing (make test-env):\n{check.stderr}")
        self.bin_dir = check.stdout.strip().splitlines()[-1]
        up = subprocess.run(
            [os.path.join(ROOT, "hack", "cluster.sh"), "up", "--name", self.name, "--owner-pid", str(os.getpid())],
            capture_output=True, text=True, env=dict(os.environ, EDGE_QUOTA_TEST_ENV_DIR=self.bin_dir),
        )
        line = up.stdout.strip().splitlines()[-1] if up.stdout.strip() else ""
        if up.returncode != 0 or not line.startswith("export KUBECONFIG="):
            raise SystemExit(f"bench: hack/cluster.sh up failed:\n{up.stderr}")
        self.kubeconfig = line.split("=", 1)[1]

    def kubectl(self, *args, stdin=None, check=True):
        out = subprocess.run(
            [os.path.join(self.bin_dir, "kubectl"), "--kubeconfig", self.kubeconfig, *args],
            input=stdin, capture_output=True, text=True,
        )
        if check and out.returncode != 0:
            raise SystemExit(f"bench: kubectl {' '.join(args[:3])} failed:\n{out.stderr[-2000:]}")
        return out.stdout

    def connect(self, timeout=60):
        """An HTTPS connection to the API server as the admin user (the
        certificates hack/cluster.sh wrote next to the kubeconfig)."""
        import http.client
        import ssl

        if not hasattr(self, "_tls"):
            # Published only once complete: threads connect at once, and one
            # that saw a context before its certificate was loaded went in
            # as system:anonymous (403s in the request-cost runs).
            pki = os.path.join(os.path.dirname(self.kubeconfig), "pki")
            tls = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
            tls.load_cert_chain(os.path.join(pki, "admin.crt"), os.path.join(pki, "admin.key"))
            self._tls = tls
            with open(self.kubeconfig) as f:
                self._host = re.search(r"server: https://(\S+)", f.read()).group(1)
        return http.client.HTTPSConnection(self._host, context=self._tls, timeout=timeout)

    def pids(self):
        """The pids of etcd and kube-apiserver (hack/cluster.sh's pid files)."""
        out = {}
        for name in ("etcd", "kube-apiserver"):
            with open(os.path.join(os.path.dirname(self.kubeconfig), f"{name}.pid")) as f:
                out[name] = int(f.read().strip())
        return out

    def down(self):
        subprocess.run([os.path.join(ROOT, "hack", "cluster.sh"), "down", "--name", self.name], capture_output=True)


PARALLEL = 48
# The CRDs' group and version on the API server.
QUOTA_API = "/apis/quota.edgepolicy.io/v1alpha1"


class SyncedWatch:
    """Which objects of one kind say `Synced=True`, kept current by a watch
    on the API server (a list, then its events; listed again when the
    server ends the watch). Polling with `kubectl get -A` instead cost two
    CPU seconds per round at 6,000 objects (kubectl decoding every object,
    the API server encoding them) on the same two cores as the operator,
    and only saw a change a round later."""

    def __init__(self, cluster, plural):
        import threading

        self.cluster = cluster
        self.plural = plural
        self.synced = {}
        self.changed_at = time.time()
        self.lock = threading.Lock()
        self.stopped = False
        self.error = None
        threading.Thread(target=self.run, daemon=True).start()

    @staticmethod
    def is_synced(obj):
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Synced" and c.get("status") == "True" for c in conditions)

    def get(self, path):
        conn = self.cluster.connect(timeout=600)
        conn.request("GET", f"{QUOTA_API}/{self.plural}{path}")
        resp = conn.getresponse()
        if resp.status != 200:
            raise RuntimeError(f"GET {self.plural}{path}: {resp.status} {resp.read()[:300]!r}")
        return conn, resp

    def run(self):
        failures = 0
        while not self.stopped:
            try:
                self.list_and_watch()
                failures = 0
            except Exception as e:  # e.g. 429 while the CRD's storage starts
                failures += 1
                if failures >= 60:
                    self.error = e
                    return
                time.sleep(0.5)

    def list_and_watch(self):
        conn, resp = self.get("")
        listed = json.loads(resp.read())
        conn.close()
        with self.lock:
            self.synced = {o["metadata"]["uid"]: self.is_synced(o) for o in listed["items"]}
            self.changed_at = time.time()
        version = listed["metadata"]["resourceVersion"]
        conn, resp = self.get(f"?watch=1&allowWatchBookmarks=true&resourceVersion={version}")
        for line in resp:
            event = json.loads(line)
            obj = event["object"]
            if event["type"] == "ERROR":
                break  # e.g. 410 Gone: list again
            if event["type"] == "BOOKMARK":
                continue
            with self.lock:
                if event["type"] == "DELETED":
                    self.synced.pop(obj["metadata"]["uid"], None)
                else:
                    self.synced[obj["metadata"]["uid"]] = self.is_synced(obj)
                self.changed_at = time.time()
        conn.close()

    def count(self):
        """(objects Synced, when that last changed)."""
        if self.error:
            raise SystemExit(f"bench: watching {self.plural} failed: {self.error}")
        with self.lock:
            return sum(self.synced.values()), self.changed_at

    def stop(self):
        self.stopped = True


def api_requests(cluster):
    """From the API server's /metrics, by verb and resource: the requests
    it answered (apiserver_request_total; failures keyed with their code)
    and the seconds it spent on them (apiserver_request_duration_seconds_sum;
    WATCH and CONNECT are long-lived and left out)."""
    counts, seconds = {}, {}
    pat = re.compile(r'^(apiserver_request_total|apiserver_request_duration_seconds_sum)\{([^}]*)\} ([0-9.e+-]+)$')
    for line in cluster.kubectl("get", "--raw", "/metrics").splitlines():
        m = pat.match(line)
        if not m:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
        key = f"{labels.get('verb')} {labels.get('resource')}" + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        if m.group(1) == "apiserver_request_total":
            code = labels.get("code", "")
            if not code.startswith("2"):
                key += f" ({code})"
            counts[key] = counts.get(key, 0) + float(m.group(3))
        elif labels.get("verb") not in ("WATCH", "CONNECT"):
            seconds[key] = seconds.get(key, 0) + float(m.group(3))
    return counts, seconds


# The status the operator writes for a bound allocation (what
# `kubectl get qa -o json` shows after a sync): the cost measurement below
# writes this shape.
BOUND_STATUS = {
    "conditions": [
        {"type": t, "status": st, "reason": r, "message": m, "observedGeneration": 1,
         "lastTransitionTime": "2026-11-23T15:42:04Z"}
        for t, st, r, m in [
            ("Ready", "True", "Ready", "synced with the quota service"),
            ("Synced", "True", "Synced", "the quota service holds this quota"),
            ("Bound", "True", "Allocated", "the parent reserved this allocation's limits"),
            ("Exceeded", "False", "WithinLimits", "no limit is reached"),
            ("NearLimit", "False", "BelowThreshold", "every resource is below 80% of its limit"),
            ("Overcommitted", "False", "WithinLimits", "used + allocated fits every limit"),
        ]
    ],
    "exceeded": False,
    "lastSyncTime": "2026-11-23T15:42:04Z",
    "nodeId": "qa:bench-0:qa-0",
    "observedGeneration": 1,
    "resources": {"messages": {"allocated": 0, "available": 10, "max": 10, "period": "2026-11-23",
                               "resetAt": "2026-11-24T00:00:00Z", "subtreeUsed": 0, "used": 0}},
    "summary": "messages 0/10",
}


def request_costs(cluster, namespaces, n=1000, threads=16):
    """API server and etcd CPU per request, one kind of the operator's
    requests at a time, on `n` QuotaAllocations that exist without status
    or finalizer (the floor run's): the finalizer patch (the JSON Patch
    kube-runtime's finalizer() sends), the first status (server-side
    apply), a changed status, an Event. Milliseconds of CPU each."""
    import threading

    pids = cluster.pids()

    def ns(i):  # where operator_scale put qa-i
        return f"bench-{i % namespaces}"

    def path(i):
        return f"{QUOTA_API}/namespaces/{ns(i)}/quotaallocations/qa-{i}"

    def status(i, used):
        body = json.loads(json.dumps(BOUND_STATUS))
        body["nodeId"] = f"qa:{ns(i)}:qa-{i}"
        body["resources"]["messages"]["used"] = used
        return {"apiVersion": "quota.edgepolicy.io/v1alpha1", "kind": "QuotaAllocation", "status": body}

    apply = "/status?fieldManager=edge-quota-operator&force=true"
    kinds = [
        ("finalizer patch (JSON Patch)", lambda i: ("PATCH", path(i), "application/json-patch+json", [
            {"op": "test", "path": "/metadata/finalizers", "value": None},
            {"op": "add", "path": "/metadata/finalizers", "value": ["quota.edgepolicy.io/node"]},
        ])),
        ("first status (server-side apply)", lambda i: ("PATCH", path(i) + apply, "application/apply-patch+yaml", status(i, 0))),
        ("changed status (server-side apply)", lambda i: ("PATCH", path(i) + apply, "application/apply-patch+yaml", status(i, 1))),
        ("Event (events.k8s.io/v1)", lambda i: ("POST", f"/apis/events.k8s.io/v1/namespaces/{ns(i)}/events",
                                                "application/json", {
            "metadata": {"name": f"qa-{i}.bench"}, "eventTime": "2026-11-23T15:42:04.000000Z",
            "reportingController": "edge-quota-operator", "reportingInstance": "bench", "action": "Reconcile",
            "reason": "AllocationBound", "type": "Normal", "note": "the parent reserved this allocation's limits",
            "regarding": {"apiVersion": "quota.edgepolicy.io/v1alpha1", "kind": "QuotaAllocation",
                          "name": f"qa-{i}", "namespace": ns(i)}})),
    ]
    out = {}
    for name, make in kinds:
        todo = list(range(n))
        lock = threading.Lock()
        failures = []

        def work():
            conn = cluster.connect()
            while True:
                with lock:
                    if not todo:
                        return
                    i = todo.pop()
                method, url, ctype, body = make(i)
                conn.request(method, url, body=json.dumps(body), headers={"Content-Type": ctype})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status >= 300:
                    failures.append(f"{method} {url}: {resp.status} {data[:200]!r}")

        before = {k: cpu_seconds(p) for k, p in pids.items()}
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        if failures:
            raise SystemExit(f"bench: {name}: {len(failures)} failed, e.g. {failures[0]}")
        out[name] = {k: 1000 * (cpu_seconds(p) - before[k]) / n for k, p in pids.items()}
        log(f"operator: {name}: {out[name]['kube-apiserver']:.2f} ms of API server CPU, {out[name]['etcd']:.2f} ms of etcd each")
    return out


def operator_scale(tqs, qas, sync_secs=5, within=180, with_operator=True):
    """Creates `tqs` TenantQuotas and `qas` QuotaAllocations (spread over 50
    namespaces) at once and times until every one is Synced; then pushes
    one TenantQuota over its limit through the service and times until its
    status says exceeded. Without the operator: the same creates alone, the
    floor the API server sets on this machine."""
    r = {"tenantquotas": tqs, "allocations": qas, "sync_secs": sync_secs, "checks": [], "operator": with_operator}
    cluster = Cluster()
    service = operator = None
    watches = []
    try:
        cluster.kubectl("apply", "--server-side", "-f", os.path.join(ROOT, "crds"))
        cluster.kubectl("wait", "--for", "condition=established", "--timeout=60s",
                        "crd/tenantquotas.quota.edgepolicy.io", "crd/quotaallocations.quota.edgepolicy.io")
        namespaces = 50
        docs = [
            f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: bench-{n}, labels: {{bench: scale}}}}"
            for n in range(namespaces)
        ]
        cluster.kubectl("apply", "-f", "-", stdin="\n---\n".join(docs))

        service = QuotaService(False, flush_secs=1).start() if with_operator else None
        health = free_port()
        env = {} if not with_operator else dict(
            os.environ,
            KUBECONFIG=cluster.kubeconfig,
            QUOTA_SERVICE_URL=f"http://127.0.0.1:{service.port}",
            SYNC_INTERVAL_SECS=str(sync_secs),
            LEADER_ELECTION="false",
            HEALTH_ADDR=f"127.0.0.1:{health}",
            LOG_LEVEL="warn",
        )
        if with_operator:
            op_log = open(os.path.join(service.tmp, "operator.log"), "w")
            operator = subprocess.Popen([os.path.join(RELEASE, "quota-operator")], env=env, stdout=op_log, stderr=op_log)
            watches = [SyncedWatch(cluster, "tenantquotas"), SyncedWatch(cluster, "quotaallocations")]

        per_tq = max(qas // max(tqs, 1), 1)
        docs = []
        for t in range(tqs):
            docs.append(
                f"apiVersion: quota.edgepolicy.io/v1alpha1\nkind: TenantQuota\nmetadata: {{name: t-{t}}}\n"
                f"spec:\n  limits: {{messages: {{max: 1000}}}}\n  allocationNamespaceSelector: {{matchLabels: {{bench: scale}}}}"
            )
        for a in range(qas):
            docs.append(
                f"apiVersion: quota.edgepolicy.io/v1alpha1\nkind: QuotaAllocation\n"
                f"metadata: {{name: qa-{a}, namespace: bench-{a % namespaces}}}\n"
                f"spec:\n  parentRef: {{kind: TenantQuota, name: t-{(a // per_tq) % tqs}}}\n  limits: {{messages: {{max: 10}}}}"
            )
        log(f"operator: creating {tqs:,} TenantQuotas and {qas:,} QuotaAllocations")
        requests_before = api_requests(cluster)
        pids = cluster.pids()
        if with_operator:
            pids.update({"quota-operator": operator.pid, "quota-service": service.proc.pid})
        cpus_before = {k: cpu_seconds(p) for k, p in pids.items()}
        started = time.time()
        # kubectl sends one request per object and throttles itself (client-go's
        # default 5 requests/s): PARALLEL of them at once, TenantQuotas first.
        for group in (docs[:tqs], docs[tqs:]):
            chunks = [group[i::PARALLEL] for i in range(PARALLEL)]
            procs = [
                subprocess.Popen(
                    [os.path.join(cluster.bin_dir, "kubectl"), "--kubeconfig", cluster.kubeconfig, "create", "-f", "-"],
                    stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )
                for c in chunks if c
            ]
            for proc, c in zip(procs, [c for c in chunks if c]):
                proc.stdin.write("\n---\n".join(c))
                proc.stdin.close()
            for proc in procs:
                if proc.wait() != 0:
                    raise SystemExit(f"bench: kubectl create failed: {proc.stderr.read()[-2000:]}")
        r["create_s"] = time.time() - started
        if not with_operator:
            r["cpu_s"] = {k: cpu_seconds(p) - cpus_before[k] for k, p in pids.items()}
            r["requests"] = {k: int(v - requests_before[0].get(k, 0)) for k, v in api_requests(cluster)[0].items()
                             if v - requests_before[0].get(k, 0) >= 1}
            log(f"operator: without the operator, created in {r['create_s']:.1f} s; CPU seconds: "
                + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_s"].items()))
            r["cost_requests"] = min(qas, 1000)
            r["costs"] = request_costs(cluster, namespaces, n=r["cost_requests"])
            return r
        log(f"operator: created in {r['create_s']:.1f} s; waiting until all are Synced")
        synced, last_change = (0, 0), started
        while time.time() - started < within:
            if operator.poll() is not None:
                raise SystemExit(f"bench: the operator exited with {operator.returncode}; see {op_log.name}")
            (tq, tq_at), (qa, qa_at) = watches[0].count(), watches[1].count()
            synced, last_change = (tq, qa), max(tq_at, qa_at)
            if synced == (tqs, qas):
                break
            time.sleep(0.1)
        # When the last object turned Synced (its watch event), not when
        # this loop looked.
        r["all_synced_s"] = (last_change if synced == (tqs, qas) else time.time()) - started
        r["synced"] = synced
        if synced != (tqs, qas):
            # A missed target, not a wrong count: reported, not failed.
            log(f"operator: only {synced[0]:,} + {synced[1]:,} Synced after {within} s")
        log(f"operator: {synced[0]:,} + {synced[1]:,} Synced after {r['all_synced_s']:.1f} s")
        r["cpu_s"] = {k: cpu_seconds(p) - cpus_before[k] for k, p in pids.items()}
        log("operator: CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r["cpu_s"].items()))
        counts, seconds = api_requests(cluster)
        r["requests"] = {k: int(v - requests_before[0].get(k, 0)) for k, v in counts.items() if v - requests_before[0].get(k, 0) >= 1}
        r["request_seconds"] = {k: v - requests_before[1].get(k, 0) for k, v in seconds.items() if v - requests_before[1].get(k, 0) >= 0.05}
        top = sorted(r["requests"].items(), key=lambda kv: -kv[1])[:14]
        log("operator: API requests meanwhile: " + ", ".join(f"{k} {v:,}" for k, v in top))
        top = sorted(r["request_seconds"].items(), key=lambda kv: -kv[1])[:8]
        log("operator: API server seconds (sum of request durations): " + ", ".join(f"{k} {v:.1f}" for k, v in top))

        # Exceedance: 1,001 messages on t-0's node (limit 1,000).
        node = cluster.kubectl("get", "tq", "t-0", "-o", "jsonpath={.status.nodeId}").strip()
        req = urllib.request.Request(
            service.url("/api/v1/usage/batch"),
            data=json.dumps({"mode": "increment", "items": [{"id": node, "usage": {"messages": 1001}}]}).encode(),
            method="POST",
        )
        req.add_header("content-type", "application/json")
        sent = time.time()
        with urllib.request.urlopen(req, timeout=10) as resp:
            counted = json.loads(resp.read())["counted"]
        if counted != 1:
            r["checks"].append(f"the exceeding increment counted {counted}")
        exceeded = ""
        while time.time() - sent < sync_secs + 30:
            exceeded = cluster.kubectl("get", "tq", "t-0", "-o", "jsonpath={.status.exceeded}").strip()
            if exceeded == "true":
                break
            time.sleep(0.05)
        r["exceeded_lag_s"] = time.time() - sent
        if exceeded != "true":
            r["checks"].append("t-0 never showed exceeded")
        log(f"operator: exceedance shown after {r['exceeded_lag_s']:.2f} s (sync interval {sync_secs} s)")
    finally:
        for w in watches:
            w.stop()
        if operator and operator.poll() is None:
            operator.send_signal(2)
            try:
                operator.wait(30)
            except subprocess.TimeoutExpired:
                operator.kill()
        if service:
            service.stop()
        cluster.down()
    return r


def operator_table(rows):
    out = [
        "| run | TenantQuotas | QuotaAllocations | create (kubectl create) | all Synced (from the first create) "
        "| API requests | CPU s: kube-apiserver / etcd / operator / service | sync interval | exceedance to status | check |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = r.get("cpu_s", {})
        cpus = " / ".join(f"{cpu[k]:.1f}" if k in cpu else "-" for k in ("kube-apiserver", "etcd", "quota-operator", "quota-service"))
        requests = f"{sum(v for k, v in r.get('requests', {}).items() if not k.startswith('WATCH')):,}"
        if not r["operator"]:
            out.append(
                f"| API server alone (no operator) | {r['tenantquotas']:,} | {r['allocations']:,} | {r['create_s']:.1f} s "
                f"| - | {requests} | {cpus} | - | - | floor |"
            )
            continue
        tq, qa = r["synced"]
        synced = (
            f"{r['all_synced_s']:.1f} s"
            if (tq, qa) == (r["tenantquotas"], r["allocations"])
            else f"not within {r['all_synced_s']:.0f} s ({tq:,} + {qa:,} Synced)"
        )
        out.append(
            f"| operator | {r['tenantquotas']:,} | {r['allocations']:,} | {r['create_s']:.1f} s | {synced} | {requests} | {cpus} "
            f"| {r['sync_secs']} s | {r['exceeded_lag_s']:.2f} s | {'; '.join(r['checks']) or 'all Synced'} |"
        )
    return "\n".join(out)


def request_cost_table(floor, run):
    """The API server and etcd CPU the operator run's requests need at
    the least: each kind's count in the run times its cost measured alone
    (request_costs), the creates at the floor run's cost; and the time that
    CPU takes on this machine's cores with nothing else running."""
    costs, objects = floor["costs"], floor["tenantquotas"] + floor["allocations"]
    reqs = run.get("requests", {})
    statuses = reqs.get("APPLY quotaallocations/status", 0) + reqs.get("APPLY tenantquotas/status", 0)
    rows = [
        ("create (kubectl create)", {k: 1000 * v / objects for k, v in floor["cpu_s"].items()}, objects),
        ("finalizer patch (JSON Patch)", costs["finalizer patch (JSON Patch)"],
         reqs.get("PATCH quotaallocations", 0) + reqs.get("PATCH tenantquotas", 0)),
        ("first status (server-side apply)", costs["first status (server-side apply)"], objects),
        ("changed status (server-side apply)", costs["changed status (server-side apply)"], max(statuses - objects, 0)),
        ("Event (events.k8s.io/v1)", costs["Event (events.k8s.io/v1)"], reqs.get("POST events", 0)),
    ]
    out = [
        "| request | API server CPU each | etcd CPU each | requests in the operator run | API server + etcd CPU |",
        "|---|---|---|---|---|",
    ]
    total = 0.0
    for name, cost, count in rows:
        seconds = count * (cost["kube-apiserver"] + cost["etcd"]) / 1000
        total += seconds
        out.append(f"| {name} | {cost['kube-apiserver']:.2f} ms | {cost['etcd']:.2f} ms | {count:,} | {seconds:.1f} s |")
    cores = os.cpu_count() or 1
    out.append(f"| **all** | | | | **{total:.1f} s: {total / cores:.1f} s on {cores} cores with nothing else running** |")
    return "\n".join(out)


# === report ===


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


def fmt_ratio(x):
    """A ratio, or '-' where there was nothing to compare with (no baseline
    for that scenario)."""
    return f"{x:.2f}" if x else "-"


def table(results):
    base = {
        (r.connections, r.pinned, r.round): r for r in results if r.server == "baseline"
    }
    rows = [
        "| scenario | server | conns | pinned | rounds | req/s | ratio | increments/s | p50 us | p99 us | p99 ratio | CPU us/req | CPU ratio | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in medians(with_ratios(results, lambda r: base.get((r.connections, r.pinned, r.round)))):
        rows.append(
            f"| {r.scenario} | {r.server} | {r.connections} | {'yes' if r.pinned else 'no'} | {r.rounds} "
            f"| {r.rps:,.0f} | {fmt_ratio(r.rps_ratio)} | {r.increments_per_s:,.0f} "
            f"| {r.p50_us:.0f} | {r.p99_us:.0f} | {fmt_ratio(r.p99_ratio)} "
            f"| {r.cpu_us_per_req:.1f} | {fmt_ratio(r.cpu_ratio)} "
            f"| {'; '.join(r.checks) or 'exact'} |"
        )
    return "\n".join(rows)


def auth_table(results):
    """Increment and consume with access control, as ratios to the same
    scenario on the quota service without it (same connections, pinning and
    round), and the TokenReviews sent during the measured run."""
    plain = {
        (r.scenario, r.connections, r.pinned, r.round): r
        for r in results
        if r.server == "quota-service"
    }
    authed = [replace(r) for r in results if "auth" in r.server]
    rows = [
        "| scenario | server | conns | pinned | rounds | req/s | ratio to no auth | CPU us/req | CPU ratio | p99 us | p99 ratio | TokenReviews in the run | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in medians(with_ratios(authed, lambda r: plain.get((r.scenario, r.connections, r.pinned, r.round)))):
        rows.append(
            f"| {r.scenario} | {r.server} | {r.connections} | {'yes' if r.pinned else 'no'} | {r.rounds} "
            f"| {r.rps:,.0f} | {r.rps_ratio:.2f} | {r.cpu_us_per_req:.1f} | {r.cpu_ratio:.2f} "
            f"| {r.p99_us:.0f} | {r.p99_ratio:.2f} | {r.reviews:.0f} | {'; '.join(r.checks) or 'exact'} |"
        )
    return "\n".join(rows)


def persistence_table(results):
    """Increment with the flush running every second, as ratios to the same
    load on the quota service without flushes (same round), and the share of
    the run the service spent flushing: the flush uses at most two threads
    of the two cores while it runs, so it cannot take more of the machine
    than that share; the ratios carry the machine's noise as well."""
    mem = {
        (r.connections, r.pinned, r.round): r
        for r in results
        if r.server == "quota-service" and r.scenario == "increment"
    }
    flushing = [replace(r) for r in results if "flush every" in r.server]
    rows = [
        "| server | conns | pinned | rounds | req/s | ratio to no flush | CPU us/req | CPU ratio | p99 us | time flushing | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in medians(with_ratios(flushing, lambda r: mem.get((r.connections, r.pinned, r.round)))):
        rows.append(
            f"| {r.server} | {r.connections} | {'yes' if r.pinned else 'no'} | {r.rounds} | {r.rps:,.0f} "
            f"| {r.rps_ratio:.2f} | {r.cpu_us_per_req:.1f} | {r.cpu_ratio:.2f} "
            f"| {r.p99_us:.0f} | {r.flush_share * 100:.2f} % | {'; '.join(r.checks) or 'exact'} |"
        )
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", type=int, default=6, help="seconds per wrk run")
    ap.add_argument(
        "--rounds", type=int, default=3,
        help="rounds of the whole plan at 64 connections (baseline and services alternating)",
    )
    ap.add_argument("--connections", default="16,64,256")
    ap.add_argument(
        "--scenarios",
        default="increment,consume,check,batch,persistence,auth",
        help="comma-separated; the baseline runs with increment; persistence = increment "
        "with the flush every second (SQLite, PostgreSQL) at 64 connections; auth = increment "
        "and consume with access control (static, kubernetes) at 64 connections",
    )
    ap.add_argument("--scale", type=int, default=1_000_000, help="tenants of the scale runs (0: none)")
    ap.add_argument("--stores", default="sqlite,postgres", help="stores of the persistence and scale runs")
    ap.add_argument(
        "--operator", default="1000,5000", help="TenantQuotas,QuotaAllocations of the operator run (0,0: none)"
    )
    ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "latest.md"))
    args = ap.parse_args()
    conns = [int(c) for c in args.connections.split(",")]
    stores = set(args.stores.split(","))
    wanted = set(args.scenarios.split(","))
    tqs, qas = (int(x) for x in args.operator.split(","))
    for exe in ["bench-baseline", "quota-service", "bench-load"] + (["quota-operator"] if tqs else []):
        if not os.access(os.path.join(RELEASE, exe), os.X_OK):
            raise SystemExit(f"bench: {RELEASE}/{exe} missing; run: make bench")

    started = time.time()
    pg = Postgres() if "postgres" in stores and ("persistence" in wanted or args.scale) else None
    auth_cluster = None
    try:
        results = []
        plan = [
            ("increment", Increment(), lambda p: Baseline(p)),
            ("increment", Increment(), lambda p: QuotaService(p)),
            ("consume", Consume(), lambda p: QuotaService(p)),
            ("check", Check(), lambda p: QuotaService(p)),
            ("batch", Batch(), lambda p: QuotaService(p)),
        ]
        if "persistence" in wanted:
            if "sqlite" in stores:
                plan.append(("persistence", Increment(), lambda p: QuotaService(p, flush_secs=1)))
            if pg:
                plan.append(
                    ("persistence", Increment(), lambda p: QuotaService(p, flush_secs=1, database_url=pg.new_database()))
                )
        if "auth" in wanted:
            static = StaticAuth()
            auth_cluster = Cluster()
            kube = KubernetesAuth(auth_cluster)
            for auth in (static, kube):
                plan.append(("auth", Increment(), lambda p, a=auth: QuotaService(p, auth=a)))
                plan.append(("auth", Consume(), lambda p, a=auth: QuotaService(p, auth=a)))
        persistence_conns = 64 if 64 in conns else conns[len(conns) // 2]
        for pinned in (False, True):
            for c in conns:
                for rnd in range(args.rounds if c == 64 else 1):
                    for key, scenario, make in plan:
                        needed_by = {"increment": ("persistence", "auth"), "consume": ("auth",)}
                        if key not in wanted and not any(k in wanted for k in needed_by.get(key, ())):
                            continue
                        if key in ("persistence", "auth") and c != persistence_conns:
                            continue
                        r = measure(make, scenario, c, pinned, args.duration)
                        r.round = rnd
                        log(
                            f"{scenario.name} {r.server} c={c} pinned={pinned} round {rnd + 1}: "
                            f"{r.rps:,.0f} req/s, p99 {r.p99_us:.0f} us, {r.cpu_us_per_req:.1f} us CPU/req, "
                            f"{'; '.join(r.checks) or 'counts exact'}"
                        )
                        results.append(r)
        scales = []
        if args.scale:
            if "sqlite" in stores:
                scales.append(scale("SQLite", None, args.scale))
            if pg:
                scales.append(scale("PostgreSQL", pg.new_database(), args.scale))
        operators = [operator_scale(tqs, qas, with_operator=False), operator_scale(tqs, qas)] if tqs else []
    finally:
        if pg:
            pg.down()
        if auth_cluster:
            auth_cluster.down()

    sections = [
        f"Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"Machine: {machine()}",
        f"Command: `{' '.join(['bench/run.py'] + sys.argv[1:])}` ({time.time() - started:.0f} s)",
        "",
        "HTTP load (wrk, ratios to the baseline server of the same run):",
        "",
        table([r for r in results if "flush every" not in r.server and "auth" not in r.server]),
        "",
    ]
    if any("flush every" in r.server for r in results):
        sections += ["Persistence cost (increment, flush every second):", "", persistence_table(results), ""]
    if any("auth" in r.server for r in results):
        sections += [
            "Access control cost (ratios to the same scenario without access control, same round; "
            "wrk sends a reporter's token, granted on the node or, for consume, on the root two levels up):",
            "",
            auth_table(results),
            "",
        ]
    if scales:
        sections += ["Scale:", "", scale_table(scales), ""]
    if operators:
        sections += ["Operator (test API server):", "", operator_table(operators), ""]
        if len(operators) == 2 and "costs" in operators[0]:
            sections += [
                "What those requests cost the API server at the least (each kind measured alone, "
                f"{operators[0]['cost_requests']:,} requests, 16 at once, on the floor run's objects):",
                "",
                request_cost_table(operators[0], operators[1]),
                "",
            ]
    report = "\n".join(sections)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(report)
    print(report)
    failed = [r for r in results if r.checks] + [r for r in scales + operators if r["checks"]]
    if failed:
        log(f"{len(failed)} run(s) failed their checks")
        sys.exit(1)


if __name__ == "__main__":
    main()
