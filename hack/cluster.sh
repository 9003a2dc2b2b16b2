#!/usr/bin/env bash
# Starts and stops a real Kubernetes control plane (etcd + kube-apiserver) on
# free loopback ports, the way controller-runtime's envtest does: a small CA,
# a serving certificate, an admin client certificate in system:masters, a
# service-account signing key and issuer, RBAC authorization.
#
#   hack/cluster.sh up   [--name NAME] [--owner-pid PID]
#   hack/cluster.sh down [--name NAME]
#   hack/cluster.sh status [--name NAME]
#
# Each cluster lives in its own directory ($EDGE_QUOTA_CACHE/clusters/NAME:
# certificates, etcd data, logs, pids, kubeconfig), so several run side by
# side. With --owner-pid the cluster stops by itself when that process exits
# (test binaries use this). The last line `up` prints is
#   export KUBECONFIG=<path>
#
# There is no controller-manager and no kubelet: no pods run, namespaces never
# finish deleting, no default ServiceAccounts appear. Tests create what they
# need and use unique namespaces.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=lib.sh
source "$HERE/lib.sh"
CACHE_ROOT="${EDGE_QUOTA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-quota}"
CONTEXT="edge-quota-test-env"

cmd="${1:-}"
shift || true
NAME="default"
OWNER_PID=""
while (($#)); do
    case "$1" in
        --name) NAME="$2"; shift 2 ;;
        --owner-pid) OWNER_PID="$2"; shift 2 ;;
        *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done
if [[ ! "$NAME" =~ ^[A-Za-z0-9._-]+$ ]]; then
    echo "cluster.sh: --name must match [A-Za-z0-9._-]+" >&2
    exit 2
fi
DIR="$CACHE_ROOT/clusters/$NAME"

log() { echo "cluster[$NAME]: $*" >&2; }

stop_pid() {
    local pidfile="$1"
    alive "$pidfile" || return 0
    local pid
    pid="$(cat "$pidfile")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        alive "$pidfile" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

readyz() {
    curl -fsS --max-time 2 --cacert "$DIR/pki/ca.crt" --cert "$DIR/pki/admin.crt" --key "$DIR/pki/admin.key" \
        "https://127.0.0.1:$(cat "$DIR/apiserver.port")/readyz" >/dev/null 2>&1
}

make_pki() {
    local pki="$DIR/pki"
    mkdir -p "$pki"
    (
        cd "$pki"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
            -subj "/CN=edge-quota-test-ca" 2>/dev/null
        # Serving certificate for the API server.
        cat >apiserver.ext <<EOF
subjectAltName = IP:127.0.0.1, IP:10.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc
extendedKeyUsage = serverAuth
EOF
        openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
        openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out apiserver.crt \
            -days 3650 -extfile apiserver.ext 2>/dev/null
        # Admin client certificate: user "admin" in group system:masters.
        echo "extendedKeyUsage = clientAuth" >client.ext
        openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
        openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out admin.crt \
            -days 3650 -extfile client.ext 2>/dev/null
        # Service-account token signing key pair.
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        chmod 600 ./*.key
    )
}

write_kubeconfig() {
    local port="$1"
    cat >"$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $CONTEXT
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority-data: $(base64 -w0 <"$DIR/pki/ca.crt")
users:
- name: admin
  user:
    client-certificate-data: $(base64 -w0 <"$DIR/pki/admin.crt")
    client-key-data: $(base64 -w0 <"$DIR/pki/admin.key")
contexts:
- name: $CONTEXT
  context:
    cluster: $CONTEXT
    user: admin
    namespace: default
current-context: $CONTEXT
EOF
    chmod 600 "$DIR/kubeconfig"
}

up() {
    if alive "$DIR/etcd.pid" && alive "$DIR/kube-apiserver.pid" && readyz; then
        log "already running"
        echo "export KUBECONFIG=$DIR/kubeconfig"
        return 0
    fi
    down_quiet
    local bin_dir="${EDGE_QUOTA_TEST_ENV_DIR:-}"
    if [[ -z "$bin_dir" ]]; then
        bin_dir="$("$HERE/test-env.sh" | tail -n1)"
    fi
    for b in etcd kube-apiserver; do
        if [[ ! -x "$bin_dir/$b" ]]; then
            log "error: $bin_dir/$b is missing; build it with: make test-env"
            exit 1
        fi
    done

    mkdir -p "$DIR"
    make_pki

    # Free ports are picked before the servers bind them, so another process
    # can take one in between (seen in CI: "bind: address already in use").
    # Such a start is retried on new ports; any other failure is final.
    local attempt rc
    for attempt in 1 2 3; do
        rc=0
        start_servers "$bin_dir" || rc=$?
        ((rc == 0)) && break
        down_quiet
        ((rc == 2 && attempt < 3)) || exit 1
        log "a port was taken meanwhile; retrying on new ports (attempt $((attempt + 1)) of 3)"
        mkdir -p "$DIR"
        make_pki
    done

    if [[ -n "$OWNER_PID" ]]; then
        # Stop the cluster when its owner (a test binary) exits.
        start_reaper "$OWNER_PID" "$HERE/cluster.sh" "$NAME"
    fi
    echo "export KUBECONFIG=$DIR/kubeconfig"
}

# start_servers BIN_DIR: etcd and kube-apiserver on fresh ports, until
# /readyz. Returns 2 when a server could not bind its port, 1 on other errors.
start_servers() {
    local bin_dir="$1"
    local etcd_port peer_port api_port
    etcd_port="$(free_port)"
    peer_port="$(free_port)"
    api_port="$(free_port)"
    echo "$api_port" >"$DIR/apiserver.port"
    echo "$etcd_port" >"$DIR/etcd.port"

    log "starting etcd on 127.0.0.1:$etcd_port"
    setsid "$bin_dir/etcd" \
        --name "$NAME" \
        --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" \
        --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "$NAME=http://127.0.0.1:$peer_port" \
        --unsafe-no-fsync \
        --log-level warn \
        >"$DIR/etcd.log" 2>&1 </dev/null &
    echo $! >"$DIR/etcd.pid"
    for _ in $(seq 1 100); do
        curl -fsS --max-time 1 "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break
        if ! alive "$DIR/etcd.pid"; then
            log "etcd exited; see $DIR/etcd.log"
            tail -20 "$DIR/etcd.log" >&2
            grep -q "address already in use" "$DIR/etcd.log" && return 2
            return 1
        fi
        sleep 0.1
    done

    log "starting kube-apiserver on 127.0.0.1:$api_port"
    setsid "$bin_dir/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$etcd_port" \
        --secure-port "$api_port" \
        --bind-address 127.0.0.1 \
        --advertise-address 127.0.0.1 \
        --cert-dir "$DIR/pki" \
        --tls-cert-file "$DIR/pki/apiserver.crt" \
        --tls-private-key-file "$DIR/pki/apiserver.key" \
        --client-ca-file "$DIR/pki/ca.crt" \
        --service-account-issuer "https://127.0.0.1:$api_port/" \
        --service-account-key-file "$DIR/pki/sa.pub" \
        --service-account-signing-key-file "$DIR/pki/sa.key" \
        --api-audiences "https://127.0.0.1:$api_port/" \
        --authorization-mode RBAC \
        --disable-admission-plugins ServiceAccount \
        --allow-privileged=true \
        --service-cluster-ip-range 10.0.0.0/24 \
        >"$DIR/kube-apiserver.log" 2>&1 </dev/null &
    echo $! >"$DIR/kube-apiserver.pid"

    local start=$SECONDS
    until readyz; do
        if ! alive "$DIR/kube-apiserver.pid"; then
            log "kube-apiserver exited; see $DIR/kube-apiserver.log"
            tail -30 "$DIR/kube-apiserver.log" >&2
            grep -q "address already in use" "$DIR/kube-apiserver.log" && return 2
            return 1
        fi
        if ((SECONDS - start > 90)); then
            log "kube-apiserver not ready after 90 s; see $DIR/kube-apiserver.log"
            return 1
        fi
        sleep 0.2
    done
    write_kubeconfig "$api_port"
    log "ready in $((SECONDS - start))s"
}

down_quiet() {
    stop_pid "$DIR/kube-apiserver.pid"
    stop_pid "$DIR/etcd.pid"
    rm -rf "$DIR"
}

down() {
    if [[ ! -d "$DIR" ]]; then
        log "not running"
        return 0
    fi
    down_quiet
    log "stopped"
}

status() {
    if alive "$DIR/etcd.pid" && alive "$DIR/kube-apiserver.pid" && readyz; then
        echo "running: export KUBECONFIG=$DIR/kubeconfig"
    else
        echo "not running"
        return 1
    fi
}

case "$cmd" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) echo "usage: $0 up|down|status [--name NAME] [--owner-pid PID]" >&2; exit 2 ;;
esac
