#!/usr/bin/env bash
# Benchmarks on the local stack: render time and the submit path per cache tier,
# with baselines measured in the same run. Prints medians; asserts nothing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
infra/stack.sh up
eval "$(infra/stack.sh env)"
cargo bench -p facesvg --bench service
