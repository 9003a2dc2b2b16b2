#!/usr/bin/env bash
# The Python tools of the API tests, in a virtualenv of their own:
# schemathesis and openapi-python-client at the versions pinned (with every
# dependency) in hack/python/requirements.txt. Built once per version of that
# file and cached; the last line printed is the virtualenv's bin directory.
#
#   hack/python-tools.sh           build when missing, print the bin dir
#   hack/python-tools.sh --check   exit 0 when built (prints the bin dir)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib.sh
source hack/lib.sh

CACHE="${EDGE_QUOTA_CACHE:-$HOME/.cache/edge-quota}"
requirements=hack/python/requirements.txt
key="$(sha256sum "$requirements" | cut -c1-12)"
venv="$CACHE/python-tools-$key"

if [[ -x "$venv/bin/st" && -x "$venv/bin/openapi-python-client" && -f "$venv/.complete" ]]; then
    echo "$venv/bin"
    exit 0
fi
[[ "${1:-}" == "--check" ]] && { echo "python-tools: not built ($venv)" >&2; exit 1; }

command -v python3 >/dev/null 2>&1 || apt_install python3
if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    echo "python-tools: installing python3-venv" >&2
    apt_install python3-venv
fi
echo "python-tools: building $venv" >&2
# Built in place (its scripts name the interpreter by this path); only a
# finished build has .complete, so a broken one is built again.
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements" >&2
touch "$venv/.complete"
echo "$venv/bin"
