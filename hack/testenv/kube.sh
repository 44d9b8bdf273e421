#!/usr/bin/env bash
# Kubernetes API server for tests: kube-apiserver 1.20.2 (built once from Debian's `kubernetes` source
# package, cached outside the checkout) backed by etcd from Debian's `etcd-server`.
#
#   hack/testenv/kube.sh build   build and cache kube-apiserver (idempotent; seconds when cached)
#   hack/testenv/kube.sh up      start etcd + kube-apiserver, write kubeconfigs and $TESTENV_DIR/kube.env
#   hack/testenv/kube.sh down    stop what `up` started
#
# TESTENV_ETCD_PORT / TESTENV_KUBE_PORT ask for fixed ports; a taken one is replaced by a free one.
#
# Why a source build: no Docker engine and no internet here, only the Debian archive. Debian ships the
# 1.20.2 sources (with vendor/) but no apiserver binary. See README "Testing".

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KUBE_VERSION=1.20.2
KUBE_APISERVER_BIN=$TESTENV_CACHE/kube-apiserver-$KUBE_VERSION
KUBE_BUILD_DIR=$TESTENV_CACHE/kubernetes-build
GO_BIN_DIR=/usr/lib/go-1.19/bin
REFLECT2_SRC=/usr/share/gocode/src/github.com/modern-go/reflect2

# Make `apt-get source` work: add deb-src entries mirroring the configured Debian archive (idempotent).
enable_deb_src() {
  if grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/ &&
    apt-cache showsrc kubernetes >/dev/null 2>&1; then
    return 0
  fi
  local target=/etc/apt/sources.list.d/testenv-deb-src.sources
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$target.tmp"
  elif [ -f /etc/apt/sources.list ]; then
    target=/etc/apt/sources.list.d/testenv-deb-src.list
    sed -nE 's/^deb (.*)/deb-src \1/p' /etc/apt/sources.list >"$target.tmp"
  else
    die "no Debian apt sources found to derive deb-src entries from"
  fi
  mv "$target.tmp" "$target"
  log "enabled source packages in $target"
  run_or_die "apt-get update (after enabling deb-src)" apt-get update -q
  apt-cache showsrc kubernetes >/dev/null 2>&1 || die "source package 'kubernetes' not found after enabling deb-src"
}

cmd_build() {
  need_pkgs golang-1.19-go etcd-server rsync golang-github-modern-go-reflect2-dev openssl make python3
  if [ -x "$KUBE_APISERVER_BIN" ]; then
    return 0
  fi
  # Serialise concurrent builds (e.g. two `make test` at once): the second waits, then finds the binary.
  # The lock fd is closed after the build so the services started later do not inherit it.
  { flock 9; build_locked; } 9>"$TESTENV_CACHE/build.lock"
}

build_locked() {
  if [ -x "$KUBE_APISERVER_BIN" ]; then
    return 0
  fi
  local started=$SECONDS
  log "building kube-apiserver $KUBE_VERSION once (several minutes; cached in $KUBE_APISERVER_BIN)"
  enable_deb_src
  mkdir -p "$KUBE_BUILD_DIR"
  local tarball
  tarball=$(find "$KUBE_BUILD_DIR" -maxdepth 1 -name 'kubernetes_*.orig.tar.gz' | head -n1)
  if [ -z "$tarball" ]; then
    (cd "$KUBE_BUILD_DIR" && run_or_die "apt-get source --download-only kubernetes" apt-get source --download-only kubernetes)
    tarball=$(find "$KUBE_BUILD_DIR" -maxdepth 1 -name 'kubernetes_*.orig.tar.gz' | head -n1)
    [ -n "$tarball" ] || die "apt-get source did not produce kubernetes_*.orig.tar.gz in $KUBE_BUILD_DIR"
  fi
  local src=$KUBE_BUILD_DIR/kubernetes-$KUBE_VERSION
  # Always start from a pristine tree so a half-finished earlier attempt cannot leak into this one.
  rm -rf "$src"
  run_or_die "extracting $tarball" tar -xzf "$tarball" -C "$KUBE_BUILD_DIR"
  [ -d "$src" ] || die "expected $src after extracting $tarball"
  # The vendored reflect2 crashes ("fatal error: fault") under Go 1.19 on the first custom resource write;
  # Debian's packaged reflect2 is the fixed version with the same API.
  local vend=$src/vendor/github.com/modern-go/reflect2
  [ -d "$vend" ] || die "vendored reflect2 not found at $vend"
  [ -d "$REFLECT2_SRC" ] || die "Debian reflect2 sources not found at $REFLECT2_SRC"
  rm -f "$vend"/*.go "$vend"/*.s
  cp "$REFLECT2_SRC"/*.go "$vend"/
  if compgen -G "$REFLECT2_SRC/*.s" >/dev/null; then cp "$REFLECT2_SRC"/*.s "$vend"/; fi
  (cd "$src" && run_or_die "make WHAT=cmd/kube-apiserver" \
    env PATH="$GO_BIN_DIR:$PATH" CGO_ENABLED=0 HOME="${HOME:-/root}" make WHAT=cmd/kube-apiserver)
  local out=$src/_output/bin/kube-apiserver
  [ -x "$out" ] || die "build finished but $out is missing"
  cp "$out" "$KUBE_APISERVER_BIN.tmp.$$"
  mv "$KUBE_APISERVER_BIN.tmp.$$" "$KUBE_APISERVER_BIN"
  # The tree is ~1 GB after the build; the tarball stays for a rebuild without the network.
  rm -rf "$src"
  log "built $KUBE_APISERVER_BIN in $((SECONDS - started))s"
}


KUBE_STATE=$TESTENV_DIR/kube
# Identities of the two controllers: the ServiceAccount user names the apiserver would give their in-cluster
# tokens, so config/rbac's bindings (subjects: ServiceAccount <name> in flux-system) apply to them unchanged.
KUBE_NS=flux-system
REFLECTOR_USER=system:serviceaccount:$KUBE_NS:image-reflector-controller
AUTOMATION_USER=system:serviceaccount:$KUBE_NS:image-automation-controller
SA_GROUPS="system:serviceaccounts,system:serviceaccounts:$KUBE_NS"
READY_TIMEOUT=${TESTENV_KUBE_READY_TIMEOUT:-180}
# Optional fixed ports (TESTENV_ETCD_PORT, TESTENV_KUBE_PORT); a taken one is replaced by a free one.
PORT_ATTEMPTS=5

# Kill one tracked component if its pid still names one of our processes (guards against a recycled pid
# from a run before a reboot), then forget it.
stop_component() {
  local name=$1 f=$TESTENV_DIR/pids/$1.pid pid i
  [ -e "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$KUBE_STATE/"; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# etcd/kube-apiserver processes serving our state dir whose pid files are gone (e.g. the state dir was
# wiped while they ran): found by executable and arguments, never by name alone.
kill_orphans() {
  local f pid exe
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
    case "$exe" in
      "$KUBE_APISERVER_BIN" | */etcd) ;;
      *) continue ;;
    esac
    if tr '\0' ' ' <"$f" 2>/dev/null | grep -qF -- "$KUBE_STATE/"; then
      log "killing orphaned $(basename "$exe") (pid $pid) left from an earlier run"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
}

cmd_down() {
  stop_component kube-apiserver
  stop_component etcd
  kill_orphans
  rm -f "$TESTENV_DIR/kube.env"
}

# wait_ready NAME SECONDS CHECK...: poll CHECK until it succeeds. Returns 0 when ready, 1 when the process
# died (its log tells why), 2 when the bound passed.
wait_ready() {
  local name=$1 secs=$2; shift 2
  local pid i
  pid=$(cat "$TESTENV_DIR/pids/$name.pid")
  for ((i = 0; i < secs * 5; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 2
}

# A component failed to come up: retry on new ports if it lost a port race, otherwise stop with its log.
port_taken_or_die() {
  local name=$1 status=$2 logf=$TESTENV_DIR/logs/$1.log
  if [ "$status" = 1 ] && grep -qi 'address already in use' "$logf"; then
    log "$name: port already in use, retrying on another port"
    stop_component "$name"
    return 0
  fi
  tail -n 40 "$logf" >&2 || true
  stop_component "$name"
  if [ "$status" = 1 ]; then die "$name exited during startup (log: $logf)"; fi
  die "$name not ready within ${READY_TIMEOUT}s (log: $logf)"
}

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

gen_pki() {
  local d=$KUBE_STATE/pki
  mkdir -p "$d"
  cat >"$d/ca.cnf" <<CNF
[req]
distinguished_name = dn
prompt = no
x509_extensions = ext
[dn]
CN = flux-image-automation-testenv-ca
[ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
CNF
  cat >"$d/server.ext" <<CNF
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
CNF
  run_or_die "generating the test CA" openssl req -x509 -newkey rsa:2048 -nodes -days 7 \
    -keyout "$d/ca.key" -out "$d/ca.crt" -config "$d/ca.cnf"
  run_or_die "generating the apiserver key" openssl req -newkey rsa:2048 -nodes \
    -keyout "$d/server.key" -out "$d/server.csr" -subj /CN=kube-apiserver
  run_or_die "signing the apiserver certificate" openssl x509 -req -in "$d/server.csr" -days 7 \
    -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -out "$d/server.crt" -extfile "$d/server.ext"
  run_or_die "generating the service-account signing key" openssl genrsa -out "$d/sa.key" 2048
  run_or_die "deriving the service-account public key" openssl rsa -in "$d/sa.key" -pubout -out "$d/sa.pub"
}

# write_kubeconfig FILE USER TOKEN NAMESPACE
write_kubeconfig() {
  local file=$1 user=$2 token=$3 ns=$4 ca
  ca=$(base64 -w0 "$KUBE_STATE/pki/ca.crt")
  cat >"$file" <<KC
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $KUBE_SERVER
    certificate-authority-data: $ca
users:
- name: "$user"
  user:
    token: $token
contexts:
- name: testenv
  context:
    cluster: testenv
    user: "$user"
    namespace: $ns
current-context: testenv
KC
  chmod 600 "$file"
}

start_etcd() {
  local attempt status peer
  for ((attempt = 1; attempt <= PORT_ATTEMPTS; attempt++)); do
    # A fixed port may be asked for (debugging); if it is taken, the next attempt picks a free one.
    if [ "$attempt" = 1 ] && [ -n "${TESTENV_ETCD_PORT:-}" ]; then ETCD_PORT=$TESTENV_ETCD_PORT; else ETCD_PORT=$(free_port); fi
    peer=$(free_port)
    rm -rf "$KUBE_STATE/etcd"
    start_bg etcd etcd --name testenv --data-dir "$KUBE_STATE/etcd" \
      --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
      --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
      --initial-cluster "testenv=http://127.0.0.1:$peer"
    status=0
    wait_ready etcd "$READY_TIMEOUT" curl -fsS --max-time 5 "http://127.0.0.1:$ETCD_PORT/health" || status=$?
    [ "$status" = 0 ] && return 0
    port_taken_or_die etcd "$status"
  done
  die "etcd: no free port after $PORT_ATTEMPTS attempts"
}

start_apiserver() {
  local attempt status port t0 d=$KUBE_STATE/pki
  # Run it as `kube-apiserver` (a symlink), so ps and the process name (comm) show the usual name.
  mkdir -p "$KUBE_STATE/bin"
  ln -sfn "$KUBE_APISERVER_BIN" "$KUBE_STATE/bin/kube-apiserver"
  for ((attempt = 1; attempt <= PORT_ATTEMPTS; attempt++)); do
    if [ "$attempt" = 1 ] && [ -n "${TESTENV_KUBE_PORT:-}" ]; then port=$TESTENV_KUBE_PORT; else port=$(free_port); fi
    KUBE_SERVER=https://127.0.0.1:$port
    t0=$(now_ms)
    start_bg kube-apiserver "$KUBE_STATE/bin/kube-apiserver" \
      --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
      --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" --insecure-port=0 \
      --cert-dir="$KUBE_STATE/certs" --tls-cert-file="$d/server.crt" --tls-private-key-file="$d/server.key" \
      --service-account-key-file="$d/sa.pub" --service-account-signing-key-file="$d/sa.key" \
      --service-account-issuer=https://kubernetes.default.svc \
      --token-auth-file="$KUBE_STATE/tokens.csv" --authorization-mode=RBAC \
      --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none
    status=0
    wait_ready kube-apiserver "$READY_TIMEOUT" curl -fsS --max-time 5 --cacert "$d/ca.crt" \
      -H "Authorization: Bearer $ADMIN_TOKEN" "$KUBE_SERVER/readyz" || status=$?
    if [ "$status" = 0 ]; then
      KUBE_READY_MS=$(($(now_ms) - t0))
      return 0
    fi
    port_taken_or_die kube-apiserver "$status"
  done
  die "kube-apiserver: no free port after $PORT_ATTEMPTS attempts"
}

# Install the project's config/default (CRDs, RBAC, the flux-system namespace; its Deployments stay inert, as
# nothing runs pods) and the GitRepository CRD the automation controller reads, so tests find the cluster as
# after a real install. TESTENV_KUBE_NO_CONFIG=1 leaves the server empty.
apply_project_config() {
  [ -z "${TESTENV_KUBE_NO_CONFIG:-}" ] || return 0
  local kc=$KUBE_STATE/admin.kubeconfig repo=$TESTENV_REPO
  [ -d "$repo/config/default" ] || return 0
  # 1.20 does not know `x-kubernetes-validations`: kubectl's client-side validation rejects it and server-side
  # apply fails on it, so this is a client-side apply without client validation (the server drops the rules).
  run_or_die "applying config/default" kubectl --kubeconfig "$kc" --cache-dir "$KUBE_STATE/kubectl-cache" \
    apply --validate=false -k "$repo/config/default"
  if [ -d "$repo/config/testdata/crd" ]; then
    run_or_die "applying config/testdata/crd" kubectl --kubeconfig "$kc" --cache-dir "$KUBE_STATE/kubectl-cache" \
      apply --validate=false -f "$repo/config/testdata/crd"
  fi
  run_or_die "waiting for the CRDs to be established" kubectl --kubeconfig "$kc" \
    --cache-dir "$KUBE_STATE/kubectl-cache" wait --for=condition=Established --timeout="${READY_TIMEOUT}s" crd --all
}

cmd_up() {
  need_pkgs etcd-server openssl curl
  command -v kubectl >/dev/null || need_pkgs kubernetes-client
  # Whatever a killed earlier run left behind goes first.
  if [ -n "$(alive | grep -E '^(etcd|kube-apiserver) ' || true)" ]; then
    log "stopping etcd/kube-apiserver left from an earlier run"
  fi
  cmd_down
  rm -rf "$KUBE_STATE"
  mkdir -p "$KUBE_STATE"
  # On any failure below, stop what was started so nothing leaks.
  trap 'cmd_down' EXIT
  gen_pki
  ADMIN_TOKEN=$(openssl rand -hex 24)
  local reflector_token automation_token
  reflector_token=$(openssl rand -hex 24)
  automation_token=$(openssl rand -hex 24)
  (
    umask 077
    printf '%s,admin,admin,system:masters\n' "$ADMIN_TOKEN"
    printf '%s,%s,image-reflector-controller,"%s"\n' "$reflector_token" "$REFLECTOR_USER" "$SA_GROUPS"
    printf '%s,%s,image-automation-controller,"%s"\n' "$automation_token" "$AUTOMATION_USER" "$SA_GROUPS"
  ) >"$KUBE_STATE/tokens.csv"
  start_etcd
  start_apiserver
  log "kube-apiserver ready at $KUBE_SERVER in ${KUBE_READY_MS}ms"
  write_kubeconfig "$KUBE_STATE/admin.kubeconfig" admin "$ADMIN_TOKEN" default
  write_kubeconfig "$KUBE_STATE/reflector.kubeconfig" "$REFLECTOR_USER" "$reflector_token" "$KUBE_NS"
  write_kubeconfig "$KUBE_STATE/automation.kubeconfig" "$AUTOMATION_USER" "$automation_token" "$KUBE_NS"
  # The controllers' home namespace (leader-election Roles and ServiceAccounts live there).
  run_or_die "creating namespace $KUBE_NS" kubectl --kubeconfig "$KUBE_STATE/admin.kubeconfig" create namespace "$KUBE_NS" --save-config
  apply_project_config
  {
    printf 'export TESTENV_KUBECONFIG=%q\n' "$KUBE_STATE/admin.kubeconfig"
    printf 'export TESTENV_KUBECONFIG_REFLECTOR=%q\n' "$KUBE_STATE/reflector.kubeconfig"
    printf 'export TESTENV_KUBECONFIG_AUTOMATION=%q\n' "$KUBE_STATE/automation.kubeconfig"
    printf 'export TESTENV_KUBE_SERVER=%q\n' "$KUBE_SERVER"
    printf 'export TESTENV_KUBE_CA=%q\n' "$KUBE_STATE/pki/ca.crt"
    printf 'export TESTENV_KUBE_APISERVER_BIN=%q\n' "$KUBE_APISERVER_BIN"
    printf 'export TESTENV_KUBE_NAMESPACE=%q\n' "$KUBE_NS"
    printf 'export TESTENV_KUBE_REFLECTOR_USER=%q\n' "$REFLECTOR_USER"
    printf 'export TESTENV_KUBE_AUTOMATION_USER=%q\n' "$AUTOMATION_USER"
  } >"$TESTENV_DIR/kube.env.tmp"
  mv "$TESTENV_DIR/kube.env.tmp" "$TESTENV_DIR/kube.env"
  trap - EXIT
}

main() {
  case "${1:-}" in
    build) cmd_build ;;
    up) cmd_build; cmd_up ;;
    down) cmd_down ;;
    *) die "usage: $0 build|up|down" ;;
  esac
}

main "$@"
