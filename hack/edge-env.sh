#!/usr/bin/env bash
# Builds what a real single-node cluster needs beyond the test API server:
# the node's Kubernetes components, a container runtime, CNI plugins, CoreDNS,
# a local volume provisioner and the node's own images. Once; cached.
#
# Everything comes from pinned Go modules, Debian packages and sources in
# this repository (hack/edge/): no registry is ever pulled from.
#
#   Kubernetes  kubelet, kube-controller-manager, kube-scheduler, kube-proxy
#               (the same release as the test API server: hack/test-env.sh)
#   containerd  v2 (containerd, containerd-shim-runc-v2, ctr): the supported
#               runtime for Kubernetes 1.34 (Debian's 1.6 is past its end of life)
#   runc        the version containerd pins in script/setup/runc-version
#   CNI         bridge, host-local, loopback, portmap (the version containerd's
#               go.mod requires)
#   CoreDNS     the release kubeadm 1.34 pins, with only the plugins a node
#               without outside network needs (hack/edge/coredns/main.go)
#   local-path  rancher/local-path-provisioner, the default StorageClass of k3s
#   images      pause (hack/edge/pause.c), a toolbox (busybox and curl) for
#               local-path's helper pods and test clients, and PostgreSQL
#               (Debian's), as archives built with umoci (hack/image.sh)
#
# Output: $EDGE_QUOTA_CACHE/edge-env/<versions>/ with bin/ and images/. The
# LAST line printed is that directory. A second run builds nothing.
#
#   hack/edge-env.sh          build what is missing, print the directory
#   hack/edge-env.sh --check  build nothing; print the directory or exit 1
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"

K8S_VERSION="${K8S_VERSION:-1.34.4}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-2.2.9}"   # supports Kubernetes 1.34 (its RELEASES.md)
RUNC_VERSION="${RUNC_VERSION:-1.3.6}"               # containerd 2.2.9's script/setup/runc-version
CNI_VERSION="${CNI_VERSION:-1.9.0}"                 # containerd 2.2.9's go.mod
COREDNS_VERSION="${COREDNS_VERSION:-1.12.1}"        # kubeadm 1.34's CoreDNS
LOCAL_PATH_VERSION="${LOCAL_PATH_VERSION:-0.0.33}"

CACHE_ROOT="${EDGE_QUOTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-quota}"
ENV_DIR="${EDGE_QUOTA_EDGE_ENV_DIR:-$CACHE_ROOT/edge-env/k8s-$K8S_VERSION-containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION-coredns-$COREDNS_VERSION}"
BIN_DIR="$ENV_DIR/bin"
IMAGE_DIR="$ENV_DIR/images"
WORK_DIR="$CACHE_ROOT/edge-env/build"

# Debian packages the node runs with (iptables for kube-proxy, conntrack for
# its clean-ups) and builds with (libseccomp for runc; umoci and skopeo
# assemble images; busybox-static, curl and postgresql are copied into them).
APT_PACKAGES=(iptables conntrack libseccomp-dev umoci skopeo busybox-static curl ca-certificates postgresql)

BINARIES=(kubelet kube-controller-manager kube-scheduler kube-proxy
    containerd containerd-shim-runc-v2 ctr runc
    bridge host-local loopback portmap
    coredns local-path-provisioner)
IMAGES=(pause toolbox postgres)

export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export GOFLAGS="-mod=mod"

log() { echo "edge-env: $*" >&2; }

missing() {
    local out=()
    for b in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$b" ]] || out+=("$b"); done
    for i in "${IMAGES[@]}"; do [[ -f "$IMAGE_DIR/$i.tar" ]] || out+=("image $i"); done
    for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || out+=("package $p"); done
    echo "${out[*]}"
}

if [[ "${1:-}" == "--check" ]]; then
    m="$(missing)"
    if [[ -n "$m" ]]; then
        log "missing in $ENV_DIR: $m; build them with: make edge-env"
        exit 1
    fi
    echo "$ENV_DIR"
    exit 0
fi

mkdir -p "$BIN_DIR" "$IMAGE_DIR" "$WORK_DIR"
exec 9>"$CACHE_ROOT/edge-env/.lock"
flock 9

need=()
for p in "${APT_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
if ((${#need[@]})); then
    log "installing Debian packages: ${need[*]}"
    apt_install "${need[@]}" >&2
fi

if ! command -v go >/dev/null 2>&1 && [[ -n "$(missing)" ]]; then
    log "error: Go is required to build the edge node (https://go.dev/dl); none found on PATH"
    exit 1
fi

K8S_LDFLAGS=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDFLAGS+=" -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
    K8S_LDFLAGS+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# in_module DIR GO_VERSION [MODULE@VERSION]: enters $WORK_DIR/DIR, a wrapper
# module of our own that requires MODULE (set up on the first build only).
in_module() {
    mkdir -p "$WORK_DIR/$1"
    cd "$WORK_DIR/$1"
    if [[ ! -f go.mod ]]; then
        printf 'module edgequota.local/edgeenv/%s\n\ngo %s\n' "$1" "$2" >go.mod
        if [[ -n "${3:-}" ]]; then go get "$3"; fi
    fi
}

# build_into NAME GO_BUILD_ARGS...: `go build` into $BIN_DIR/NAME, in place
# only once complete (an interrupted build leaves no half binary there).
build_into() {
    local name="$1"
    shift
    go build -trimpath -o "$BIN_DIR/$name.tmp" "$@"
    mv "$BIN_DIR/$name.tmp" "$BIN_DIR/$name"
}

# build_k8s NAME: one command of k8s.io/kubernetes (static, like upstream's).
build_k8s() {
    in_module "kubernetes-$K8S_VERSION" 1.24.0
    if ! grep -q "k8s.io/kubernetes v$K8S_VERSION" go.mod; then
        k8s_wrapper_gomod edgequota.local/edgeenv/kubernetes "$K8S_VERSION" >go.mod
        go get "k8s.io/kubernetes@v$K8S_VERSION"
    fi
    CGO_ENABLED=0 build_into "$1" -ldflags "-s -w $K8S_LDFLAGS" "k8s.io/kubernetes/cmd/$1"
}

# build_containerd NAME: containerd's commands, static as its release builds them.
build_containerd() {
    in_module "containerd-$CONTAINERD_VERSION" 1.25.0 "github.com/containerd/containerd/v2@v$CONTAINERD_VERSION"
    local tags="urfave_cli_no_docs osusergo netgo static_build no_btrfs no_devmapper no_zfs"
    if [[ "$1" == containerd-shim-runc-v2 ]]; then tags+=" no_grpc"; fi
    CGO_ENABLED=0 build_into "$1" -tags "$tags" \
        -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=v$CONTAINERD_VERSION" \
        "github.com/containerd/containerd/v2/cmd/$1"
}

# runc needs cgo (its nsenter is C) and libseccomp for RuntimeDefault profiles.
build_runc() {
    in_module "runc-$RUNC_VERSION" 1.23.0 "github.com/opencontainers/runc@v$RUNC_VERSION"
    CGO_ENABLED=1 build_into runc -tags seccomp -ldflags "-s -w -X main.version=$RUNC_VERSION" \
        github.com/opencontainers/runc
}

build_cni() {
    in_module "cni-plugins-$CNI_VERSION" 1.23.0 "github.com/containernetworking/plugins@v$CNI_VERSION"
    local kind=main
    if [[ "$1" == host-local ]]; then kind=ipam; fi
    if [[ "$1" == portmap ]]; then kind=meta; fi
    CGO_ENABLED=0 build_into "$1" -ldflags "-s -w" "github.com/containernetworking/plugins/plugins/$kind/$1"
}

build_coredns() {
    in_module "coredns-$COREDNS_VERSION" 1.23.0 "github.com/coredns/coredns@v$COREDNS_VERSION"
    cp "$HERE/edge/coredns/main.go" main.go
    go mod tidy
    CGO_ENABLED=0 build_into coredns -ldflags "-s -w" .
}

build_local_path() {
    in_module "local-path-$LOCAL_PATH_VERSION" 1.25.5 "github.com/rancher/local-path-provisioner@v$LOCAL_PATH_VERSION"
    CGO_ENABLED=0 build_into local-path-provisioner -ldflags "-s -w -X main.VERSION=v$LOCAL_PATH_VERSION" \
        github.com/rancher/local-path-provisioner
}

for b in "${BINARIES[@]}"; do
    if [[ -x "$BIN_DIR/$b" ]]; then
        log "$b: cached"
        continue
    fi
    start=$SECONDS
    log "building $b"
    case "$b" in
        kubelet | kube-controller-manager | kube-scheduler | kube-proxy) build_k8s "$b" ;;
        containerd | containerd-shim-runc-v2 | ctr) build_containerd "$b" ;;
        runc) build_runc ;;
        bridge | host-local | loopback | portmap) build_cni "$b" ;;
        coredns) build_coredns ;;
        local-path-provisioner) build_local_path ;;
    esac
    log "$b: built in $((SECONDS - start))s"
done

for i in "${IMAGES[@]}"; do
    if [[ -f "$IMAGE_DIR/$i.tar" ]]; then
        log "image $i: cached"
        continue
    fi
    log "building image $i"
    "$HERE/image.sh" "node-$i" --out "$IMAGE_DIR/$i.tar" >&2
done

echo "$ENV_DIR"
