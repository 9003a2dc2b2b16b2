#!/usr/bin/env bash
# Installs what the build and tests need when it is missing (fresh machine):
# the Rust components rustfmt and clippy.
set -euo pipefail

if ! command -v cargo >/dev/null 2>&1; then
    echo "ensure-tools: cargo not found; install Rust from https://rustup.rs" >&2
    exit 1
fi
if command -v rustup >/dev/null 2>&1; then
    for c in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
    done
fi
