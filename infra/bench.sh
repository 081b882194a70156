#!/usr/bin/env bash
# Benchmarks on the local stack: render time and the submit path per cache tier,
# with baselines measured in the same run. Prints medians; asserts nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
infra/stack.sh up
eval "$(infra/stack.sh env)"
cargo bench -p facesvg --bench service
# The floor for SHA-256 on this CPU, next to the service's "SHA-256 of a … image" rows.
echo
for bytes in 1048576 8388608; do
  openssl speed -evp sha256 -bytes "$bytes" -seconds 2 2>/dev/null |
    awk -v b="$bytes" '/^sha256|^SHA256/ { v = $NF; sub(/k$/, "", v); printf "openssl speed sha256, %d MiB blocks            %7.0f MB/s\n", b / 1048576, v * 1000 / 1e6 }'
done
