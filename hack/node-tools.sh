#!/usr/bin/env bash
# The Node tools of the API tests: openapi-typescript, openapi-fetch and
# TypeScript at the versions pinned (with every dependency and its hash) in
# contract/clients/typescript/package-lock.json. Installed once per version
# of that lock with `npm ci` and cached; the last line printed is the
# node_modules directory.
#
#   hack/node-tools.sh           install when missing, print node_modules
#   hack/node-tools.sh --check   exit 0 when installed (prints node_modules)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
source hack/lib.sh

CACHE="${EDGE_QUOTA_CACHE:-$HOME/.cache/edge-quota}"
project=contract/clients/typescript
key="$(cat "$project/package.json" "$project/package-lock.json" | sha256sum | cut -c1-12)"
dir="$CACHE/node-tools-$key"

if [[ -f "$dir/.complete" && -x "$dir/node_modules/.bin/tsc" ]]; then
    echo "$dir/node_modules"
    exit 0
fi
[[ "${1:-}" == "--check" ]] && { echo "node-tools: not installed ($dir)" >&2; exit 1; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "node-tools: installing nodejs and npm" >&2
    apt_install nodejs npm
fi
echo "node-tools: installing into $dir" >&2
# Only a finished install has .complete, so a broken one is installed again.
rm -rf "$dir"
mkdir -p "$dir"
cp "$project/package.json" "$project/package-lock.json" "$dir/"
(cd "$dir" && npm ci --no-audit --no-fund --loglevel=error) >&2
touch "$dir/.complete"
echo "$dir/node_modules"
