#!/usr/bin/env bash
# Installs what `make bench` needs when it is missing: wrk (the HTTP load
# generator, from Debian) and taskset (util-linux) for the pinned runs.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v taskset >/dev/null 2>&1 || missing+=(util-linux)
if ((${#missing[@]})); then
    echo "ensure-bench-tools: installing ${missing[*]}" >&2
    apt_install "${missing[@]}"
fi
