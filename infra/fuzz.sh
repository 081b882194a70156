#!/usr/bin/env bash
# Fuzzes every parser of untrusted bytes (shared/examples/fuzz.rs): EXECUTIONS per
# target (10,000,000 unless given), two targets at a time on a two-core machine.
#
#   infra/fuzz.sh                      # every target, 10 M executions each
#   infra/fuzz.sh 100000 multipart key # some targets, fewer executions
#
# Each line gives executions, failures (panics, executions over 1 s, peaks over the
# target's memory budget), distinct outcomes and the final corpus size. Failing
# inputs are saved under .local/fuzz/crashes/TARGET/; replay one with
#   cargo run --profile fuzz -p facesvg --example fuzz -- replay TARGET FILE
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
EXECUTIONS=${1:-10000000}
shift || true
TARGETS=("$@")
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${FUZZ_TARGETS[@]}")

command -v cargo >/dev/null || { echo "fuzz: cargo is missing (infra/stack.sh up installs the toolchain)" >&2; exit 1; }
cargo build --profile fuzz -p facesvg --example fuzz
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/fuzz/examples/fuzz
mkdir -p .local/fuzz
export FUZZ_OUT=$ROOT/.local/fuzz

printf '%s\n' "${TARGETS[@]}" |
  xargs -P 2 -I{} sh -c "'$BIN' run {} $EXECUTIONS > .local/fuzz/{}.log 2>&1; echo \$? > .local/fuzz/{}.rc"

passed=0 failed=0
for t in "${TARGETS[@]}"; do
  cat ".local/fuzz/$t.log"
  if [ "$(cat ".local/fuzz/$t.rc")" = 0 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
