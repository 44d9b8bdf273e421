#!/usr/bin/env bash
# `make demo`: the Flux guide "Automate image updates to Git" end to end on this machine, no cluster and no
# internet needed.
#
#  1. brings up the test environment (hack/testenv.sh up: a registry, Git servers, etcd and kube-apiserver;
#     the first run builds kube-apiserver from Debian's sources, several minutes, with progress lines);
#  2. builds both controllers and starts them with their RBAC-restricted identities;
#  3. pushes podinfo 5.0.0 to 5.0.3 to the local registry, seeds a Git repository with the guide's layout
#     (examples/guide, image names pointed at the local registry) and applies the guide's objects;
#  4. shows `kubectl get imagerepositories,imagepolicies,imageupdateautomations` once they are Ready, and the
#     commit the automation pushed (`git log -p -1`: 5.0.0 -> 5.0.3);
#  5. pushes 5.0.4, asks for a reconcile as a webhook would (examples/webhook-trigger/trigger.sh) and shows the
#     next commit;
#  6. stops everything it started. KEEP=1 leaves the environment and the controllers running and prints how to
#     look at them; `hack/testenv.sh down` stops them later.
#
# DEMO_SHORT=1 is the form `make test` runs (tests/tests/demo.rs): it uses the test environment that is already
# up (never stopping it) and the controller binaries in DEMO_BIN_DIR, works in a namespace of its own and shards
# its controllers with a label selector so that it sees only its own objects, and prints less.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

SHORT=${DEMO_SHORT:-}
KEEP=${KEEP:-}
STEP_TIMEOUT=${DEMO_TIMEOUT:-180}

say() { printf '\n==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
fail() {
  printf '\ndemo FAILED: %s\n' "$*" >&2
  for c in reflector automation; do
    local f="${TESTENV_DIR:-target/testenv}/logs/${PFX:-none}$c-controller.log"
    if [ -f "$f" ]; then
      printf -- '--- last lines of %s\n' "$f" >&2
      tail -n 30 "$f" >&2
    fi
  done
  exit 1
}

# ---------------------------------------------------------------------------------------------------------
# 1. The environment.

STARTED_ENV=
ENV_FILE=${TESTENV_DIR:-$REPO/target/testenv}/env
env_is_up() {
  [ -f "$ENV_FILE" ] || return 1
  (
    set -a
    # shellcheck disable=SC1090
    . "$ENV_FILE"
    set +a
    kubectl --kubeconfig "$TESTENV_KUBECONFIG" get --raw /readyz
  ) >/dev/null 2>&1
}

# Runs `hack/testenv.sh up` and relays its progress, with a heartbeat while a long step (the one-time
# kube-apiserver build, package installs) runs.
bring_up() {
  local log=target/testenv-up.log
  mkdir -p target
  hack/testenv.sh up >"$log" 2>&1 &
  local pid=$! shown=0 started=$SECONDS last_beat=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 2
    local n
    n=$(wc -l <"$log")
    if [ "$n" -gt "$shown" ]; then
      sed -n "$((shown + 1)),${n}p" "$log" | grep '^\[testenv\]' | sed 's/^/    /' || true
      shown=$n
      last_beat=$SECONDS
    elif [ $((SECONDS - last_beat)) -ge 30 ]; then
      local what="starting services"
      if pgrep -f "make WHAT=cmd/kube-apiserver" >/dev/null 2>&1 || pgrep -x go >/dev/null 2>&1; then
        what="building kube-apiserver (one time only: 6-11 minutes on 2 cores; later runs reuse the cached binary)"
      elif pgrep -f "apt-get" >/dev/null 2>&1; then
        what="installing Debian packages / downloading the kube-apiserver sources"
      fi
      info "... $what, $((SECONDS - started))s so far"
      last_beat=$SECONDS
    fi
  done
  if ! wait "$pid"; then
    tail -n 40 "$log" >&2
    fail "hack/testenv.sh up failed (full output in $log)"
  fi
  info "environment up in $((SECONDS - started))s"
}

if [ -n "$SHORT" ]; then
  [ -f "$ENV_FILE" ] || fail "DEMO_SHORT needs the test environment up (hack/testenv.sh up)"
else
  say "Bringing up the local environment: registry, Git servers, etcd and kube-apiserver (hack/testenv.sh up)"
  if env_is_up; then
    info "already up ($ENV_FILE); reusing it and leaving it up"
  else
    bring_up
    STARTED_ENV=1
  fi
fi
set -a
# shellcheck disable=SC1090
. "$ENV_FILE"
set +a
TESTENV_DIR=${TESTENV_DIR:-$REPO/target/testenv}
export KUBECONFIG=$TESTENV_KUBECONFIG
# kubectl's discovery cache stays with this environment.
KUBECTL=(kubectl --cache-dir "$TESTENV_DIR/kubectl-cache")

# A run id keeps short runs apart from each other and from other tests sharing the API server.
RUN=$(date +%s)-$$
if [ -n "$SHORT" ]; then
  NS=demo-$RUN
  REPO_NAME=demo-$RUN
  SELECTOR_LABEL=demo.flux-image-automation.io/run
  SELECTOR="$SELECTOR_LABEL=$RUN"
else
  NS=flux-system
  REPO_NAME=fleet-infra-$RUN
  SELECTOR=
fi
PFX=demo-$RUN-
DEMO_DIR=$TESTENV_DIR/demo-$RUN
mkdir -p "$DEMO_DIR"

cleanup() {
  local rc=$?
  if [ -n "$KEEP" ] && [ $rc -eq 0 ]; then
    return
  fi
  # Only what this script started: its controllers, and the environment if it brought it up.
  # shellcheck disable=SC1091
  (source hack/testenv/lib.sh && stop_all "$PFX") || true
  if [ -n "$SHORT" ]; then
    "${KUBECTL[@]}" delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  fi
  if [ -n "$STARTED_ENV" ]; then
    say "Tearing down (KEEP=1 leaves everything running)"
    hack/testenv.sh down || rc=1
  fi
  exit $rc
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------------------
# 2. The controllers.

if [ -n "${DEMO_BIN_DIR:-}" ]; then
  BIN=$DEMO_BIN_DIR
else
  say "Building both controllers (cargo build; minutes on a fresh checkout)"
  cargo build -p image-reflector-controller -p image-automation-controller
  BIN=${CARGO_TARGET_DIR:-$REPO/target}/debug
fi
for b in image-reflector-controller image-automation-controller; do
  [ -x "$BIN/$b" ] || fail "$BIN/$b is not built"
done

# ---------------------------------------------------------------------------------------------------------
# 3. Registry, Git repository, objects.

REGISTRY=$TESTENV_REGISTRY_ANON
# A registry this run did not start may hold the tags of an earlier run (5.0.4 among them): use a path of its own.
if [ -n "$STARTED_ENV" ]; then
  REPO_PATH=stefanprodan/podinfo
else
  REPO_PATH=demo-$RUN/stefanprodan/podinfo
fi
IMAGE=$REGISTRY/$REPO_PATH

# push_tag TAG: push a minimal single-layer image under TAG through the registry's HTTP API.
push_tag() {
  local tag=$1 base="http://$REGISTRY/v2/$REPO_PATH"
  local layer="$DEMO_DIR/layer.tar" config="$DEMO_DIR/config-$tag.json" manifest="$DEMO_DIR/manifest-$tag.json"
  [ -f "$layer" ] || head -c 1024 /dev/zero >"$layer"
  local layer_digest config_digest
  layer_digest=sha256:$(sha256sum "$layer" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","config":{"Labels":{"org.opencontainers.image.version":"%s"}},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
    "$tag" "$layer_digest" >"$config"
  config_digest=sha256:$(sha256sum "$config" | cut -d' ' -f1)
  local blob digest size
  for blob in "$layer" "$config"; do
    digest=sha256:$(sha256sum "$blob" | cut -d' ' -f1)
    # Distribution wants the upload started (POST), then the blob PUT to the session's Location.
    local location
    location=$(curl -fsS -o /dev/null -D - -X POST "$base/blobs/uploads/" | tr -d '\r' |
      sed -n 's/^[Ll]ocation: //p') || fail "starting an upload to $REGISTRY"
    case $location in *\?*) location+="&" ;; *) location+="?" ;; esac
    curl -fsS -o /dev/null -X PUT --data-binary "@$blob" -H 'Content-Type: application/octet-stream' \
      "${location}digest=$digest" || fail "uploading $blob to $REGISTRY"
  done
  size=$(stat -c %s "$config")
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":1024}]}' \
    "$config_digest" "$size" "$layer_digest" >"$manifest"
  curl -fsS -o /dev/null -X PUT --data-binary "@$manifest" \
    -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' "$base/manifests/$tag" ||
    fail "pushing the manifest of podinfo:$tag"
}

say "Pushing podinfo 5.0.0 to 5.0.3 to the local registry ($IMAGE)"
for t in 5.0.0 5.0.1 5.0.2 5.0.3; do push_tag "$t"; done
info "tags: $(curl -fsS "http://$REGISTRY/v2/$REPO_PATH/tags/list")"

# The guide's manifests with the namespace and the image pointed at this environment.
adapt() {
  sed -e "s|ghcr.io/stefanprodan/podinfo|$IMAGE|g" \
    -e "s|namespace: flux-system|namespace: $NS|" \
    -e "s|\"flux-system:podinfo\"|\"$NS:podinfo\"|g" "$1"
}

say "Seeding the Git repository $REPO_NAME with the guide's layout (examples/guide)"
BARE=$TESTENV_GIT_ROOT/$REPO_NAME.git
SEED=$DEMO_DIR/seed
git init -q -b main "$SEED"
mkdir -p "$SEED/clusters/my-cluster"
for f in examples/guide/clusters/my-cluster/*.yaml; do
  adapt "$f" >"$SEED/clusters/my-cluster/$(basename "$f")"
done
git -C "$SEED" add -A
git -C "$SEED" -c user.name=demo -c user.email=demo@example.com commit -q -m "The guide's cluster layout"
git init -q --bare -b main "$BARE"
git -C "$SEED" push -q "$BARE" main
info "$(git --git-dir="$BARE" log --oneline -1 main)  ($TESTENV_GIT_HTTP_BASIC_URL/$REPO_NAME.git)"

say "Applying the guide's objects (namespace $NS)"
OBJECTS=$DEMO_DIR/objects.yaml
{
  if [ "$NS" != flux-system ]; then
    printf 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\n' "$NS"
  fi
  cat <<EOF
apiVersion: v1
kind: Secret
metadata:
  name: flux-system
  namespace: $NS
stringData:
  username: $TESTENV_USERNAME
  password: $TESTENV_PASSWORD
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: flux-system
  namespace: $NS
spec:
  interval: 1m0s
  url: $TESTENV_GIT_HTTP_BASIC_URL/$REPO_NAME.git
  ref:
    branch: main
  secretRef:
    name: flux-system
EOF
  for f in podinfo-registry.yaml podinfo-policy.yaml flux-system-automation.yaml; do
    printf -- '---\n'
    adapt "examples/guide/clusters/my-cluster/$f"
  done
} >"$OBJECTS"
"${KUBECTL[@]}" apply --validate=false -f "$OBJECTS" | sed 's/^/    /'
if [ -n "$SELECTOR" ]; then
  "${KUBECTL[@]}" -n "$NS" label --overwrite gitrepository/flux-system imagerepository/podinfo \
    imagepolicy/podinfo imageupdateautomation/flux-system secret/flux-system "$SELECTOR" >/dev/null
fi

say "Starting image-reflector-controller and image-automation-controller"
# shellcheck disable=SC1091
source hack/testenv/lib.sh
start_controller() {
  local name=$1 kubeconfig=$2
  shift 2
  local metrics health
  metrics=$(free_port)
  health=$(free_port)
  local args=(--kubeconfig="$kubeconfig" --metrics-addr="127.0.0.1:$metrics" --health-addr="127.0.0.1:$health"
    --log-encoding=console "$@")
  [ -n "$SELECTOR" ] && args+=(--watch-label-selector="$SELECTOR")
  RUNTIME_NAMESPACE=flux-system start_bg "$PFX${name#image-}" "$BIN/$name" "${args[@]}"
  wait_port "$PFX${name#image-}" "$health" 60
  info "$name: metrics on 127.0.0.1:$metrics, health on 127.0.0.1:$health, log $TESTENV_DIR/logs/$PFX${name#image-}.log"
}
start_controller image-reflector-controller "$TESTENV_KUBECONFIG_REFLECTOR" --storage-path="$DEMO_DIR/data"
start_controller image-automation-controller "$TESTENV_KUBECONFIG_AUTOMATION" --git-cache-path="$DEMO_DIR/git-cache"

# ---------------------------------------------------------------------------------------------------------
# 4. Status and the first commit.

# wait_for WHAT CMD...: retry CMD until it succeeds, within STEP_TIMEOUT seconds.
wait_for() {
  local what=$1 deadline=$((SECONDS + STEP_TIMEOUT))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what did not happen within ${STEP_TIMEOUT}s"
    sleep 1
  done
}

ready() {
  local kind
  for kind in imagerepository/podinfo imagepolicy/podinfo imageupdateautomation/flux-system; do
    [ "$("${KUBECTL[@]}" -n "$NS" get "$kind" \
      -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ] || return 1
  done
}

head_is() {
  git --git-dir="$BARE" log -1 --format=%B main | grep -qF "$1"
}

policy_tag_is() {
  [ "$("${KUBECTL[@]}" -n "$NS" get imagepolicy/podinfo -o 'jsonpath={.status.latestRef.tag}')" = "$1" ]
}

# annotate KIND/NAME: ask for an immediate reconcile, as a webhook Receiver does.
annotate() {
  "${KUBECTL[@]}" -n "$NS" annotate --overwrite "$1" "reconcile.fluxcd.io/requestedAt=$(date +%s.%N)" >/dev/null
}

say "Waiting for the scan, the policy and the automation to be Ready"
wait_for "the ImagePolicy selecting 5.0.3" policy_tag_is 5.0.3
# The automation may have run before the policy had a result; do not wait for its next interval.
annotate imageupdateautomation/flux-system
wait_for "Ready on all three objects" ready
wait_for "the commit for 5.0.3" head_is "$IMAGE:5.0.3"
"${KUBECTL[@]}" -n "$NS" get imagerepositories,imagepolicies,imageupdateautomations

say "The commit image-automation-controller pushed (git log -p -1)"
git --no-pager --git-dir="$BARE" log -p -1 main

# ---------------------------------------------------------------------------------------------------------
# 5. A new release.

say "Pushing podinfo 5.0.4 and asking for a scan, as a registry webhook would (examples/webhook-trigger)"
push_tag 5.0.4
examples/webhook-trigger/trigger.sh "$NS" podinfo | sed 's/^/    /'
wait_for "the ImagePolicy selecting 5.0.4" policy_tag_is 5.0.4
"${KUBECTL[@]}" -n "$NS" get imagepolicies
annotate imageupdateautomation/flux-system
wait_for "the commit for 5.0.4" head_is "$IMAGE:5.0.4"

say "The next commit (git log -p -1)"
git --no-pager --git-dir="$BARE" log -p -1 main

git --git-dir="$BARE" show main:clusters/my-cluster/podinfo-deployment.yaml | grep -qF "$IMAGE:5.0.4 #" ||
  fail "the Deployment in Git does not name 5.0.4"

if [ -n "$KEEP" ]; then
  say "Left running (KEEP=1)"
  info "export KUBECONFIG=$TESTENV_KUBECONFIG"
  info "kubectl -n $NS get imagerepositories,imagepolicies,imageupdateautomations"
  info "git clone $TESTENV_GIT_HTTP_BASIC_URL/$REPO_NAME.git   (user $TESTENV_USERNAME, password $TESTENV_PASSWORD)"
  info "controller logs: $TESTENV_DIR/logs/${PFX}reflector-controller.log, ${PFX}automation-controller.log"
  info "stop everything: hack/testenv.sh down"
fi
say "Demo complete"
