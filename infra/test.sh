#!/usr/bin/env bash
# Runs every test: brings the local stack up (installing what is missing), then the
# unit tests and the integration tests against real Postgres, Redis, S3 and SQS, then
# one request end to end through the local gateway and the functions (processes
# against cargo lambda's runtime API emulator).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

infra/stack.sh up
eval "$(infra/stack.sh env)"

# Databases left by earlier runs' test apps.
psql "$FACESVG_TEST_PG" -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'facesvg_test_%'" |
  while read -r db; do psql "$FACESVG_TEST_PG" -qc "DROP DATABASE IF EXISTS $db" >/dev/null; done

# The SAM template: cfn-lint with AWS's serverless rules, and SAM's own validation
# (offline: dummy credentials, no emulator endpoint), no errors or warnings; the
# exceptions are written in the template's cfn-lint metadata with their reasons. Then
# the Rust tests check it against the code and AWS's valid values (tests/template.rs).
lint_passed=0 lint_failed=0
if "$ROOT/.local/venv/bin/cfn-lint" template.yaml -a cfn_lint_serverless.rules; then
  lint_passed=$((lint_passed + 1))
else
  lint_failed=$((lint_failed + 1))
fi
if env -u AWS_ENDPOINT_URL SAM_CLI_TELEMETRY=0 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing \
  AWS_DEFAULT_REGION=us-east-1 "$ROOT/.local/sam-venv/bin/sam" validate --lint --template template.yaml; then
  lint_passed=$((lint_passed + 1))
else
  lint_failed=$((lint_failed + 1))
fi
# infra/run.sh --watch: its change detection and what a change rebuilds (no build).
if infra/watch_test.sh; then
  lint_passed=$((lint_passed + 1))
else
  lint_failed=$((lint_failed + 1))
fi

# One job at a time: two cores, and the tests themselves run in parallel.
mkdir -p .local
set +e
cargo test --workspace -j 2 -- --test-threads 4 2>&1 | tee .local/cargo-test.log
status=${PIPESTATUS[0]}
set -e
passed=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' .local/cargo-test.log | paste -sd+ | bc)
failed=$(sed -n 's/^test result: .* \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' .local/cargo-test.log | paste -sd+ | bc)
[ "$status" -eq 0 ] && [ "$lint_failed" -eq 0 ] || {
  echo "tests: $(( ${passed:-0} + lint_passed )) passed, $(( ${failed:-0} + lint_failed )) failed"
  exit 1
}

# Fuzz smoke: each target replays its committed seed corpus and runs 20,000 mutated
# executions with the debug build cargo test just made (infra/fuzz.sh runs millions,
# optimised, with the 1 s hang limit; a debug build on a busy machine gets 10 s).
fuzz_failed=0
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"
for t in "${FUZZ_TARGETS[@]}"; do
  FUZZ_OUT="$ROOT/.local/fuzz" FUZZ_SLOW_MS=10000 cargo run -q -p facesvg --example fuzz -- run "$t" 20000 || fuzz_failed=$((fuzz_failed + 1))
done
lint_failed=$((lint_failed + fuzz_failed))
lint_passed=$((lint_passed + ${#FUZZ_TARGETS[@]} - fuzz_failed))
[ "$fuzz_failed" -eq 0 ] || {
  echo "tests: $((passed + lint_passed)) passed, $((failed + lint_failed)) failed"
  exit 1
}

# The system end to end: the functions, the runtime API emulator, gateway, queue, S3.
smoke_failed=0
infra/run.sh --smoke || smoke_failed=1

# The running API from outside: Schemathesis against its OpenAPI description (no 5xx,
# no answer that breaks the schema), the viewer in headless Chromium (a fixture face
# submitted, its regions drawn over the photo; the screenshot is docs/viewer.png) and
# then the dashboard (every chart drawn with data; docs/dashboard.png),
# and HTTP caching (ETags, Cache-Control, a 304 that reads nothing from S3).
LIVE_PORT=${FACESVG_LIVE_PORT:-8380}
LIVE_URL="http://127.0.0.1:$LIVE_PORT"
FACESVG_GATEWAY_PORT=$LIVE_PORT FACESVG_LAMBDA_PORT=$((LIVE_PORT + 920)) \
  setsid infra/run.sh --no-demo >.local/live.log 2>&1 &
live=$!
trap 'kill -- "-$live" 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do curl -sf -o /dev/null "$LIVE_URL/health" && break; sleep 1; done
live_passed=0 live_failed=0
for check in "infra/schemathesis.sh" "infra/browser_test.sh docs/viewer.png docs/dashboard.png" \
  "$ROOT/.local/venv/bin/python infra/http_cache_check.py"; do
  if FACESVG_URL=$LIVE_URL $check; then
    live_passed=$((live_passed + 1))
  else
    echo "FAILED: $check" >&2
    live_failed=$((live_failed + 1))
  fi
done
kill -- "-$live" 2>/dev/null || true
wait "$live" 2>/dev/null || true

all_failed=$((failed + smoke_failed + live_failed))
echo "tests: $((passed + lint_passed + 1 - smoke_failed + live_passed)) passed, $all_failed failed"
[ "$all_failed" -eq 0 ]
