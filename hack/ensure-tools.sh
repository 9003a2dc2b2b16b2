#!/usr/bin/env bash
# Installs what the build and the tests need when it is missing (fresh
# machine): rustfmt and clippy; openssl, curl and python3 (hack/cluster.sh).
# Rust and Go themselves are prerequisites (Go 1.24+ builds the test
# environment; Debian's golang-go is too old for Kubernetes 1.34).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

fail() { echo "ensure-tools: $*" >&2; exit 1; }

command -v cargo >/dev/null 2>&1 || fail "cargo not found; install Rust from https://rustup.rs"
command -v go >/dev/null 2>&1 || fail "go not found; install Go 1.24 or newer from https://go.dev/dl"
go_minor="$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')"
((go_minor >= 24)) || fail "Go $(go env GOVERSION) is too old; Kubernetes 1.34 needs Go 1.24 or newer"

if command -v rustup >/dev/null 2>&1; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
fi

missing=()
for tool in openssl curl python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "ensure-tools: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
fi
