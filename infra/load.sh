#!/usr/bin/env bash
# Load scenarios against the running system, with locust (headless) as the client:
#
#   infra/load.sh                 cached, misses, status, storm (in that order)
#   infra/load.sh cached|misses|status|storm
#   infra/load.sh soak [minutes]  mixed traffic (default 10 minutes)
#   infra/load.sh neighbour       a quiet tenant alone, then beside a flooding one
#
# Each prints throughput, p50, p99 and the count of every status code, then checks:
#   storm   one task row and one render for the 500 identical submits; every answer
#           200, 202 or 429
#   neighbour  the quiet tenant's submit-to-SUCCESS p50 and p99 alone and under the
#           flood (goal: within 1.5x); none of its tasks refused or failed; the
#           flood answered 429 once its renders bucket is spent
#   soak    no 5xx; every accepted task reaches SUCCESS; each function instance's RSS,
#           sampled every minute, grows under 10 % in the second half
#   all     no 5xx and no connection error
# and exits non-zero when a check fails.
#
# Options: --release (optimised functions), --instances N (processes per function),
# --max-concurrency N (invocations per process), --users N, --seconds S (per
# scenario, not soak; default 30).
# It uses the system on FACESVG_GATEWAY_PORT (default 8180) if one answers there, or
# starts one with `infra/run.sh --no-demo` on that port and FACESVG_LAMBDA_PORT
# (default 9100) and stops it at the end. Results: .local/load/<scenario>/.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export FACESVG_GATEWAY_PORT=${FACESVG_GATEWAY_PORT:-8180}
export FACESVG_LAMBDA_PORT=${FACESVG_LAMBDA_PORT:-9100}
URL="http://127.0.0.1:$FACESVG_GATEWAY_PORT"
STATE="$ROOT/.local"
RUN="$STATE"
[ "$FACESVG_GATEWAY_PORT" = 8080 ] || RUN="$STATE/run-$FACESVG_GATEWAY_PORT"

RUN_ARGS=() USERS="" SECONDS_EACH=30 SCENARIOS=() SOAK_MINUTES=10
while [ $# -gt 0 ]; do
  case "$1" in
    --release) RUN_ARGS+=(--release) ;;
    --instances) RUN_ARGS+=(--instances "$2"); shift ;;
    --max-concurrency) RUN_ARGS+=(--max-concurrency "$2"); shift ;;
    --users) USERS=$2; shift ;;
    --seconds) SECONDS_EACH=$2; shift ;;
    cached|misses|status|storm|neighbour) SCENARIOS+=("$1") ;;
    soak)
      SCENARIOS+=(soak)
      if [[ "${2:-}" =~ ^[0-9.]+$ ]]; then SOAK_MINUTES=$2; shift; fi ;;
    *) echo "usage: $0 [cached|misses|status|storm|neighbour|soak [minutes]] [--release] [--instances N] [--max-concurrency N] [--users N] [--seconds S]" >&2
       exit 2 ;;
  esac
  shift
done
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(cached misses status storm)

log() { printf '[load] %s\n' "$*" >&2; }
failures=0
check() { # condition message
  if eval "$1"; then log "  ok: $2"; else log "  FAILED: $2"; failures=$((failures + 1)); fi
}

infra/stack.sh up >/dev/null
eval "$(infra/stack.sh env)"
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"
pip_ensure "$STATE/venv" locust

run_pid=""
stop_system() { [ -z "$run_pid" ] || { kill -- "-$run_pid" 2>/dev/null || kill "$run_pid" 2>/dev/null || true; wait "$run_pid" 2>/dev/null || true; }; }
trap stop_system EXIT
if [ "$(curl -s -o /dev/null -w '%{http_code}' "$URL/health" || true)" != 200 ]; then
  log "starting the system on $URL (infra/run.sh --no-demo ${RUN_ARGS[*]:-})"
  rm -f "$RUN/ready"
  setsid infra/run.sh --no-demo "${RUN_ARGS[@]}" >"$STATE/load-run-$FACESVG_GATEWAY_PORT.log" 2>&1 &
  run_pid=$!
  for _ in $(seq 1 1800); do
    [ -f "$RUN/ready" ] && break
    kill -0 "$run_pid" 2>/dev/null || { tail -30 "$STATE/load-run-$FACESVG_GATEWAY_PORT.log" >&2; exit 1; }
    sleep 1
  done
  [ -f "$RUN/ready" ] || { log "the system did not start"; exit 1; }
fi

psql_q() { psql "$DATABASE_URL" -qtAc "$1"; }

# RSS of every function instance of this system, from /proc (kB).
rss() {
  local f pid
  for f in "$RUN"/pids/*.*; do
    pid=$(cat "$f" 2>/dev/null) || continue
    printf '%s=%s ' "$(basename "$f")" "$(awk '/^VmRSS/ {print $2 "kB"}' "/proc/$pid/status" 2>/dev/null || echo gone)"
  done
  echo
}

# Runs one locust scenario; prints the summary line and the status codes.
locust_run() { # name class users spawn_rate seconds [extra env]
  local name=$1 class=$2 users=$3 rate=$4 secs=$5 out="$STATE/load/$1"
  rm -rf "$out"; mkdir -p "$out"
  log "$name: $class, $users clients, ${secs}s, tenant $TENANT"
  # $class unquoted below: one user class or several, split on spaces.
  FACESVG_TENANT=$TENANT FACESVG_OUT=$out "$STATE/venv/bin/locust" -f infra/load/locustfile.py --headless \
    --host "$URL" -u "$users" -r "$rate" -t "${secs}s" --stop-timeout 30 --csv "$out/locust" \
    --only-summary --loglevel WARNING $class >"$out/locust.log" 2>&1 || true
  "$STATE/venv/bin/python" - "$out" "$name" <<'PY'
import json, sys
out, name = sys.argv[1], sys.argv[2]
s = json.load(open(f"{out}/summary.json"))
print(f"[load] {name}: {s['requests']} requests in {s['seconds']} s, {s['per_second']} req/s, "
      f"p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms, max {s['max_ms']} ms, "
      f"codes {' '.join(f'{k}:{v}' for k, v in s['codes'].items())}", file=sys.stderr)
PY
}
codes_ok() { # out allowed-codes-regex: every code in codes.json matches
  "$STATE/venv/bin/python" -c '
import json, re, sys
codes = json.load(open(sys.argv[1] + "/codes.json"))
sys.exit(0 if codes and all(re.fullmatch(sys.argv[2], k) for k in codes) else 1)' "$1" "$2"
}

for scenario in "${SCENARIOS[@]}"; do
  TENANT="load-$scenario-$(date +%s)-$$"
  out="$STATE/load/$scenario"
  case "$scenario" in
    cached)
      locust_run cached CachedSubmit "${USERS:-16}" 16 "$SECONDS_EACH"
      check "codes_ok $out '200|429'" "cached submits: only 200 (and 429)" ;;
    misses)
      locust_run misses MissSubmit "${USERS:-16}" 16 "$SECONDS_EACH"
      check "codes_ok $out '202|429'" "misses: only 202 (and 429)" ;;
    status)
      locust_run status StatusPoll "${USERS:-16}" 16 "$SECONDS_EACH"
      check "codes_ok $out '200|429'" "status polls: only 200 (and 429)" ;;
    storm)
      n=${USERS:-500}
      STORM_USERS=$n locust_run storm Storm "$n" "$n" 120
      sleep 3   # let the render finish
      for _ in $(seq 1 120); do
        [ "$(psql_q "SELECT count(*) FROM task_results WHERE tenant = '$TENANT' AND status IN ('PENDING','PROCESSING')")" = 0 ] && break
        sleep 0.5
      done
      rows=$(psql_q "SELECT count(*) FROM task_results WHERE tenant = '$TENANT'")
      row=$(psql_q "SELECT status || ' attempts=' || attempts FROM task_results WHERE tenant = '$TENANT'")
      task=$(psql_q "SELECT task_id FROM task_results WHERE tenant = '$TENANT' LIMIT 1")
      renders=$(cat "$RUN"/process.log | grep -c "\"task finished\".*$task" || true)
      log "storm: $rows task row(s) ($row), $renders render(s) in the process log"
      check "codes_ok $out '200|202|429'" "storm: every answer 200, 202 or 429"
      check "[ '$rows' = 1 ]" "storm: exactly one task row"
      check "[ '$renders' = 1 ] && [[ '$row' == 'SUCCESS attempts=1' ]]" "storm: exactly one render" ;;
    neighbour)
      locust_run neighbour-alone QuietMiss 1 1 "$SECONDS_EACH"
      cp "$STATE/load/neighbour-alone/summary.json" "$STATE/load/neighbour-alone.json"
      TENANT="$TENANT-2" locust_run neighbour-flooded "QuietMiss FloodMiss" "$((${USERS:-16} + 1))" 17 "$SECONDS_EACH"
      verdict=$("$STATE/venv/bin/python" - "$STATE/load/neighbour-alone.json" "$STATE/load/neighbour-flooded" <<'PY'
import json, sys
alone = json.load(open(sys.argv[1]))["quiet"]
flooded_all = json.load(open(sys.argv[2] + "/summary.json"))
flooded = flooded_all["quiet"]
print(f"[load] neighbour: quiet tenant alone: {alone['tasks']} tasks, p50 {alone['p50_ms']} ms, p99 {alone['p99_ms']} ms", file=sys.stderr)
print(f"[load] neighbour: quiet tenant under the flood: {flooded['tasks']} tasks, p50 {flooded['p50_ms']} ms, "
      f"p99 {flooded['p99_ms']} ms, refused {flooded['refused']}; flood codes {flooded_all['codes']}", file=sys.stderr)
ok = alone["tasks"] and flooded["tasks"] and not flooded["refused"] and not alone["refused"]
r50 = flooded["p50_ms"] / alone["p50_ms"] if ok else None
r99 = flooded["p99_ms"] / alone["p99_ms"] if ok else None
if ok:
    print(f"[load] neighbour: under the flood p50 x{r50:.2f}, p99 x{r99:.2f} (goal: within 1.5x)", file=sys.stderr)
limited = int(flooded_all["codes"].get("429", 0)) > 0
print("ok" if ok and limited and r50 <= 1.5 and r99 <= 1.5 else ("slower" if ok and limited else "failed"))
PY
)
      check "[ '$verdict' != failed ]" "neighbour: every quiet task accepted and finished; the flood answered 429"
      check "[ '$verdict' = ok ]" "neighbour: the quiet tenant's p50 and p99 within 1.5x of alone" ;;
    soak)
      secs=$(echo "$SOAK_MINUTES * 60 / 1" | bc)
      rss_start=$(rss)
      # RSS every minute while the traffic runs: flat means it levels off, so the
      # second half of the soak is compared with the first.
      mkdir -p "$out"
      ( while sleep 60; do echo "$(date +%s) $(rss)"; done ) >"$STATE/load/soak-rss.txt" &
      sampler=$!
      SOAK_RATE=${SOAK_RATE:-5} locust_run soak Soak "${USERS:-8}" 8 "$secs"
      kill "$sampler" 2>/dev/null || true
      for _ in $(seq 1 240); do
        [ "$(psql_q "SELECT count(*) FROM task_results WHERE tenant LIKE '$TENANT%' AND status IN ('PENDING','PROCESSING')")" = 0 ] && break
        sleep 0.5
      done
      rss_end=$(rss)
      accepted=$(sort -u "$out/tasks.txt" | wc -l)
      done_ok=0
      # Thousands of ids: the query goes through stdin, not an argument.
      [ "$accepted" = 0 ] || done_ok=$({
        echo "SELECT count(*) FROM task_results WHERE status = 'SUCCESS' AND task_id IN ("
        sort -u "$out/tasks.txt" | sed "s/.*/'&'/" | paste -sd,
        echo ");"
      } | psql "$DATABASE_URL" -qtA)
      by_status=$(psql_q "SELECT string_agg(status || ':' || n, ' ') FROM (SELECT status, count(*) n
        FROM task_results WHERE tenant LIKE '$TENANT%' GROUP BY status) s")
      log "soak: $accepted tasks accepted, $done_ok reached SUCCESS (rows by status: $by_status)"
      log "soak: RSS at the start: $rss_start"
      log "soak: RSS at the end:   $rss_end"
      # Per instance: start, the middle sample, the end (MB), and the growth in the
      # second half, which must stay under 10 % (caches fill early, then hold).
      rss_flat=$("$STATE/venv/bin/python" - "$STATE/load/soak-rss.txt" "$rss_start" "$rss_end" <<'PY'
import sys
def parse(line):
    return {k: int(v[:-2]) for k, v in (p.split("=") for p in line.split() if p.endswith("kB"))}
samples = [parse(l.split(" ", 1)[1]) for l in open(sys.argv[1]) if " " in l.strip()]
start, end = parse(sys.argv[2]), parse(sys.argv[3])
mid = samples[len(samples) // 2 - 1] if len(samples) >= 2 else start
ok = True
for name in sorted(end):
    s, m, e = start.get(name, 0), mid.get(name, 0), end[name]
    growth = (e - m) / m * 100 if m else 0.0
    ok &= growth < 10
    series = " ".join(f"{x.get(name, 0) / 1024:.0f}" for x in samples)
    print(f"[load] soak: RSS {name}: {s / 1024:.1f} MB -> {m / 1024:.1f} (middle) -> {e / 1024:.1f} MB "
          f"({growth:+.1f} % in the second half); each minute: {series}", file=sys.stderr)
print("flat" if ok else "growing")
PY
)
      check "codes_ok $out '200|202|429'" "soak: no 5xx (every answer 200, 202 or 429)"
      check "[ '$accepted' -gt 0 ] && [ '$accepted' = '$done_ok' ]" "soak: every accepted task reached SUCCESS"
      check "[ '$rss_flat' = flat ]" "soak: every function's RSS levels off (under 10 % growth in the second half)" ;;
  esac
done
curl -s "$URL/_gateway/stats" >"$STATE/load/gateway-stats.json" || true
log "gateway: $(cat "$STATE/load/gateway-stats.json")"
[ "$failures" = 0 ] || { log "$failures check(s) failed"; exit 1; }
log "all checks passed"
