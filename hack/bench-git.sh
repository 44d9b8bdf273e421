#!/usr/bin/env bash
# Benchmark of the Git engine (crate `git`) against the git CLI: one automation cycle on a large repository,
# cold and warm, over git:// (git daemon) and ssh:// (sshd) of the test environment. Not part of `cargo test`.
#
# Repository: COMMITS commits, FILES files of about SIZE bytes (default 20,000 x 5,000 x 2 KB), built once with
# `git fast-import` (crates/git/examples/bench_cycle.rs) and cached in target/bench-git; each transport serves a
# fresh copy of it from the test environment's Git root.
#
# Each run, for each engine (ours = the git crate as the automation controller runs it; cli = the git CLI):
#   cold: empty cache; `--depth 1` clone of main, edit one file, commit, push;
#   (not timed: another clone pushes one commit to main;)
#   warm: the cache left by the cold cycle; fetch, reset the worktree onto the new head (untracked files
#         removed; the CLI runs fetch + reset --hard + clean -fdx), the same edit, commit, push.
# Every cycle runs in its own process (bench_cycle cycle), timed inside it (wall clock). `/usr/bin/time` adds
# its CPU time (user + sys, 10 ms resolution; for the CLI including every git/ssh process it ran; server side
# not counted) and peak RSS (for the CLI, the largest git/ssh process). CPU time is the figure to compare on a
# busy machine, where wall times mostly measure waiting for a core. Prints every cycle, then per transport the
# medians, the warm/cold ratio (wall clock) and the machine's load average.
#
#   hack/bench-git.sh                          # 10 runs over daemon and ssh
#   BENCH_RUNS=3 BENCH_TRANSPORTS=daemon hack/bench-git.sh
#
# Variables: BENCH_RUNS (10), BENCH_TRANSPORTS ("daemon ssh"), BENCH_COMMITS (20000), BENCH_FILES (5000),
# BENCH_SIZE (2048), BENCH_PROFILE (release; dev only to try the script), BENCH_BIN (a bench_cycle binary built
# earlier, e.g. from another commit, to compare: skips the build).
# Starts the test environment's services (`TESTENV_NO_KUBE=1 hack/testenv.sh up`) when it is not up, and stops
# them at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TESTENV_DIR="${TESTENV_DIR:-$ROOT/target/testenv}"
RUNS="${BENCH_RUNS:-10}"
TRANSPORTS="${BENCH_TRANSPORTS:-daemon ssh}"
COMMITS="${BENCH_COMMITS:-20000}"
FILES="${BENCH_FILES:-5000}"
SIZE="${BENCH_SIZE:-2048}"
PROFILE="${BENCH_PROFILE:-release}"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

WORK="$(mktemp -d)"
STARTED_ENV=0
SERVED=()
cleanup() {
  for s in "${SERVED[@]}"; do rm -rf "$s"; done
  rm -rf "$WORK"
  if [ "$STARTED_ENV" = 1 ]; then "$ROOT/hack/testenv.sh" down; fi
}
trap cleanup EXIT

if [ ! -f "$TESTENV_DIR/env" ]; then
  echo "the test environment is not up: starting its services; they are stopped at the end"
  TESTENV_NO_KUBE=1 "$ROOT/hack/testenv.sh" up
  STARTED_ENV=1
fi
set -a; . "$TESTENV_DIR/env"; set +a

if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"
else
  (cd "$ROOT" && cargo build --profile "$PROFILE" -q -p git --example bench_cycle)
  [ "$PROFILE" = dev ] && PROFILE=debug
  BIN="$TARGET/$PROFILE/examples/bench_cycle"
fi

REPO="$ROOT/target/bench-git/repo-c$COMMITS-f$FILES-s$SIZE.git"
if [ ! -d "$REPO" ]; then
  mkdir -p "$(dirname "$REPO")"
  echo "generating $REPO: $COMMITS commits, $FILES files of about $SIZE bytes (cached for later runs) ..."
  start=$(date +%s.%N)
  "$BIN" generate "$REPO" "$COMMITS" "$FILES" "$SIZE"
  echo "generated in $(echo "$(date +%s.%N) - $start" | bc) s ($(du -sh "$REPO" | cut -f1))"
fi

TIME=()
if [ -x /usr/bin/time ]; then
  TIME=(/usr/bin/time -f '%M %U %S' -o "$WORK/rss")
else
  echo "/usr/bin/time is missing (Debian package 'time'): peak RSS not measured" >&2
fi

# cycle TRANSPORT ENGINE MODE NAME: one cycle; appends "TRANSPORT ENGINE MODE WALL_MS RSS_KB CPU_MS" to the
# results.
cycle() {
  local ms rss=0 cpu=0
  rm -f "$WORK/rss"
  ms=$("${TIME[@]}" "$BIN" cycle "$2" "$3" "$1" "$4" "$WORK/$1-$2")
  if [ -f "$WORK/rss" ]; then
    read -r rss user sys < <(tail -n1 "$WORK/rss")
    cpu=$(echo "($user + $sys) * 1000" | bc)
  fi
  echo "$1 $2 $3 $ms $rss $cpu" >>"$WORK/results"
  printf '  %-4s %-4s %8.1f ms  CPU %5.0f ms  %6.1f MiB\n' "$2" "$3" "$ms" "$cpu" "$(echo "$rss / 1024" | bc -l)"
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
for t in $TRANSPORTS; do
  name="bench-git-$t-$(date +%s%N | tail -c 9)"
  served="$TESTENV_GIT_ROOT/$name.git"
  cp -a "$REPO" "$served"
  SERVED+=("$served")
  for run in $(seq 1 "$RUNS"); do
    echo "$t run $run:"
    for engine in ours cli; do
      cycle "$t" "$engine" cold "$name"
      "$BIN" upstream "$name" "$WORK/upstream-$t"
      cycle "$t" "$engine" warm "$name"
    done
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
pick() { awk -v t="$1" -v e="$2" -v m="$3" -v c="$4" '$1==t && $2==e && $3==m {print $c}' "$WORK/results"; }

echo
echo "Git cycle on $COMMITS commits x $FILES files of ~$SIZE B, $RUNS runs, medians ($PROFILE build):"
printf '%-9s %-7s %9s %9s %10s %9s %9s %9s %9s\n' transport engine "cold ms" "warm ms" "warm/cold" \
  "cold CPU" "warm CPU" "cold RSS" "warm RSS"
for t in $TRANSPORTS; do
  for engine in ours cli; do
    cold=$(pick "$t" "$engine" cold 4 | median)
    warm=$(pick "$t" "$engine" warm 4 | median)
    crss=$(pick "$t" "$engine" cold 5 | median)
    wrss=$(pick "$t" "$engine" warm 5 | median)
    ccpu=$(pick "$t" "$engine" cold 6 | median)
    wcpu=$(pick "$t" "$engine" warm 6 | median)
    label=$engine
    [ "$engine" = cli ] && label="git CLI"
    printf '%-9s %-7s %9.1f %9.1f %9.0f%% %6.0f ms %6.0f ms %5.1f MiB %5.1f MiB\n' "$t" "$label" "$cold" "$warm" \
      "$(echo "100 * $warm / $cold" | bc -l)" "$ccpu" "$wcpu" \
      "$(echo "$crss / 1024" | bc -l)" "$(echo "$wrss / 1024" | bc -l)"
  done
done
