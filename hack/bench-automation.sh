#!/usr/bin/env bash
# Benchmarks of image-automation-controller (not part of `cargo test`). Needs the test environment
# (`hack/testenv.sh up`); builds both controllers in release mode.
#
#   latency: both controllers, one ImageRepository (anonymous registry), ImagePolicy (alphabetical),
#            ImageUpdateAutomation on a Git repository served over HTTP with basic auth. Each run pushes a new
#            tag and annotates the ImageRepository with reconcile.fluxcd.io/requestedAt, then waits for the
#            commit on the remote. Prints every run and the median (BENCH_RUNS, default 10).
#   scale:   the automation controller alone, BENCH_AUTOMATIONS (100) automations over BENCH_REPOS (10)
#            repositories, each automation with its own policy and file. Every policy's latestRef is written
#            through the status subresource (as the reflector would); a cycle is the time until every file
#            carries the new tag on its remote. Two cycles (first run, then an update of every policy);
#            prints their times and the controller's peak RSS (VmHWM).
#
#   hack/bench-automation.sh            # both
#   hack/bench-automation.sh latency    # or: scale
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TESTENV_DIR="${TESTENV_DIR:-$ROOT/target/testenv}"
[ -f "$TESTENV_DIR/env" ] || { echo "no test environment: run hack/testenv.sh up" >&2; exit 1; }
set -a; . "$TESTENV_DIR/env"; set +a

WHAT="${1:-all}"
RUNS="${BENCH_RUNS:-10}"
AUTOMATIONS="${BENCH_AUTOMATIONS:-100}"
REPOS="${BENCH_REPOS:-10}"
REG="$TESTENV_REGISTRY_ANON"

# BENCH_PROFILE=debug uses the binaries `cargo test`/`cargo build` left (no release build; slower binaries).
PROFILE="${BENCH_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "$PROFILE" = release ]; then
  (cd "$ROOT" && cargo build --release -q -p image-automation-controller -p image-reflector-controller -p testenv \
    --bin image-automation-controller --bin image-reflector-controller --bin testenv-server)
else
  (cd "$ROOT" && cargo build -q -p image-automation-controller -p image-reflector-controller -p testenv \
    --bin image-automation-controller --bin image-reflector-controller --bin testenv-server)
fi
IAC="$TARGET/$PROFILE/image-automation-controller"
IRC="$TARGET/$PROFILE/image-reflector-controller"
SERVER="$TARGET/$PROFILE/testenv-server"

KUBECTL=(kubectl --kubeconfig "$TESTENV_KUBECONFIG" --cache-dir "$TESTENV_DIR/kubectl-cache")
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
now() { date +%s.%N; }
git_() { GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.com \
  GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.com git "$@"; }
PIDS=()
TMP=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for t in "${TMP[@]}"; do rm -rf "$t"; done
}
trap cleanup EXIT

# seed_repo NAME DIR: the bare repository NAME.git in the served root, holding the files of DIR on main.
seed_repo() {
  local bare="$TESTENV_GIT_ROOT/$1.git"
  git_ init -q --bare -b main "$bare"
  git_ -C "$2" init -q -b main
  git_ -C "$2" add -A
  git_ -C "$2" commit -q -m seed
  git_ -C "$2" push -q "$bare" main
}

# start_controller BIN KUBECONFIG SELECTOR EXTRA...: starts it in the background, waits for /readyz; sets PID.
start_controller() {
  local bin="$1" kc="$2" sel="$3"; shift 3
  local health="127.0.0.1:$(free_port)"
  local log; log="$(mktemp)"; TMP+=("$log")
  "$bin" --kubeconfig="$kc" --watch-label-selector="$sel" --metrics-addr=0 --health-addr="$health" \
    --log-level=error "$@" 2>"$log" &
  PID=$!
  PIDS+=("$PID")
  for _ in $(seq 1 300); do
    curl -fs "http://$health/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "controller $bin not ready; log:" >&2; cat "$log" >&2; exit 1
}

secret_and_source() { # NS NAME REPO
  cat <<EOF
---
apiVersion: v1
kind: Secret
metadata: {name: $2-auth, namespace: $1}
stringData: {username: "$TESTENV_USERNAME", password: "$TESTENV_PASSWORD"}
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: $2, namespace: $1}
spec: {url: "$TESTENV_GIT_HTTP_BASIC_URL/$3.git", interval: 1h, ref: {branch: main}, secretRef: {name: $2-auth}}
EOF
}

automation() { # NS NAME SOURCE SELECTOR-LABEL PATH POLICY
  cat <<EOF
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageUpdateAutomation
metadata: {name: $2, namespace: $1, labels: {bench: "$4"}}
spec:
  interval: 1h
  sourceRef: {kind: GitRepository, name: $3}
  policySelector: {matchLabels: {policy: $6}}
  git:
    checkout: {ref: {branch: main}}
    commit: {author: {name: bench, email: bench@example.com}, messageTemplate: '{{range .Changed.Changes}}{{.NewValue}} {{end}}'}
    push: {branch: main}
  update: {path: ./$5}
EOF
}

latency() {
  local id="bench-lat-$(date +%s%N | tail -c 9)"
  local ns="$id" repo="$id" prefix="$id"
  "$SERVER" push --registry "$REG" --prefix "$prefix" --repos 1 --tags 1 >/dev/null
  local image="$REG/$prefix-0"
  local work; work="$(mktemp -d)"; TMP+=("$work")
  printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: %s:t0000 # {"$imagepolicy": "%s:app"}\n' \
    "$image" "$ns" >"$work/deploy.yaml"
  seed_repo "$repo" "$work"
  local bare="$TESTENV_GIT_ROOT/$repo.git"
  "${KUBECTL[@]}" create namespace "$ns" >/dev/null
  local storage; storage="$(mktemp -d)"; TMP+=("$storage")
  local cache; cache="$(mktemp -d)"; TMP+=("$cache")
  start_controller "$IRC" "$TESTENV_KUBECONFIG_REFLECTOR" "bench=$id" --storage-path="$storage"
  start_controller "$IAC" "$TESTENV_KUBECONFIG_AUTOMATION" "bench=$id" --git-cache-path="$cache"
  {
    secret_and_source "$ns" source "$repo"
    cat <<EOF
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImageRepository
metadata: {name: app, namespace: $ns, labels: {bench: "$id"}}
spec: {image: "$image", interval: 1h}
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {name: app, namespace: $ns, labels: {bench: "$id", policy: app}}
spec: {imageRepositoryRef: {name: app}, policy: {alphabetical: {order: asc}}}
EOF
    automation "$ns" app source "$id" . app
  } | "${KUBECTL[@]}" apply -f - >/dev/null
  "${KUBECTL[@]}" wait --for=condition=Ready -n "$ns" imageupdateautomation/app --timeout=120s >/dev/null
  local manifest
  manifest="$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$REG/v2/$prefix-0/manifests/t0000")"
  local -a took=()
  for run in $(seq 1 "$RUNS"); do
    local tag; tag="$(printf 't%04d' "$run")"
    local before; before="$(git_ --git-dir "$bare" rev-parse main)"
    local start; start="$(now)"
    curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$manifest" \
      "http://$REG/v2/$prefix-0/manifests/$tag" >/dev/null
    "${KUBECTL[@]}" annotate -n "$ns" imagerepository app --overwrite "reconcile.fluxcd.io/requestedAt=$start" >/dev/null
    local deadline=$(( $(date +%s) + 60 ))
    while [ "$(git_ --git-dir "$bare" rev-parse main)" = "$before" ]; do
      [ "$(date +%s)" -lt "$deadline" ] || { echo "run $run: no commit within 60s" >&2; exit 1; }
      sleep 0.02
    done
    local t; t="$(echo "$(now) - $start" | bc)"
    git_ --git-dir "$bare" show "main:deploy.yaml" | grep -q ":$tag #" || { echo "run $run: commit without $tag" >&2; exit 1; }
    took+=("$t")
    echo "latency run $run: tag $tag pushed + requestedAt -> commit on the remote in ${t}s"
  done
  echo "latency median of $RUNS runs: $(printf '%s\n' "${took[@]}" | median) s"
  "${KUBECTL[@]}" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}

# Writes every policy's latestRef (tag $2) through the status subresource, $1 = namespace.
set_policies() {
  local ns="$1" tag="$2"
  local -a batch=()
  for i in $(seq 0 $((AUTOMATIONS - 1))); do
    "${KUBECTL[@]}" patch -n "$ns" imagepolicy "p$i" --subresource=status --type=merge \
      -p "{\"status\":{\"latestRef\":{\"name\":\"example.com/app$i\",\"tag\":\"$tag\"}}}" >/dev/null &
    batch+=($!)
    # Only these kubectl processes: a bare `wait` would also wait for the controller.
    if (( i % 20 == 19 )); then wait "${batch[@]}"; batch=(); fi
  done
  [ ${#batch[@]} -eq 0 ] || wait "${batch[@]}"
}

# Waits until every automation's file carries tag $2 on its remote; $1 = id.
wait_landed() {
  local id="$1" tag="$2" deadline=$(( $(date +%s) + 600 ))
  while :; do
    local missing=0
    for r in $(seq 0 $((REPOS - 1))); do
      local bare="$TESTENV_GIT_ROOT/$id-$r.git"
      # git grep exits 1 when nothing matches yet.
      local n; n="$({ git_ --git-dir "$bare" grep -c ":$tag #" main -- 2>/dev/null || true; } | awk -F: '{s+=$NF} END {print s+0}')"
      missing=$(( missing + (AUTOMATIONS / REPOS) - n ))
    done
    [ "$missing" -le 0 ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || { echo "$missing files still without $tag after 600s" >&2; exit 1; }
    sleep 0.1
  done
}

scale() {
  local id="bench-scale-$(date +%s%N | tail -c 9)"
  local ns="$id" per=$(( AUTOMATIONS / REPOS ))
  "${KUBECTL[@]}" create namespace "$ns" >/dev/null
  local manifest; manifest="$(mktemp)"; TMP+=("$manifest")
  for r in $(seq 0 $((REPOS - 1))); do
    local work; work="$(mktemp -d)"; TMP+=("$work")
    for k in $(seq 0 $((per - 1))); do
      local i=$(( r * per + k ))
      mkdir -p "$work/a$i"
      printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app%d\nspec:\n  template:\n    spec:\n      containers:\n        - name: app\n          image: example.com/app%d:v0 # {"$imagepolicy": "%s:p%d"}\n' \
        "$i" "$i" "$ns" "$i" >"$work/a$i/deploy.yaml"
    done
    seed_repo "$id-$r" "$work"
    secret_and_source "$ns" "src$r" "$id-$r" >>"$manifest"
  done
  for i in $(seq 0 $((AUTOMATIONS - 1))); do
    cat >>"$manifest" <<EOF
---
apiVersion: image.toolkit.fluxcd.io/v1
kind: ImagePolicy
metadata: {name: p$i, namespace: $ns, labels: {policy: p$i}}
spec: {imageRepositoryRef: {name: p$i}, policy: {alphabetical: {order: asc}}}
EOF
    automation "$ns" "a$i" "src$(( i / per ))" "$id" "a$i" "p$i" >>"$manifest"
  done
  local cache; cache="$(mktemp -d)"; TMP+=("$cache")
  start_controller "$IAC" "$TESTENV_KUBECONFIG_AUTOMATION" "bench=$id" --git-cache-path="$cache"
  local pid=$PID
  "${KUBECTL[@]}" apply -f "$manifest" >/dev/null
  for cycle in 1 2; do
    local start; start="$(now)"
    set_policies "$ns" "v$cycle"
    wait_landed "$id" "v$cycle"
    local t; t="$(echo "$(now) - $start" | bc)"
    echo "scale cycle $cycle: $AUTOMATIONS automations over $REPOS repositories, policies written -> all commits on the remotes in ${t}s"
  done
  local rss; rss="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
  echo "scale: controller peak RSS $(echo "$rss / 1024" | bc -l | xargs printf '%.1f') MiB"
  local commits=0
  for r in $(seq 0 $((REPOS - 1))); do
    commits=$(( commits + $(git_ --git-dir "$TESTENV_GIT_ROOT/$id-$r.git" rev-list --count main) - 1 ))
  done
  echo "scale: $commits commits in total (expected $(( 2 * AUTOMATIONS )): one per automation per cycle)"
  "${KUBECTL[@]}" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
}

case "$WHAT" in
  latency) latency ;;
  scale) scale ;;
  all) latency; scale ;;
  *) echo "usage: $0 [latency|scale|all]" >&2; exit 2 ;;
esac
