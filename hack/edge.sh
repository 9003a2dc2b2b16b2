#!/usr/bin/env bash
# A real single-node Kubernetes cluster where pods run, in the spirit of k3s:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd
# with runc, the CNI bridge, kubelet, kube-proxy (iptables), CoreDNS and the
# local-path volume provisioner (the default StorageClass), all built by
# hack/edge-env.sh and hack/test-env.sh from pinned sources.
#
#   hack/edge.sh up     [--name NAME] [--owner-pid PID]
#                                       start (or find running); last line: export KUBECONFIG=...
#                                       with --owner-pid it goes down when PID exits (test binaries)
#   hack/edge.sh down   [--name NAME]   stop everything and leave nothing behind
#   hack/edge.sh status [--name NAME]
#   hack/edge.sh load   [--name NAME] FILE   import an image archive into the node
#   hack/edge.sh list                   names of the running nodes
#
# Each node lives in its own network namespace (edge-quota-<index>) and its
# own mount namespace, so several run side by side, none touches the host's
# iptables or mount table, and `down` removes all of it by ending the
# processes and deleting the namespace:
#
#      host                         netns edge-quota-<i>
#   10.201.<i>.1 ---- veth ---- 10.201.<i>.2  (node IP: API server :6443,
#                                 |            kubelet, CoreDNS :53)
#                                cni0 10.202.<i>.1
#                                 |-- pods 10.202.<i>.0/24
#                                Services 10.203.<i>.0/24 (kube-proxy)
#
# The host has routes to the pod and Service ranges, so tests on the host
# reach a pod IP or a ClusterIP directly. Processes and pods are kept in the
# cgroup edge-quota-<i> of every hierarchy; `down` kills what is left there.
#
# What the kubelet changes on the host (a few kernel sysctls) is recorded on
# the first `up` and put back when the last node goes down.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
# shellcheck source=edge/files.sh
source "$HERE/edge/files.sh"
CACHE_ROOT="${EDGE_QUOTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-quota}"
NODES_DIR="$CACHE_ROOT/edge"

cmd="${1:-}"
shift || true
NAME="${EDGE:-default}"
OWNER_PID=""
ARGS=()
while (($#)); do
    case "$1" in
        --name) NAME="$2"; shift 2 ;;
        --owner-pid) OWNER_PID="$2"; shift 2 ;;
        *) ARGS+=("$1"); shift ;;
    esac
done
if [[ ! "$NAME" =~ ^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$ ]]; then
    echo "edge.sh: --name must be a DNS label of at most 32 characters" >&2
    exit 2
fi
DIR="$NODES_DIR/$NAME"
NODE="edge-$NAME"

log() { echo "edge[$NAME]: $*" >&2; }
die() { log "error: $*"; exit 1; }

# The sysctls the kubelet sets (its setupKernelTunables) and kube-proxy's
# conntrack settings are left alone by configuration.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# === addressing ===

load_index() {
    [[ -f "$DIR/index" ]] || return 1
    I="$(cat "$DIR/index")"
    NETNS="edge-quota-$I"
    HOST_IP="10.201.$I.1"
    NODE_IP="10.201.$I.2"
    POD_CIDR="10.202.$I.0/24"
    SERVICE_CIDR="10.203.$I.0/24"
    API_SERVICE_IP="10.203.$I.1"
    CGROUP="edge-quota-$I"
}

# The first index no node uses (1..200).
pick_index() {
    local i used
    used=" $(cat "$NODES_DIR"/*/index 2>/dev/null | tr '\n' ' ') "
    for i in $(seq 1 200); do
        [[ "$used" == *" $i "* ]] && continue
        [[ -e "/run/netns/edge-quota-$i" ]] && continue
        echo "$i"
        return 0
    done
    die "no free node index (200 nodes running?)"
}

# === processes ===

# in_node CMD...: runs CMD in the node's network and mount namespaces.
in_node() {
    nsenter --net="/run/netns/$NETNS" --mount="/proc/$(cat "$DIR/holder.pid")/ns/mnt" -- "$@"
}

# cgroup_dirs: the node's cgroup in every hierarchy (each v1 controller and
# the unified one of a hybrid setup, or the single v2 one).
cgroup_dirs() {
    local d
    if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
        echo "/sys/fs/cgroup/$CGROUP"
        return
    fi
    for d in /sys/fs/cgroup/*/; do
        if [[ -f "$d/cgroup.procs" ]]; then echo "${d%/}/$CGROUP"; fi
    done
}

make_cgroups() {
    local d parent
    for d in $(cgroup_dirs); do
        mkdir -p "$d"
        parent="$(dirname "$d")"
        if [[ -f "$d/cpuset.cpus" ]]; then
            cat "$parent/cpuset.cpus" >"$d/cpuset.cpus"
            cat "$parent/cpuset.mems" >"$d/cpuset.mems"
        fi
    done
}

# node_pids: every process in the node's cgroups (components, shims, pods).
node_pids() {
    local d
    for d in $(cgroup_dirs); do
        if [[ -d "$d" ]]; then find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null || true; fi
    done | sort -un
}

# start NAME CMD...: a node process, in the namespaces and in the node's
# cgroups before it runs (so everything it forks is there too), logging to
# $DIR/logs/NAME.log.
start() {
    local name="$1" procs
    shift
    procs="$(for d in $(cgroup_dirs); do printf '%s/cgroup.procs ' "$d"; done)"
    # shellcheck disable=SC2016
    in_node setsid sh -c 'for f in $0; do echo $$ >"$f"; done; exec "$@"' "$procs" "$@" \
        >"$DIR/logs/$name.log" 2>&1 </dev/null &
    echo $! >"$DIR/$name.pid"
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds.
wait_for() {
    local what="$1" secs="$2" start=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS - start > secs)); then
            log "$what not ready after ${secs}s"
            return 1
        fi
        sleep 0.2
    done
}

# === up ===

kubectl_node() { "$TEST_BIN/kubectl" --kubeconfig "$DIR/admin.kubeconfig" "$@"; }

apiserver_ready() {
    curl -fsS --max-time 2 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
        "https://$NODE_IP:6443/readyz"
}

node_ready() {
    [[ "$(kubectl_node get node "$NODE" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

running() {
    load_index 2>/dev/null && alive "$DIR/holder.pid" && alive "$DIR/kubelet.pid" && apiserver_ready >/dev/null 2>&1
}

record_host_sysctls() {
    local f="$NODES_DIR/host-sysctls"
    [[ -f "$f" ]] && return 0
    local s
    for s in "${KUBELET_SYSCTLS[@]}"; do
        echo "$s=$(sysctl -n "$s")"
    done >"$f"
}

up() {
    if running; then
        log "already running"
        echo "export KUBECONFIG=$DIR/admin.kubeconfig"
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "the edge node needs root (network namespaces, cgroups, mounts)"
    if [[ -d "$DIR" ]]; then down_quiet; fi
    local t0=$SECONDS
    TEST_BIN="$("$HERE/test-env.sh" | tail -n1)"
    ENV_DIR="$("$HERE/edge-env.sh" | tail -n1)"
    ENV_BIN="$ENV_DIR/bin"
    PAUSE_IMAGE="localhost/edge-node/pause:3.10"
    TOOLBOX_IMAGE="localhost/edge-node/toolbox:1"

    mkdir -p "$NODES_DIR"
    # A start that fails half-way takes down what it started; the logs stay.
    trap 'rc=$?; ((rc == 0)) || failed_up' EXIT
    exec 8>"$NODES_DIR/.lock"
    flock 8
    mkdir -p "$DIR/logs"
    pick_index >"$DIR/index"
    load_index
    echo "$NODE" >"$DIR/node-name"
    record_host_sysctls
    flock -u 8

    log "network namespace $NETNS, node IP $NODE_IP"
    ip netns add "$NETNS"
    ip link add "eqh$I" type veth peer name eth0 netns "$NETNS"
    ip addr add "$HOST_IP/24" dev "eqh$I"
    ip link set "eqh$I" up
    ip -n "$NETNS" addr add "$NODE_IP/24" dev eth0
    ip -n "$NETNS" link set eth0 up
    ip -n "$NETNS" link set lo up
    ip -n "$NETNS" route add default via "$HOST_IP"
    ip route add "$POD_CIDR" via "$NODE_IP"
    ip route add "$SERVICE_CIDR" via "$NODE_IP"
    ip netns exec "$NETNS" sysctl -qw net.ipv4.ip_forward=1
    ip netns exec "$NETNS" sysctl -qw net.ipv4.conf.all.route_localnet=1

    # The mount namespace is held by a sleeping process; every mount the node
    # makes (overlays, volumes, pod namespaces) lives and dies with it. In it:
    # a sysfs of the node's network namespace (with the host's cgroup mounts
    # moved back under it), and private /run, /var/lib/cni and
    # /var/log/containers, where runc, libcni and kubelet keep state at fixed
    # paths that two nodes must not share.
    make_cgroups
    mkdir -p /var/lib/cni /var/log/containers
    # shellcheck disable=SC2016
    nsenter --net="/run/netns/$NETNS" unshare --mount --propagation unchanged sh -c '
        set -e
        mount --make-rprivate /
        keep=$(mktemp -d)
        mount --rbind /sys/fs/cgroup "$keep"
        mount -t sysfs sysfs /sys
        mount --move "$keep" /sys/fs/cgroup
        rmdir "$keep"
        mount -t tmpfs -o mode=0755 tmpfs /run
        mount -t tmpfs -o mode=0755 tmpfs /var/lib/cni
        mount -t tmpfs -o mode=0755 tmpfs /var/log/containers
        mount --make-rshared /
        for f in $0; do echo $$ >"$f"; done
        exec sleep infinity
    ' "$(for d in $(cgroup_dirs); do printf '%s/cgroup.procs ' "$d"; done)" </dev/null >"$DIR/logs/holder.log" 2>&1 &
    echo $! >"$DIR/holder.pid"
    wait_for "mount namespace" 10 grep -q sleep "/proc/$(cat "$DIR/holder.pid")/cmdline" ||
        { cat "$DIR/logs/holder.log" >&2; exit 1; }

    make_pki
    local api="https://$NODE_IP:6443"
    kubeconfig admin admin "$api"
    kubeconfig controller-manager controller-manager "$api"
    kubeconfig scheduler scheduler "$api"
    kubeconfig kubelet kubelet "$api"
    kubeconfig kube-proxy kube-proxy "$api"
    write_containerd_config
    write_kubelet_config
    write_kube_proxy_config
    write_coredns_config
    write_local_path_manifest

    export PATH="$ENV_BIN:$PATH"
    log "starting etcd and kube-apiserver"
    start etcd "$TEST_BIN/etcd" --name "$NODE" --data-dir "$DIR/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster "$NODE=http://127.0.0.1:2380" --unsafe-no-fsync --log-level warn
    log "starting containerd"
    start containerd "$ENV_BIN/containerd" --config "$DIR/containerd/config.toml"
    wait_for "etcd" 30 in_node curl -fsS --max-time 1 http://127.0.0.1:2379/health
    start kube-apiserver "$TEST_BIN/kube-apiserver" \
        --etcd-servers http://127.0.0.1:2379 \
        --bind-address 0.0.0.0 --secure-port 6443 --advertise-address "$NODE_IP" \
        --cert-dir "$DIR/pki" \
        --tls-cert-file "$DIR/pki/apiserver.crt" --tls-private-key-file "$DIR/pki/apiserver.key" \
        --client-ca-file "$DIR/pki/ca.crt" \
        --kubelet-client-certificate "$DIR/pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$DIR/pki/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$DIR/pki/ca.crt" \
        --service-account-issuer "https://kubernetes.default.svc.cluster.local" \
        --service-account-key-file "$DIR/pki/sa.pub" \
        --service-account-signing-key-file "$DIR/pki/sa.key" \
        --authorization-mode Node,RBAC \
        --enable-admission-plugins NodeRestriction \
        --allow-privileged=true \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --service-node-port-range 30000-32767 \
        --kubelet-preferred-address-types InternalIP,Hostname
    wait_for "kube-apiserver" 90 apiserver_ready || { tail -20 "$DIR/logs/kube-apiserver.log" >&2; exit 1; }

    log "starting the controller manager and the scheduler"
    start kube-controller-manager "$ENV_BIN/kube-controller-manager" \
        --kubeconfig "$DIR/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$DIR/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$DIR/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false \
        --use-service-account-credentials \
        --service-account-private-key-file "$DIR/pki/sa.key" \
        --root-ca-file "$DIR/pki/ca.crt" \
        --cluster-signing-cert-file "$DIR/pki/ca.crt" --cluster-signing-key-file "$DIR/pki/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --controllers '*,-nodeipam'
    start kube-scheduler "$ENV_BIN/kube-scheduler" \
        --kubeconfig "$DIR/scheduler.kubeconfig" \
        --authentication-kubeconfig "$DIR/scheduler.kubeconfig" \
        --authorization-kubeconfig "$DIR/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false

    log "importing the node's images"
    wait_for "containerd" 30 in_node "$ENV_BIN/ctr" -a "$DIR/containerd.sock" version ||
        { tail -20 "$DIR/logs/containerd.log" >&2; exit 1; }
    local image
    for image in "$ENV_DIR"/images/*.tar; do
        load_archive "$image"
    done

    log "starting kubelet, kube-proxy, CoreDNS and local-path"
    start kubelet "$ENV_BIN/kubelet" \
        --config "$DIR/kubelet/config.yaml" \
        --kubeconfig "$DIR/kubelet.kubeconfig" \
        --root-dir "$DIR/kubelet/root" \
        --hostname-override "$NODE" \
        --node-ip "$NODE_IP"
    start kube-proxy "$ENV_BIN/kube-proxy" --config "$DIR/kube-proxy/config.yaml"
    start coredns "$ENV_BIN/coredns" -conf "$DIR/coredns/Corefile"
    kubectl_node apply -f "$DIR/local-path/manifest.yaml" >/dev/null
    start local-path "$ENV_BIN/local-path-provisioner" start \
        --kubeconfig "$DIR/admin.kubeconfig" \
        --namespace local-path-storage \
        --service-account-name local-path-provisioner \
        --configmap-name local-path-config \
        --config "$DIR/local-path/config.json" \
        --helper-pod-file "$DIR/local-path/helper-pod.yaml" \
        --helper-image "$TOOLBOX_IMAGE"

    wait_for "node $NODE" 90 node_ready || { tail -20 "$DIR/logs/kubelet.log" >&2; exit 1; }
    # Pods can be created once the controller manager made the default
    # ServiceAccount (and the node can be used the moment `up` returns).
    wait_for "the default ServiceAccount" 60 kubectl_node -n default get serviceaccount default ||
        { tail -20 "$DIR/logs/kube-controller-manager.log" >&2; exit 1; }
    if [[ -n "$OWNER_PID" ]]; then
        start_reaper "$OWNER_PID" "$HERE/edge.sh" "$NAME"
    fi
    trap - EXIT
    log "ready in $((SECONDS - t0))s"
    echo "export KUBECONFIG=$DIR/admin.kubeconfig"
}

failed_up() {
    local keep="$NODES_DIR/$NAME.failed"
    rm -rf "$keep"
    if [[ -d "$DIR/logs" ]]; then cp -r "$DIR/logs" "$keep"; fi
    down_quiet
    log "start failed; the logs are in $keep"
}

# load_archive FILE: imports an image archive into the node's containerd.
load_archive() {
    in_node "$ENV_BIN/ctr" -a "$DIR/containerd.sock" -n k8s.io images import --no-unpack=false "$1" >/dev/null
}

# === down ===

kill_node_processes() {
    local pids round
    for round in $(seq 1 50); do
        pids="$(node_pids)"
        [[ -z "$pids" ]] && return 0
        if ((round < 30)); then
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
        else
            # shellcheck disable=SC2086
            kill -KILL $pids 2>/dev/null || true
        fi
        sleep 0.2
    done
    log "warning: processes left in the node's cgroups: $(node_pids | tr '\n' ' ')"
}

remove_cgroups() {
    local d
    for d in $(cgroup_dirs); do
        [[ -d "$d" ]] || continue
        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
        if [[ -d "$d" ]]; then log "warning: could not remove cgroup $d"; fi
    done
}

restore_host_sysctls() {
    local f="$NODES_DIR/host-sysctls"
    [[ -f "$f" ]] || return 0
    # Only when no other node is running.
    local other
    for other in "$NODES_DIR"/*/holder.pid; do
        [[ -f "$other" && "$other" != "$DIR/holder.pid" ]] && alive "$other" && return 0
    done
    sysctl -q -p "$f" >/dev/null 2>&1 || log "warning: could not restore every sysctl of $f"
    rm -f "$f"
}

down_quiet() {
    load_index 2>/dev/null || { rm -rf "$DIR"; return 0; }
    if [[ -d "$DIR" ]]; then
        # Stop kubelet first so it does not restart what is being stopped.
        if [[ -f "$DIR/kubelet.pid" ]]; then kill -TERM "$(cat "$DIR/kubelet.pid")" 2>/dev/null || true; fi
    fi
    kill_node_processes
    remove_cgroups
    ip route del "$POD_CIDR" 2>/dev/null || true
    ip route del "$SERVICE_CIDR" 2>/dev/null || true
    ip link del "eqh$I" 2>/dev/null || true
    ip netns del "$NETNS" 2>/dev/null || true
    # The kernel frees a namespace (and its veth end) asynchronously.
    wait_for "the removal of $NETNS" 10 bash -c "! ip link show eqh$I" || true
    restore_host_sysctls
    rm -rf "$DIR"
}

down() {
    if [[ ! -d "$DIR" ]]; then
        log "not running"
        return 0
    fi
    down_quiet
    log "stopped; no processes, mounts, namespaces or routes left"
}

status() {
    if running; then
        echo "running: export KUBECONFIG=$DIR/admin.kubeconfig"
    else
        echo "not running"
        return 1
    fi
}

load() {
    ((${#ARGS[@]} == 1)) || die "usage: edge.sh load [--name NAME] FILE"
    running || die "not running (make edge-up EDGE=$NAME)"
    ENV_DIR="$("$HERE/edge-env.sh" --check | tail -n1)"
    ENV_BIN="$ENV_DIR/bin"
    load_archive "${ARGS[0]}"
    log "loaded $(basename "${ARGS[0]}")"
}

list() {
    local d
    for d in "$NODES_DIR"/*/; do
        [[ -f "$d/holder.pid" ]] || continue
        NAME="$(basename "$d")" DIR="${d%/}"
        alive "$DIR/holder.pid" && echo "$NAME"
    done
    return 0
}

case "$cmd" in
    up) up ;;
    down) down ;;
    status) status ;;
    load) load ;;
    list) list ;;
    *) echo "usage: $0 up|down|status|load FILE|list [--name NAME]" >&2; exit 2 ;;
esac
