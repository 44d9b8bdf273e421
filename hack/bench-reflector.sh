#!/usr/bin/env bash
# Benchmark of the ImageRepository side of image-reflector-controller (not part of `cargo test`).
#
# Needs the test environment (`hack/testenv.sh up`). Setup, cached in $TESTENV_DIR: REPOS repositories of
# TAGS tags each on the anonymous registry, every tag pointing at one manifest (one manifest PUT per tag).
#
# Each run:
#   controller: start the release binary (default --concurrent), create OBJECTS ImageRepositories
#               (POSTed by one `curl --parallel`, BENCH_APPLY_JOBS requests at a time)
#               (object i scans repository i % REPOS), wait until all are Ready (status writes included);
#               report the wall time and the controller's peak RSS (VmHWM) once all are Ready.
#   skopeo:     `skopeo list-tags --tls-verify=false` over the same REPOS repositories, one after another.
# Prints every run and the medians.
#
#   hack/bench-reflector.sh                      # 100 repositories x 1,000 tags, 3 runs
#   BENCH_OBJECTS=1000 hack/bench-reflector.sh   # 1,000 objects x 1,000 tags stored (RSS)
#
# Variables: BENCH_REPOS (100), BENCH_TAGS (1000), BENCH_OBJECTS (= BENCH_REPOS), BENCH_RUNS (3),
# BENCH_SKOPEO (1: also time skopeo; 0: skip), BENCH_APPLY_JOBS (16: parallel requests creating the objects),
# BENCH_PROFILE (release; dev only to try the script).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TESTENV_DIR="${TESTENV_DIR:-$ROOT/target/testenv}"
[ -f "$TESTENV_DIR/env" ] || { echo "no test environment: run hack/testenv.sh up" >&2; exit 1; }
set -a; . "$TESTENV_DIR/env"; set +a

REPOS="${BENCH_REPOS:-100}"
TAGS="${BENCH_TAGS:-1000}"
OBJECTS="${BENCH_OBJECTS:-$REPOS}"
RUNS="${BENCH_RUNS:-3}"
SKOPEO="${BENCH_SKOPEO:-1}"
APPLY_JOBS="${BENCH_APPLY_JOBS:-16}"
REG="$TESTENV_REGISTRY_ANON"
PREFIX="bench-t$TAGS"

if [ "$SKOPEO" = 1 ] && ! command -v skopeo >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y skopeo >/dev/null
  else
    echo "skopeo is missing: apt-get install -y skopeo" >&2; exit 1
  fi
fi

PROFILE="${BENCH_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --profile "$PROFILE" -q -p image-reflector-controller -p testenv --bin image-reflector-controller --bin testenv-server)
[ "$PROFILE" = dev ] && PROFILE=debug
BIN="$TARGET/$PROFILE/image-reflector-controller"

# Setup, once per test environment: the registry's storage lives in $TESTENV_DIR.
MARK="$TESTENV_DIR/bench-$PREFIX-$REPOS.pushed"
if [ ! -f "$MARK" ]; then
  echo "pushing $REPOS repositories x $TAGS tags to $REG (cached in $TESTENV_DIR) ..."
  start=$(date +%s.%N)
  "$TARGET/$PROFILE/testenv-server" push --registry "$REG" --prefix "$PREFIX" --repos "$REPOS" --tags "$TAGS"
  echo "pushed in $(echo "$(date +%s.%N) - $start" | bc) s"
  touch "$MARK"
fi

KUBECTL=(kubectl --kubeconfig "$TESTENV_KUBECONFIG")
# The objects are POSTed with curl: `kubectl create` spends most of its time starting up and sends
# its requests one after another, which would be most of what is measured.
kube_field() { "${KUBECTL[@]}" config view --raw --minify -o jsonpath="$1"; }
API_SERVER="$(kube_field '{.clusters[0].cluster.server}')"
API_TOKEN="$(kube_field '{.users[0].user.token}')"
API_CA="$TESTENV_DIR/bench-ca.crt"
kube_field '{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$API_CA"
[ -n "$API_SERVER" ] && [ -n "$API_TOKEN" ] && [ -s "$API_CA" ] ||
  { echo "cannot read the API server, token and CA from $TESTENV_KUBECONFIG" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

declare -a CTL_S RSS_KB SKO_S
for run in $(seq 1 "$RUNS"); do
  id="bench-$(date +%s%N | tail -c 10)-$run"
  ns="$id"
  storage="$(mktemp -d)"
  "${KUBECTL[@]}" create namespace "$ns" >/dev/null
  # One JSON body per object and one curl config POSTing them all.
  mdir="$(mktemp -d)"
  url="$API_SERVER/apis/image.toolkit.fluxcd.io/v1/namespaces/$ns/imagerepositories"
  for i in $(seq 0 $((OBJECTS - 1))); do
    cat >"$mdir/r$i.json" <<EOF
{"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
 "metadata": {"name": "r$i", "namespace": "$ns", "labels": {"bench": "$id"}},
 "spec": {"image": "$REG/$PREFIX-$((i % REPOS))", "interval": "1h"}}
EOF
    [ "$i" = 0 ] || echo next >>"$mdir/curl.conf"
    cat >>"$mdir/curl.conf" <<EOF
url = "$url"
data-binary = "@$mdir/r$i.json"
header = "Content-Type: application/json"
header = "Authorization: Bearer $API_TOKEN"
cacert = "$API_CA"
silent
show-error
output = "/dev/null"
write-out = "%{http_code}\\n"
EOF
  done
  health="127.0.0.1:$(free_port)"
  log="$storage.log"
  "$BIN" --kubeconfig="$TESTENV_KUBECONFIG_REFLECTOR" --watch-label-selector="bench=$id" \
    --storage-path="$storage" --metrics-addr=0 --health-addr="$health" --log-level=error 2>"$log" &
  pid=$!
  for _ in $(seq 1 300); do
    curl -fs "http://$health/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  start=$(date +%s.%N)
  created=$(curl -s --no-progress-meter --parallel --parallel-max "$APPLY_JOBS" -K "$mdir/curl.conf" | grep -c '^201$' || true)
  applied=$(echo "$(date +%s.%N) - $start" | bc)
  [ "$created" = "$OBJECTS" ] || { echo "only $created of $OBJECTS objects were created" >&2; kill "$pid"; exit 1; }
  # One list per poll, by curl: `kubectl wait --all` checks the objects one after another (~0.2s
  # each), and a `kubectl get` every 0.2s spends a core starting up; either would measure itself.
  # Conditions hold no nested objects, so each `{...}` holding "type":"Ready" is one Ready condition.
  deadline=$(( $(date +%s) + 600 ))
  while :; do
    ready=$(curl -fsS --cacert "$API_CA" -H "Authorization: Bearer $API_TOKEN" "$url" |
      grep -o '{[^{}]*"type":"Ready"[^{}]*}' | grep -c '"status":"True"' || true)
    [ "$ready" -ge "$OBJECTS" ] && break
    [ "$(date +%s)" -lt "$deadline" ] || { echo "only $ready of $OBJECTS Ready after 600s" >&2; kill "$pid"; exit 1; }
    sleep 0.2
  done
  took=$(echo "$(date +%s.%N) - $start" | bc)
  rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  tagcount=$("${KUBECTL[@]}" get imagerepository -n "$ns" -o jsonpath='{range .items[*]}{.status.lastScanResult.tagCount}{"\n"}{end}' | sort -u | tr '\n' ' ')
  # Delete the objects while the controller runs (it removes their finalizers): the test environment
  # has no namespace controller, and leftovers would be listed by every later run's garbage collection.
  "${KUBECTL[@]}" delete imagerepository --all -n "$ns" --timeout=300s >/dev/null
  kill -TERM "$pid"; wait "$pid" || true
  CTL_S+=("$took"); RSS_KB+=("$rss")
  line="run $run: controller $OBJECTS objects Ready in ${took}s (creating them took ${applied}s), peak RSS $((rss / 1024)) MiB (tagCount: $tagcount)"
  if [ "$SKOPEO" = 1 ]; then
    start=$(date +%s.%N)
    for i in $(seq 0 $((REPOS - 1))); do
      skopeo list-tags --tls-verify=false "docker://$REG/$PREFIX-$i" >/dev/null
    done
    sk=$(echo "$(date +%s.%N) - $start" | bc)
    SKO_S+=("$sk")
    line="$line; skopeo $REPOS repositories sequentially in ${sk}s"
  fi
  echo "$line"
  "${KUBECTL[@]}" delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
  rm -rf "$storage" "$log" "$mdir"
done

echo "median controller wall time: $(printf '%s\n' "${CTL_S[@]}" | median) s ($OBJECTS objects, $TAGS tags each)"
echo "median controller peak RSS: $(echo "$(printf '%s\n' "${RSS_KB[@]}" | median) / 1024" | bc -l | xargs printf '%.1f') MiB"
if [ "$SKOPEO" = 1 ]; then
  echo "median skopeo sequential total: $(printf '%s\n' "${SKO_S[@]}" | median) s ($REPOS repositories)"
fi
