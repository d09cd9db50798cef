#!/usr/bin/env bash
# A local Kubernetes control plane without Docker or minikube: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok's fake nodes, every binary built from the Go module
# proxy at a pinned version into .state/cluster/bin. See docs/cluster.md.
#   build    build the binaries unless up to date (`build --force` rebuilds; warm Go caches: about a minute)
#   up       start the control plane, wait until it is ready (idempotent)
#   deploy   up, KEDA's CRDs, server-side apply of k8s/overlays/$OVERLAY (minikube), wait for the rollouts
#   down     stop everything `up` started; `down --purge` also deletes its data
#   status   what runs, and where
#   env      print the KUBECONFIG line to eval in a shell
#   k9s      build k9s (once) and open it on the running control plane
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${CLUSTER_STATE:-$ROOT/.state/cluster}"
# Built binaries apart from a control plane's state: the test session runs its own control plane (its
# own state folder and ports) on the same binaries.
BIN="${CLUSTER_BIN:-$ROOT/.state/cluster/bin}"
API_PORT="${CLUSTER_API_PORT:-6443}"
ETCD_PORT="${CLUSTER_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${CLUSTER_ETCD_PEER_PORT:-2380}"
KUBECONFIG_FILE="$STATE/kubeconfig"
# Only recorded (the Service `kubernetes` points at it), never reached. The API server refuses a loopback
# advertise address; 192.0.2.0/24 is reserved for documentation.
ADVERTISE_ADDRESS=192.0.2.1
SERVICE_CIDR=10.96.0.0/16
KUBERNETES_SERVICE_IP=10.96.0.1
POD_CIDR=10.244.0.0/16

ETCD_VERSION=v3.6.16
KUBE_VERSION=v1.34.4
KUBE_STAGING_VERSION=v0.34.4
KWOK_VERSION=v0.8.0
K9S_VERSION=v0.50.16
# KEDA's CRDs, read from its Go module's zip (config/crd/bases).
KEDA_VERSION=v2.21.0
# etcd 3.6 and kwok 0.8 declare `go 1.26.0`: an older go fetches this toolchain (GOTOOLCHAIN).
GO_TOOLCHAIN=go1.26.8
GO_MIN_MINOR=26

log() { echo "cluster: $*" >&2; }
die() { echo "cluster: $*" >&2; exit 1; }

# --- build ---------------------------------------------------------------------------------------

# Sets GO to a go command able to build the pinned modules. A go >= 1.21 fetches the pinned toolchain
# itself (GOTOOLCHAIN: the golang.org/toolchain module, through the module proxy). An older go (Debian
# bookworm's golang-go is 1.19, installed here when there is no go at all) downloads that module with
# `go mod download`, which checks its hash, and the build runs with the toolchain unpacked into .state.
find_go() {
  local gobin="${GO:-go}" minor
  if ! command -v "$gobin" >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      log "no go: installing Debian's golang-go to fetch $GO_TOOLCHAIN with"
      apt-get install -y -qq golang-go >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq golang-go >/dev/null; }
      gobin=go
    else
      die "no go found: install Go >= 1.21 (it fetches $GO_TOOLCHAIN itself), or set GO=/path/to/go"
    fi
  fi
  minor="$("$gobin" version | sed -nE 's/^go version go1\.([0-9]+).*/\1/p')"
  [ -n "$minor" ] || die "cannot tell the version of $gobin ($("$gobin" version 2>&1))"
  if [ "$minor" -ge "$GO_MIN_MINOR" ]; then
    GO="$gobin"
  elif [ "$minor" -ge 21 ]; then
    log "go 1.$minor is older than etcd $ETCD_VERSION and kwok $KWOK_VERSION need: using $GO_TOOLCHAIN (GOTOOLCHAIN)"
    export GOTOOLCHAIN="$GO_TOOLCHAIN"
    GO="$gobin"
  else
    fetch_toolchain "$gobin"
    GO="$BIN/go-toolchain/bin/go"
  fi
}

fetch_toolchain() {
  local root="$BIN/go-toolchain" arch dir
  if [ ! -x "$root/bin/go" ]; then
    arch="$(uname -m)"; case "$arch" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; esac
    log "go $("$1" version | cut -d' ' -f3) cannot fetch toolchains itself: downloading golang.org/toolchain $GO_TOOLCHAIN"
    dir="$(cd / && GO111MODULE=on GOFLAGS= GOWORK=off "$1" mod download -json \
      "golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$arch" | sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p')"
    [ -n "$dir" ] || die "could not download golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-$arch"
    mkdir -p "$BIN"
    rm -rf "$root.tmp"
    cp -r "$dir" "$root.tmp"
    # The module cache keeps files read-only and without their exec bits.
    chmod -R u+w "$root.tmp"
    chmod +x "$root.tmp"/bin/* "$root.tmp"/pkg/tool/*/*
    mv "$root.tmp" "$root"
  fi
  export GOTOOLCHAIN=local GOROOT="$root"
}

# Fails when kubernetes' go.mod names a staging module the wrapper does not replace (or the reverse):
# a missing replace would build against a mismatched published version, or not at all.
check_staging_list() {
  local gomod want have
  gomod="$(cd / && GOFLAGS= GOWORK=off "$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -nE 's/^\s*"GoMod": "(.*)",?$/\1/p')"
  want="$(sed -nE 's#^\s*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\1#p' "$gomod" | sort)"
  have="$(sed -nE "s#^\s*(k8s\.io/[a-z0-9-]+) => k8s\.io/[a-z0-9-]+ $KUBE_STAGING_VERSION\$#\1#p" "$ROOT/cluster/kube/go.mod" | sort)"
  [ "$want" = "$have" ] || die "cluster/kube/go.mod's replace list differs from kubernetes $KUBE_VERSION's staging modules:
$(diff <(echo "$want") <(echo "$have") || true)"
}

# What the binaries were built from: the pinned versions and the wrapper modules' go.mod and go.sum.
stamp() {
  { echo "$ETCD_VERSION $KUBE_VERSION $KWOK_VERSION $KEDA_VERSION"; cat "$ROOT"/cluster/*/go.mod "$ROOT"/cluster/*/go.sum 2>/dev/null; } \
    | sha256sum | cut -d' ' -f1
}

built() {
  local f
  for f in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwok-stages.yaml kwok-storage-class.yaml keda-crds.yaml; do
    [ -e "$BIN/$f" ] || return 1
  done
  [ "$(cat "$BIN/stamp" 2>/dev/null)" = "$(stamp)" ]
}

build() {
  if [ "${1:-}" != "--force" ] && built; then
    log "binaries in $BIN are up to date (scripts/cluster.sh build --force rebuilds them)"; return
  fi
  find_go
  mkdir -p "$BIN"
  local started=$SECONDS
  # -mod=mod: the wrapper modules carry no vendor folder; their go.sum (committed) pins every hash.
  export GOFLAGS="-mod=mod -trimpath"
  (cd "$ROOT/cluster/etcd" && "$GO" build -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
  log "etcd $ETCD_VERSION built ($((SECONDS - started)) s)"
  check_staging_list
  # The version the binaries report (/version, kubectl version); without it they say v0.0.0.
  local minor ld="-s -w" x
  minor="$(echo "$KUBE_VERSION" | cut -d. -f2)"
  for x in "gitVersion=$KUBE_VERSION" "gitMajor=1" "gitMinor=$minor" "gitTreeState=clean"; do
    ld+=" -X k8s.io/component-base/version.$x -X k8s.io/client-go/pkg/version.$x"
  done
  (cd "$ROOT/cluster/kube" && "$GO" build -ldflags "$ld" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
  log "kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBE_VERSION built ($((SECONDS - started)) s)"
  (cd "$ROOT/cluster/kwok" && "$GO" build -ldflags "-s -w" -o "$BIN/kwok" sigs.k8s.io/kwok/cmd/kwok)
  log "kwok $KWOK_VERSION built ($((SECONDS - started)) s)"
  # kwok's stages ship in its module: nodes initialised and kept alive through their Lease, pods made
  # Ready at once (the "fast" stages), PVCs of the default StorageClass provisioned and bound (volume/fast).
  local stage f
  stage="$(module_dir "sigs.k8s.io/kwok@$KWOK_VERSION")/kustomize/stage"
  for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
           pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml \
           volume/fast/pv-bind.yaml volume/fast/pv-delete.yaml volume/fast/pvc-provision.yaml \
           volume/fast/pvc-delete.yaml; do
    echo "---"; cat "$stage/$f"
  done > "$BIN/kwok-stages.yaml"
  cp "$stage/volume/fast/storage-class.yaml" "$BIN/kwok-storage-class.yaml"
  # KEDA's CustomResourceDefinitions, from its module (the KEDA overlay's ScaledObject needs them).
  for f in "$(module_dir "github.com/kedacore/keda/v2@$KEDA_VERSION")"/config/crd/bases/*.yaml; do
    echo "---"; cat "$f"
  done > "$BIN/keda-crds.yaml"
  stamp > "$BIN/stamp"
  log "built into $BIN in $((SECONDS - started)) s"
}

# The extracted folder of a module version in the module cache (downloaded through the module proxy).
module_dir() {
  (cd / && GOFLAGS= GOWORK=off "$GO" mod download -json "$1") | sed -nE 's/^\s*"Dir": "(.*)",?$/\1/p'
}


# --- control plane -------------------------------------------------------------------------------

kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" --cache-dir "$STATE/kube-cache" "$@"; }

# The CA, the API server's serving certificate, an admin client certificate (group system:masters) for
# kubectl, the controllers, the scheduler and kwok, and the service-account signing key. Made once.
pki() {
  local d="$STATE/pki"
  [ -s "$d/admin.crt" ] && return
  mkdir -p "$d"; chmod 700 "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=mp3converter-local-cluster-ca" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  printf '%s\n' \
    "subjectAltName=IP:127.0.0.1,IP:$ADVERTISE_ADDRESS,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
    "extendedKeyUsage=serverAuth" "keyUsage=digitalSignature,keyEncipherment" > "$d/apiserver.ext"
  printf '%s\n' "extendedKeyUsage=clientAuth" "keyUsage=digitalSignature,keyEncipherment" > "$d/admin.ext"
  local name subj
  for name in apiserver admin; do
    subj="/CN=kube-apiserver"
    [ "$name" = admin ] && subj="/O=system:masters/CN=local-admin"
    openssl req -newkey rsa:2048 -nodes -subj "$subj" -keyout "$d/$name.key" -out "$d/$name.csr" 2>/dev/null
    openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 3650 \
      -extfile "$d/$name.ext" -out "$d/$name.crt" 2>/dev/null
  done
  openssl genrsa -out "$d/sa.key" 2048 2>/dev/null
  openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
  chmod 600 "$d"/*.key
}

kubeconfig() {
  local d="$STATE/pki"
  rm -f "$KUBECONFIG_FILE"
  kc config set-cluster local --server "https://127.0.0.1:$API_PORT" --certificate-authority "$d/ca.crt" --embed-certs >/dev/null
  kc config set-credentials admin --client-certificate "$d/admin.crt" --client-key "$d/admin.key" --embed-certs >/dev/null
  kc config set-context local --cluster local --user admin --namespace mp3converter >/dev/null
  kc config use-context local >/dev/null
  chmod 600 "$KUBECONFIG_FILE"
}

pidfile() { echo "$STATE/run/$1.pid"; }

running() {
  local pid
  pid="$(cat "$(pidfile "$1")" 2>/dev/null)" || return 1
  kill -0 "$pid" 2>/dev/null
}

# Starts a component in its own session (so `down` stops it and its children), output to logs/<name>.log.
start() {
  local name="$1"; shift
  running "$name" && return
  mkdir -p "$STATE/run" "$STATE/logs"
  setsid "$@" >"$STATE/logs/$name.log" 2>&1 < /dev/null &
  echo $! > "$(pidfile "$name")"
}

wait_for() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || ! running "$what"; then
      log "$what not ready after $timeout s or exited; last lines of $STATE/logs/$what.log:"
      tail -n 20 "$STATE/logs/$what.log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

nodes_ready() {
  local want have
  want="$(kc get nodes -o name | wc -l)"
  have="$(kc get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)"
  [ "$want" -gt 0 ] && [ "$want" = "$have" ]
}

up() {
  built || { log "binaries missing or stale: building"; build; }
  if running kube-apiserver && kc get --raw /readyz >/dev/null 2>&1; then
    log "already running: export KUBECONFIG=$KUBECONFIG_FILE"; return
  fi
  local port started=$SECONDS d="$STATE/pki"
  if ! running etcd && ! running kube-apiserver; then
    for port in "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT"; do
      port_free "$port" || die "port $port is taken (set CLUSTER_API_PORT, CLUSTER_ETCD_PORT, CLUSTER_ETCD_PEER_PORT)"
    done
  fi
  mkdir -p "$STATE"
  pki
  kubeconfig
  # No fsync: this etcd holds throw-away test data, and fsyncs on a shared disk make every write slow.
  start etcd "$BIN/etcd" --name local --data-dir "$STATE/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "local=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync
  start kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --secure-port "$API_PORT" --advertise-address "$ADVERTISE_ADDRESS" \
    --cert-dir "$STATE/apiserver-certs" \
    --tls-cert-file "$d/apiserver.crt" --tls-private-key-file "$d/apiserver.key" --client-ca-file "$d/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$d/sa.pub" --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --authorization-mode RBAC --anonymous-auth=false \
    --enable-admission-plugins PodSecurity,DefaultStorageClass,NamespaceLifecycle,ServiceAccount,LimitRanger,ResourceQuota \
    --allow-privileged=false --profiling=false
  wait_for kube-apiserver 120 kc get --raw /readyz
  start kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false \
    --service-account-private-key-file "$d/sa.key" --root-ca-file "$d/ca.crt" --use-service-account-credentials \
    --cluster-cidr "$POD_CIDR" --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
  start kube-scheduler "$BIN/kube-scheduler" \
    --kubeconfig "$KUBECONFIG_FILE" --authentication-kubeconfig "$KUBECONFIG_FILE" --authorization-kubeconfig "$KUBECONFIG_FILE" \
    --bind-address 127.0.0.1 --secure-port 0 --leader-elect=false --profiling=false
  # The nodes kwok plays (it only acts on nodes with its annotation) and the default StorageClass that
  # its volume stages provision for.
  kc apply --server-side -f "$ROOT/cluster/nodes.yaml" -f "$BIN/kwok-storage-class.yaml" >/dev/null
  start kwok "$BIN/kwok" --kubeconfig "$KUBECONFIG_FILE" --config "$BIN/kwok-stages.yaml" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
    --node-lease-duration-seconds 40 --cidr "$POD_CIDR" --node-ip "$ADVERTISE_ADDRESS"
  wait_for kwok 60 nodes_ready
  # The service-account controllers are up once the default namespace has its ServiceAccount.
  wait_for kube-controller-manager 60 kc -n default get serviceaccount default
  running kube-scheduler || die "kube-scheduler exited: see $STATE/logs/kube-scheduler.log"
  log "ready in $((SECONDS - started)) s: export KUBECONFIG=$KUBECONFIG_FILE"
}

down() {
  local name pid pids=()
  # All at once: every component shuts down in 1 to 3 s, and nothing here needs an order.
  for name in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    pid="$(cat "$(pidfile "$name")" 2>/dev/null)" || continue
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
    rm -f "$(pidfile "$name")"
  done
  for pid in "${pids[@]}"; do
    # At most 5 s: the API server can wait much longer for open watches to end, and this state is throw-away.
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  if [ "${1:-}" = "--purge" ]; then
    rm -rf "$STATE/etcd" "$STATE/logs" "$STATE/run" "$STATE/kube-cache" "$STATE/apiserver-certs"
  fi
  log "stopped"
}

status() {
  local name
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler kwok; do
    if running "$name"; then echo "$name: running (pid $(cat "$(pidfile "$name")"), log $STATE/logs/$name.log)"
    else echo "$name: stopped"; fi
  done
  if running kube-apiserver; then echo "export KUBECONFIG=$KUBECONFIG_FILE"; fi
}

# The system's objects in the running control plane: KEDA's CRDs, then the overlay, until rolled out.
deploy() {
  up
  kc apply --server-side -f "$BIN/keda-crds.yaml" >/dev/null
  kc wait --for condition=Established --timeout 60s -f "$BIN/keda-crds.yaml" >/dev/null
  kc apply --server-side -k "$ROOT/k8s/overlays/${OVERLAY:-minikube}"
  kc -n mp3converter rollout status deployment --timeout 120s
  kc -n mp3converter rollout status statefulset --timeout 120s
}

k9s() {
  if [ ! -x "$BIN/k9s" ] || [ "$(cat "$BIN/k9s.version" 2>/dev/null)" != "$K9S_VERSION" ]; then
    find_go
    log "building k9s $K9S_VERSION (several minutes the first time)"
    GOFLAGS="-trimpath" GOBIN="$BIN" "$GO" install -ldflags "-s -w" "github.com/derailed/k9s@$K9S_VERSION"
    echo "$K9S_VERSION" > "$BIN/k9s.version"
  fi
  running kube-apiserver || die "no control plane runs: make cluster-up first"
  mkdir -p "$STATE/k9s"
  # No look-up of k9s's latest release on the internet.
  [ -e "$STATE/k9s/config.yaml" ] || printf 'k9s:\n  skipLatestRevCheck: true\n' > "$STATE/k9s/config.yaml"
  K9S_CONFIG_DIR="$STATE/k9s" exec "$BIN/k9s" --kubeconfig "$KUBECONFIG_FILE" --context local -n mp3converter "$@"
}

case "${1:-}" in
  build) shift; build "$@" ;;
  up) up ;;
  deploy) deploy ;;
  down) shift; down "$@" ;;
  status) status ;;
  env) echo "export KUBECONFIG=$KUBECONFIG_FILE" ;;
  k9s) shift; k9s "$@" ;;
  *) sed -n '2,/^[^#]/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
