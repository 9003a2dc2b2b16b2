#!/usr/bin/env bash
# Builds the real control-plane binaries the integration tests run against:
# kube-apiserver, etcd, kubectl and helm, from pinned Go modules, once.
#
# Why from source: there is no Docker engine and no release-binary download on
# the machines this project is developed and tested on, but the Go module proxy
# is reachable. `go install pkg@version` refuses k8s.io/kubernetes and etcd's
# server module (their go.mod files carry replace directives), so each binary is
# built inside a tiny wrapper module of our own (see ../shared notes and
# kubernetes/kubernetes#79384).
#
# Output: binaries in $EDGE_QUOTA_TEST_ENV_DIR (default
# ~/.cache/edge-quota/test-env/k8s-<ver>). The LAST line printed is that
# directory, so callers can do `dir=$(hack/test-env.sh | tail -n1)`.
# A second run finds the binaries and builds nothing.
#
#   hack/test-env.sh          build what is missing, print the directory
#   hack/test-env.sh --check  build nothing; print the directory, or exit 1
#                             naming what is missing
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

K8S_VERSION="${K8S_VERSION:-1.34.4}"     # matches k8s-openapi feature v1_34
ETCD_VERSION="${ETCD_VERSION:-3.6.4}"    # the etcd release Kubernetes 1.34 uses
HELM_VERSION="${HELM_VERSION:-3.19.5}"   # helm built against the 1.34 libraries
# The ServiceMonitor CRD, so the chart's optional ServiceMonitor can be applied
# to the test API server (from the prometheus-operator module's examples).
PROM_OPERATOR_VERSION="${PROM_OPERATOR_VERSION:-0.85.0}"
SERVICEMONITOR_CRD="servicemonitor-crd-v$PROM_OPERATOR_VERSION.yaml"

CACHE_ROOT="${EDGE_QUOTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-quota}"
BIN_DIR="${EDGE_QUOTA_TEST_ENV_DIR:-$CACHE_ROOT/test-env/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION}"
WORK_DIR="$CACHE_ROOT/test-env/build"

K8S_MINOR="$(echo "$K8S_VERSION" | cut -d. -f2)"
STAGING_VERSION="v0.${K8S_VERSION#1.}"   # 1.34.4 -> v0.34.4

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-mod=mod"
export CGO_ENABLED=0

log() { echo "test-env: $*" >&2; }

need_go() {
    if ! command -v go >/dev/null 2>&1; then
        log "error: Go is required to build the test environment (https://go.dev/dl); none found on PATH"
        exit 1
    fi
}

if [[ "${1:-}" == "--check" ]]; then
    missing=()
    for tool in etcd kube-apiserver kubectl helm; do
        [[ -x "$BIN_DIR/$tool" ]] || missing+=("$tool")
    done
    [[ -f "$BIN_DIR/$SERVICEMONITOR_CRD" ]] || missing+=("$SERVICEMONITOR_CRD")
    if ((${#missing[@]})); then
        log "missing in $BIN_DIR: ${missing[*]}; build them with: make test-env"
        exit 1
    fi
    echo "$BIN_DIR"
    exit 0
fi

# Serialise concurrent runs (parallel test binaries may all ask at once).
mkdir -p "$BIN_DIR" "$WORK_DIR"
exec 9>"$CACHE_ROOT/test-env/.lock"
flock 9

K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDFLAGS+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$K8S_MINOR"
    K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

build_kube_apiserver() {
    local dir="$WORK_DIR/kube-apiserver-$K8S_VERSION"
    mkdir -p "$dir"
    cd "$dir"
    k8s_wrapper_gomod edgequota.local/testenv/kubeapiserver "$K8S_VERSION" >go.mod
    log "resolving k8s.io/kubernetes v$K8S_VERSION ($(grep -c '=>' go.mod) staging replaces)"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION"
    log "building kube-apiserver (cold: 10-25 min on 2 cores)"
    go build -trimpath -ldflags "-s -w $K8S_LDFLAGS" -o "$BIN_DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
    mv "$BIN_DIR/kube-apiserver.tmp" "$BIN_DIR/kube-apiserver"
}

build_etcd() {
    local dir="$WORK_DIR/etcd-$ETCD_VERSION"
    mkdir -p "$dir"
    cd "$dir"
    printf 'module edgequota.local/testenv/etcd\n\ngo 1.24.0\n' >go.mod
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    log "building etcd v$ETCD_VERSION"
    go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
}

build_kubectl() {
    local dir="$WORK_DIR/kubectl-$K8S_VERSION"
    mkdir -p "$dir"
    cd "$dir"
    printf 'module edgequota.local/testenv/kubectl\n\ngo 1.24.0\n' >go.mod
    # Same as upstream cmd/kubectl/kubectl.go.
    cat >main.go <<'EOF'
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err)
	}
}
EOF
    go get "k8s.io/kubectl@$STAGING_VERSION" "k8s.io/component-base@$STAGING_VERSION" "k8s.io/client-go@$STAGING_VERSION"
    go mod tidy
    log "building kubectl v$K8S_VERSION"
    go build -trimpath -ldflags "-s -w $K8S_LDFLAGS" -o "$BIN_DIR/kubectl.tmp" .
    mv "$BIN_DIR/kubectl.tmp" "$BIN_DIR/kubectl"
}

build_helm() {
    local dir="$WORK_DIR/helm-$HELM_VERSION"
    mkdir -p "$dir"
    cd "$dir"
    log "building helm v$HELM_VERSION"
    GOBIN="$dir/bin" go install -trimpath -ldflags "-s -w \
        -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION \
        -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR" \
        "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
    mv "$dir/bin/helm" "$BIN_DIR/helm"
}

fetch_servicemonitor_crd() {
    local dir
    cd "$WORK_DIR"
    dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@v$PROM_OPERATOR_VERSION" \
        | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')"
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" "$BIN_DIR/$SERVICEMONITOR_CRD.tmp"
    mv "$BIN_DIR/$SERVICEMONITOR_CRD.tmp" "$BIN_DIR/$SERVICEMONITOR_CRD"
}

if [[ -f "$BIN_DIR/$SERVICEMONITOR_CRD" ]]; then
    log "$SERVICEMONITOR_CRD: cached"
else
    need_go
    log "fetching the ServiceMonitor CRD (prometheus-operator v$PROM_OPERATOR_VERSION)"
    fetch_servicemonitor_crd
fi

for tool in etcd kubectl helm kube-apiserver; do
    if [[ -x "$BIN_DIR/$tool" ]]; then
        log "$tool: cached"
        continue
    fi
    need_go
    start=$(date +%s)
    case "$tool" in
        kube-apiserver) build_kube_apiserver ;;
        etcd) build_etcd ;;
        kubectl) build_kubectl ;;
        helm) build_helm ;;
    esac
    log "$tool: built in $(($(date +%s) - start))s"
done

echo "$BIN_DIR"
