#!/usr/bin/env bash
# `make test`: every test of the workspace, nothing skipped.
#
# On a fresh machine the control-plane binaries (kube-apiserver, etcd,
# kubectl, helm) and the edge node's (kubelet, containerd, CoreDNS, ...) are
# built first; that build runs in the background while cargo compiles the
# test binaries, so the two overlap. Tests that need a cluster or a node
# start their own (see testenv/); the end-to-end tests (e2e/) build the
# project's image from the release binaries compiled here, and the
# API-contract tests (contract/) run schemathesis and generated Python and
# TypeScript clients against the release quota-service.
set -uo pipefail
cd "$(dirname "$0")/.."

CACHE="${EDGE_QUOTA_CACHE:-$HOME/.cache/edge-quota}"
mkdir -p "$CACHE"
start=$(date +%s)

hack/ensure-tools.sh || exit 1

env_log="$CACHE/test-env-build.log"
if hack/test-env.sh --check >/dev/null 2>&1 && hack/edge-env.sh --check >/dev/null 2>&1 \
    && hack/python-tools.sh --check >/dev/null 2>&1 && hack/node-tools.sh --check >/dev/null 2>&1; then
    env_pid=""
else
    echo "test: building the test environment, the edge node and the Python and Node tools in the background (log: $env_log)"
    (hack/test-env.sh && hack/edge-env.sh && hack/python-tools.sh && hack/node-tools.sh) >"$env_log" 2>&1 &
    env_pid=$!
fi

cargo test --workspace --no-run 2>&1 | grep -vE '^\s+(Compiling|Checking|Downloaded|Downloading)' || true
if [[ ${PIPESTATUS[0]} -ne 0 ]]; then
    echo "test: compilation failed" >&2
    exit 1
fi

echo "test: the release binaries (the image of the end-to-end tests, the API-contract tests)"
cargo build --release --locked --bin quota-service --bin quota-operator 2>&1 \
    | grep -vE '^\s+(Compiling|Checking|Downloaded|Downloading)' || true
if [[ ${PIPESTATUS[0]} -ne 0 ]]; then
    echo "test: release build failed" >&2
    exit 1
fi

if [[ -n "$env_pid" ]]; then
    echo "test: waiting for the test environment build"
    if ! wait "$env_pid"; then
        echo "test: building the test environment failed; last lines of $env_log:" >&2
        tail -30 "$env_log" >&2
        exit 1
    fi
    grep -E '^(test-env|edge-env):' "$env_log"
fi

log="$CACHE/last-test.log"
echo "test: the workspace, the service suite on SQLite"
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
# The same service suite again with PostgreSQL as the store (the tests are
# parametrized by EDGE_QUOTA_TEST_STORE; see service/tests/common).
echo "test: the service suite on PostgreSQL (EDGE_QUOTA_TEST_STORE=postgres)"
EDGE_QUOTA_TEST_STORE=postgres cargo test -p quota-service --no-fail-fast 2>&1 | tee -a "$log"
[[ ${PIPESTATUS[0]} -ne 0 ]] && status=1
echo "make test: $(($(date +%s) - start))s"
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
