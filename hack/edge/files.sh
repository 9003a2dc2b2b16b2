# The files an edge node runs from, written into its directory by
# hack/edge.sh (sourced; uses its variables: DIR, NODE, NODE_IP, POD_CIDR,
# API_SERVICE_IP, CGROUP, ENV_BIN, PAUSE_IMAGE, TOOLBOX_IMAGE).
#
#   make_pki, kubeconfig          the node's CA, certificates and kubeconfigs
#   write_containerd_config       containerd and the CNI bridge
#   write_kubelet_config, write_kube_proxy_config, write_coredns_config
#   write_local_path_manifest     the default StorageClass and its helper pod

# === PKI and kubeconfigs ===

# cert NAME CN [O] [SANS]: a certificate signed by the node's CA.
cert() {
    local name="$1" cn="$2" org="${3:-}" sans="${4:-}"
    local subj="/CN=$cn"
    if [[ -n "$org" ]]; then subj="/O=$org$subj"; fi
    (
        cd "$DIR/pki"
        {
            if [[ -n "$sans" ]]; then
                echo "subjectAltName = $sans"
                echo "extendedKeyUsage = serverAuth, clientAuth"
            else
                echo "extendedKeyUsage = clientAuth"
            fi
        } >"$name.ext"
        openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
        openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$name.crt" \
            -days 3650 -extfile "$name.ext" 2>/dev/null
        rm -f "$name.csr" "$name.ext"
        chmod 600 "$name.key"
    )
}

make_pki() {
    mkdir -p "$DIR/pki"
    (
        cd "$DIR/pki"
        openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
            -subj "/CN=edge-quota-edge-ca" 2>/dev/null
        openssl genrsa -out sa.key 2048 2>/dev/null
        openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
        chmod 600 ca.key sa.key
    )
    cert apiserver kube-apiserver "" \
        "IP:$NODE_IP, IP:$API_SERVICE_IP, IP:127.0.0.1, DNS:localhost, DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.cluster.local"
    cert admin admin system:masters
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
    cert controller-manager system:kube-controller-manager
    cert scheduler system:kube-scheduler
    cert kubelet "system:node:$NODE" system:nodes
    cert kubelet-serving "system:node:$NODE" system:nodes "IP:$NODE_IP, DNS:$NODE"
    cert kube-proxy system:kube-proxy
}

# kubeconfig NAME CERT SERVER: a kubeconfig for a client certificate.
kubeconfig() {
    cat >"$DIR/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $NODE
  cluster:
    server: $3
    certificate-authority-data: $(base64 -w0 <"$DIR/pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$DIR/pki/$2.crt")
    client-key-data: $(base64 -w0 <"$DIR/pki/$2.key")
contexts:
- name: $NODE
  context:
    cluster: $NODE
    user: $2
    namespace: default
current-context: $NODE
EOF
    chmod 600 "$DIR/$1.kubeconfig"
}

# === configuration files ===

write_containerd_config() {
    mkdir -p "$DIR/containerd" "$DIR/cni/net.d"
    cat >"$DIR/containerd/config.toml" <<EOF
version = 3
root = "$DIR/containerd/root"
state = "$DIR/containerd/state"
# Nothing from /etc/containerd or /opt: this node is all in its directory.
imports = []

[grpc]
  address = "$DIR/containerd.sock"

[plugins.'io.containerd.internal.v1.opt']
  path = "$DIR/containerd/opt"

[plugins.'io.containerd.nri.v1.nri']
  disable = true

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"

[plugins.'io.containerd.cri.v1.runtime']
  # This VM's bounding set lacks CAP_SYS_RESOURCE: a negative oom_score_adj
  # is refused even for root, so containers keep the runtime's score or more.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$ENV_BIN"]
    conf_dir = "$DIR/cni/net.d"
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$ENV_BIN/runc"
        SystemdCgroup = false
EOF
    cat >"$DIR/cni/net.d/10-edge.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "edge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$DIR/cni/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

write_kubelet_config() {
    mkdir -p "$DIR/kubelet"
    # Pods with dnsPolicy Default get this: nothing outside resolves here.
    echo "nameserver $NODE_IP" >"$DIR/kubelet/resolv.conf"
    cat >"$DIR/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $DIR/pki/kubelet-serving.crt
tlsPrivateKeyFile: $DIR/pki/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $DIR/pki/ca.crt
authorization:
  mode: Webhook
containerRuntimeEndpoint: unix://$DIR/containerd.sock
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $DIR/kubelet/resolv.conf
podLogsDir: $DIR/pod-logs
failSwapOn: false
# No CAP_SYS_RESOURCE here: a negative score is refused (only logged).
oomScoreAdj: 0
protectKernelDefaults: false
# A shared machine's disk is often fuller than kubelet's defaults allow:
# evict only when it is really full, and never collect the node's images.
evictionHard:
  memory.available: 50Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
EOF
}

write_kube_proxy_config() {
    mkdir -p "$DIR/kube-proxy"
    cat >"$DIR/kube-proxy/config.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE
bindAddress: $NODE_IP
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
oomScoreAdj: 0
# conntrack limits are host-wide: leave them as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

write_coredns_config() {
    mkdir -p "$DIR/coredns"
    # Only the cluster's zones: there is no network outside to forward to.
    cat >"$DIR/coredns/Corefile" <<EOF
.:53 {
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $DIR/admin.kubeconfig $NODE
        pods insecure
        ttl 5
    }
    cache 5
    loop
}
EOF
}

# The local-path provisioner's namespace, its ConfigMap (the helper pod's
# scripts) and the default StorageClass, as k3s ships them.
write_local_path_manifest() {
    mkdir -p "$DIR/local-path" "$DIR/storage"
    cat >"$DIR/local-path/config.json" <<EOF
{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["$DIR/storage"]}]}
EOF
    cat >"$DIR/local-path/helper-pod.yaml" <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: helper-pod
spec:
  priorityClassName: system-node-critical
  tolerations:
    - key: node.kubernetes.io/disk-pressure
      operator: Exists
      effect: NoSchedule
  containers:
    - name: helper-pod
      image: $TOOLBOX_IMAGE
      imagePullPolicy: Never
EOF
    cat >"$DIR/local-path/manifest.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: local-path-storage
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: local-path-provisioner
  namespace: local-path-storage
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: local-path-config
  namespace: local-path-storage
data:
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "\$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "\$VOL_DIR"
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: local-path
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
EOF
}
