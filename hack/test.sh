#!/usr/bin/env bash
# `make test`: bring up the real services on loopback, run the whole test suite against them, tear them down
# and prove that no process started for the tests is left behind. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

finish() {
  local rc=$?
  hack/testenv.sh down || rc=1
  if ! hack/testenv.sh check; then
    echo "test environment processes leaked" >&2
    rc=1
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
cargo build --workspace --bins
if [ $# -gt 0 ]; then cargo test "$@"; else cargo test --workspace; fi
