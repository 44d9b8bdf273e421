#!/usr/bin/env bash
# Shared helpers for the test environment scripts. Source it; do not run it.
#
# Contract between the component scripts (hack/testenv/*.sh) and hack/testenv.sh:
# - state lives in $TESTENV_DIR (default: <repo>/target/testenv);
# - every started process is tracked as $TESTENV_DIR/pids/<name>.pid and logs to $TESTENV_DIR/logs/<name>.log;
# - a component publishes what tests need as `export KEY=VALUE` lines in $TESTENV_DIR/<component>.env;
# - hack/testenv.sh concatenates those into $TESTENV_DIR/env.

set -euo pipefail

TESTENV_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TESTENV_DIR=${TESTENV_DIR:-$TESTENV_REPO/target/testenv}
# Built artefacts that survive `cargo clean` and fresh checkouts (e.g. kube-apiserver).
TESTENV_CACHE=${TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flux-image-automation-rs}
mkdir -p "$TESTENV_DIR/pids" "$TESTENV_DIR/logs" "$TESTENV_CACHE"

log() { printf '[testenv] %s\n' "$*" >&2; }
die() { printf '[testenv] ERROR: %s\n' "$*" >&2; exit 1; }

# Run a command; on failure print its captured output and a clear message, then exit.
run_or_die() {
  local what=$1; shift
  local out
  if ! out=$("$@" 2>&1); then
    printf '%s\n' "$out" | tail -n 40 >&2
    die "$what failed: $*"
  fi
}

# Install Debian packages that are missing (idempotent; `apt-get update` only when something is missing).
need_pkgs() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing Debian packages: ${missing[*]}"
  # Another process (a concurrent test-env script, unattended upgrades) may hold the dpkg lock: wait for it,
  # within a bound, instead of failing at once.
  local lock=(-o DPkg::Lock::Timeout=300)
  run_or_die "apt-get update" apt-get "${lock[@]}" update -q
  run_or_die "apt-get install ${missing[*]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get "${lock[@]}" install -y -q --no-install-recommends "${missing[@]}"
}

# Print a free TCP port on 127.0.0.1 (the kernel picks it; a race with another binder is retried by callers
# through wait_port failing fast).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# start_bg NAME CMD... : start CMD in the background in its own session, track its pid, log to logs/NAME.log.
start_bg() {
  local name=$1; shift
  local logf="$TESTENV_DIR/logs/$name.log"
  setsid "$@" >"$logf" 2>&1 < /dev/null &
  echo $! >"$TESTENV_DIR/pids/$name.pid"
}

# wait_port NAME PORT [SECONDS]: wait until 127.0.0.1:PORT accepts connections; fail with the log if the
# process died or the bound passed.
wait_port() {
  local name=$1 port=$2 secs=${3:-60}
  local pid
  pid=$(cat "$TESTENV_DIR/pids/$name.pid")
  local i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 40 "$TESTENV_DIR/logs/$name.log" >&2 || true
      die "$name exited before listening on port $port"
    fi
    sleep 0.1
  done
  tail -n 40 "$TESTENV_DIR/logs/$name.log" >&2 || true
  die "$name did not listen on port $port within ${secs}s"
}

# stop_all [PREFIX]: stop every tracked process (its whole process group) whose name starts with PREFIX
# (default: all), then forget it.
stop_all() {
  local prefix=${1:-}
  local f pid
  for f in "$TESTENV_DIR"/pids/"$prefix"*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  done
  sleep 0.5
  for f in "$TESTENV_DIR"/pids/"$prefix"*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -KILL -- "-$pid" 2>/dev/null || true
    rm -f "$f"
  done
}

# Print the tracked processes that are still alive (one "name pid" per line).
alive() {
  local f pid
  for f in "$TESTENV_DIR"/pids/*.pid; do
    [ -e "$f" ] || continue
    pid=$(cat "$f")
    kill -0 "$pid" 2>/dev/null && printf '%s %s\n' "$(basename "$f" .pid)" "$pid"
  done
  return 0
}
