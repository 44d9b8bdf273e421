#!/usr/bin/env bash
# `make test`: bring up the real services on loopback, run the whole test suite against them, tear them down
# and prove that no process started for the tests is left behind. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG=target/test-output.log

finish() {
  local rc=$?
  hack/testenv.sh down || rc=1
  if ! hack/testenv.sh check; then
    echo "test environment processes leaked" >&2
    rc=1
  fi
  # CI shows only the end of the output: repeat what failed, last.
  if [ "$rc" -ne 0 ] && [ -s "$LOG" ]; then
    echo "==== failures (full output in $LOG) ====" >&2
    grep -E -A40 '^---- .* stdout ----$' "$LOG" | cut -c1-400 | tail -n 150 >&2 || true
    grep -E '^(test .* FAILED|error(\[E[0-9]+\])?:|error: test failed|failures:$|    [a-z_:0-9]+$)' "$LOG" |
      tail -n 40 >&2 || true
  fi
  exit "$rc"
}

hack/testenv.sh up
trap finish EXIT
set -a
# shellcheck disable=SC1091
. target/testenv/env
set +a
# The end-to-end tests run the controller binaries themselves.
mkdir -p target
cargo build --workspace --bins 2>&1 | tee "$LOG"
# Every test binary runs even after a failure, so one run reports all failures.
if [ $# -gt 0 ]; then
  cargo test --no-fail-fast "$@" 2>&1 | tee -a "$LOG"
else
  cargo test --workspace --no-fail-fast 2>&1 | tee -a "$LOG"
fi
