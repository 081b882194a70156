#!/usr/bin/env bash
# Every benchmark, each next to a baseline measured in the same run. Prints medians;
# asserts nothing.
#
#   infra/bench.sh                      all of the below
#   infra/bench.sh service render ...   just those parts (service, render, statistics, coldstart,
#                                       capacity)
#
# Parts:
#   service    cache hits as the runtime runs them (event bytes in, answer bytes out)
#              against parse + validate + hash (+ one raw Redis GET / indexed SELECT),
#              for einstein, a 1 MiB and a 4 MiB PNG and an 8 MiB direct upload; the
#              process step against decode + render; a miss end to end; SHA-256 next
#              to `openssl speed sha256`
#   render     the renderer next to OpenCV and potrace on the test faces, synthetic,
#              heavy, blob and ragged maps 1024²-4096²: time, SVG bytes (and next to
#              potrace's), IoU, gap, overlap, heap per edge
#   statistics each statement behind /cache/stats, /daily, /top, /recent and
#              Retry-After at 1 M task rows and 10 M metric rows over 100 tenants:
#              median and p99 before migration 0006 (its indexes and view taken back
#              in a rolled-back transaction) and after the sweep's rollup and pruning
#   coldstart  each function's release bootstrap started 15 times against a minimal
#              Lambda Runtime API on 127.0.0.1 (init and first invocation), and the
#              size of each arm64 bootstrap as deployed (cargo lambda build --arm64)
#   capacity   infra/capacity.py: the four functions run by infra/run.sh on a database,
#              Redis, bucket and queue of their own; per invocation of each kind
#              (cached submit, miss + its process batch, status): log bytes (EMF,
#              tracing, Lambda's platform lines), X-Ray segment bytes, Postgres
#              transactions, Redis commands and bytes; then the cost per million, the
#              capacity table, the profiles, and the model checked against 30 s of
#              traffic at 20 submits a second (predicted and measured side by side)
#
# The stack (infra/stack.sh) is started if it is not running. The first run builds
# the release functions twice (x86_64 to run them here, arm64 to weigh them): about
# 20 minutes on two cores; later runs reuse the builds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PARTS=("$@")
[ ${#PARTS[@]} -gt 0 ] || PARTS=(service render statistics coldstart capacity)
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log() { printf '[bench] %s\n' "$*" >&2; }

infra/stack.sh up
eval "$(infra/stack.sh env)"

service() {
  log "service: cargo bench -p facesvg --bench service"
  nice -n 5 cargo bench -q -p facesvg --bench service
  # The floor for SHA-256 on this CPU, next to the service's "SHA-256 of a … image" rows.
  echo
  for bytes in 1048576 8388608; do
    openssl speed -evp sha256 -bytes "$bytes" -seconds 2 2>/dev/null |
      awk -v b="$bytes" '/^sha256|^SHA256/ { v = $NF; sub(/k$/, "", v); printf "openssl speed sha256, %d MiB blocks            %7.0f MB/s\n", b / 1048576, v * 1000 / 1e6 }'
  done
}

render() {
  log "render: infra/render-bench.sh 1024 2048 4096"
  infra/render-bench.sh 1024 2048 4096
}

statistics() {
  log "statistics: cargo bench -p facesvg --bench statistics (filling 11 M rows takes minutes)"
  nice -n 5 cargo bench -q -p facesvg --bench statistics
}

coldstart() {
  log "coldstart: release bootstraps (x86_64, to run here)"
  nice -n 5 cargo build -q --release -p submit -p process -p status -p cache-cleanup
  mkdir -p .local/coldstart
  for fn in "${FUNCTIONS[@]}"; do cp "$TARGET/release/$fn" ".local/coldstart/$fn"; done
  .local/venv/bin/python infra/coldstart.py .local/coldstart --runs 15

  log "coldstart: arm64 bootstraps as deployed (cargo lambda build --release --arm64)"
  rustup target list --installed | grep -q '^aarch64-unknown-linux-gnu$' ||
    rustup target add aarch64-unknown-linux-gnu
  # cargo lambda cross-compiles (C parts included) with zig from .local/venv.
  PATH="$ROOT/.local/venv/bin:$PATH" nice -n 5 .local/venv/bin/cargo-lambda lambda build -q --release --arm64 \
    -p submit -p process -p status -p cache-cleanup
  echo
  echo "bootstrap sizes (stripped; the release profile strips symbols), goal <= 12 MB arm64:"
  printf '%-14s %12s %12s\n' function arm64 x86_64
  for fn in "${FUNCTIONS[@]}"; do
    arm=$(stat -c %s "$TARGET/lambda/$fn/bootstrap")
    x86=$(stat -c %s ".local/coldstart/$fn")
    awk -v f="$fn" -v a="$arm" -v x="$x86" 'BEGIN { printf "%-14s %9.2f MB %9.2f MB\n", f, a / 1e6, x / 1e6 }'
  done
}

capacity() {
  log "capacity: infra/capacity.py measure, costs, model, profiles, check"
  .local/venv/bin/python infra/capacity.py measure
  .local/venv/bin/python infra/capacity.py costs
  .local/venv/bin/python infra/capacity.py model
  .local/venv/bin/python infra/capacity.py profiles
  .local/venv/bin/python infra/capacity.py check
}

for part in "${PARTS[@]}"; do
  case "$part" in
    service | render | statistics | coldstart | capacity) "$part" ;;
    *) echo "usage: $0 [service] [render] [statistics] [coldstart] [capacity]" >&2; exit 2 ;;
  esac
done
