#!/usr/bin/env bash
# Test environment entry point.
#
#   hack/testenv.sh up     clean up leftovers of an earlier run, then start the Kubernetes API server
#                          (hack/testenv/kube.sh, when present) and the loopback services (hack/testenv/services.sh);
#                          write all their variables to $TESTENV_DIR/env
#   hack/testenv.sh env    print $TESTENV_DIR/env (`export K=V` lines; `eval "$(hack/testenv.sh env)"`)
#   hack/testenv.sh down   stop every process the test environment started
#   hack/testenv.sh check  fail, listing them, if any process started by the test environment is still alive
#
# Every process started under `up` inherits TESTENV_OWNER=$TESTENV_DIR in its environment, so `check` and the
# stale-process cleanup find them even when they escaped their tracked process group or their pid file is gone.
# Tests find the variables in the process environment or, failing that, in $TESTENV_DIR/env.
# TESTENV_NO_KUBE=1 starts the services only (the test of this script uses it).

source "$(dirname "${BASH_SOURCE[0]}")/testenv/lib.sh"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/testenv" && pwd)
MARK="TESTENV_OWNER=$TESTENV_DIR"

# Servers that overwrite their environment block for their process title (nginx, sshd) lose the mark; they are
# found by their command line naming a file under $TESTENV_DIR instead, restricted to the programs we start so a
# user's `tail -f $TESTENV_DIR/logs/...` is left alone.
SERVERS=' nginx sshd docker-registry tinyproxy fcgiwrap etcd kube-apiserver testenv-server '

# Print "pid command" for every live process of this test environment (except this shell).
marked() {
  local f pid comm
  # One grep over all environ (cmdline) files; grep fails when nothing matches and for processes that vanish
  # meanwhile: neither is an error here.
  {
    { grep -lzxF -- "$MARK" /proc/[0-9]*/environ 2>/dev/null || true; }
    { grep -laF -- "$TESTENV_DIR/" /proc/[0-9]*/cmdline 2>/dev/null || true; } | while read -r f; do
      comm=$(cat "${f%/cmdline}/comm" 2>/dev/null) || continue
      case $SERVERS in *" $comm "*) echo "$f" ;; esac
    done
  } | while read -r f; do
    pid=${f#/proc/}
    pid=${pid%/*}
    [ "$pid" = "$$" ] && continue
    printf '%s %s\n' "$pid" "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120)"
  done | sort -un
}

# Stop tracked processes, then anything else still carrying the mark.
stop_everything() {
  stop_all
  local pids
  pids=$(marked | cut -d' ' -f1)
  [ -z "$pids" ] && return 0
  # shellcheck disable=SC2086
  kill -TERM $pids 2>/dev/null || true
  sleep 0.5
  pids=$(marked | cut -d' ' -f1)
  # shellcheck disable=SC2086
  [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
}

leftovers() {
  alive
  marked
}

up() {
  local stale
  stale=$(leftovers)
  if [ -n "$stale" ]; then
    log "stopping processes left by an earlier run:"
    sed 's/^/  /' <<<"$stale" >&2
    stop_everything
  fi
  rm -f "$TESTENV_DIR"/*.env "$TESTENV_DIR/env"
  export TESTENV_OWNER=$TESTENV_DIR
  # A failed step must not leave half an environment running.
  if [ -f "$HERE/kube.sh" ] && [ -z "${TESTENV_NO_KUBE:-}" ]; then
    if ! { bash "$HERE/kube.sh" build && bash "$HERE/kube.sh" up; }; then
      stop_everything
      die "Kubernetes API server did not come up (logs in $TESTENV_DIR/logs)"
    fi
  fi
  # A second attempt picks new ports: another process may have taken a port between its pick and its bind.
  if ! bash "$HERE/services.sh" up; then
    log "services did not come up; retrying once on new ports"
    if ! bash "$HERE/services.sh" up; then
      stop_everything
      die "services did not come up (logs in $TESTENV_DIR/logs)"
    fi
  fi
  cat "$TESTENV_DIR"/*.env >"$TESTENV_DIR/env.tmp"
  mv "$TESTENV_DIR/env.tmp" "$TESTENV_DIR/env"
  log "test environment up: eval \"\$($0 env)\" or let the tests read $TESTENV_DIR/env"
}

down() {
  if [ -f "$HERE/kube.sh" ]; then bash "$HERE/kube.sh" down || true; fi
  bash "$HERE/services.sh" down || true
  stop_everything
  rm -f "$TESTENV_DIR"/*.env "$TESTENV_DIR/env"
}

check() {
  local left
  left=$(leftovers)
  if [ -n "$left" ]; then
    printf '[testenv] processes of the test environment still alive:\n' >&2
    sed 's/^/  /' <<<"$left" >&2
    exit 1
  fi
  log "no process of the test environment is alive"
}

case ${1:-} in
  up) up ;;
  env)
    [ -f "$TESTENV_DIR/env" ] || die "the test environment is not up: run hack/testenv.sh up"
    cat "$TESTENV_DIR/env"
    ;;
  down) down ;;
  check) check ;;
  *) die "usage: $0 up|env|down|check" ;;
esac
