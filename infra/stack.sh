#!/usr/bin/env bash
# The local stack: Postgres, Redis, and moto (S3 + SQS) on 127.0.0.1, with the
# bucket, the queue and its DLQ, and the schema migrated.
#
#   infra/stack.sh up      install what is missing, start what is not running (idempotent)
#   infra/stack.sh down    stop what `up` started (by PID), nothing else
#   infra/stack.sh env     print the environment the functions and tests use
#
# Services already listening on their port (as on machines that start Postgres and
# Redis for you) are used as they are. State lives in .local/ (git-ignored).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE="$ROOT/.local"
PG_PORT=${FACESVG_PG_PORT:-5432}
REDIS_PORT=${FACESVG_REDIS_PORT:-6379}
MOTO_PORT=${FACESVG_MOTO_PORT:-4566}
BUCKET=facesvg-local
QUEUE=facesvg-tasks

log() { printf '[stack] %s\n' "$*" >&2; }
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"

print_env() {
  cat <<ENV
export DATABASE_URL=postgres://postgres@127.0.0.1:$PG_PORT/facesvg
export FACESVG_TEST_PG=postgres://postgres@127.0.0.1:$PG_PORT/postgres
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT/
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=testing
export AWS_SECRET_ACCESS_KEY=testing
export S3_BUCKET=$BUCKET
export QUEUE_URL=http://127.0.0.1:$MOTO_PORT/123456789012/$QUEUE
export FACESVG_DLQ_URL=http://127.0.0.1:$MOTO_PORT/123456789012/$QUEUE-dlq
ENV
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # port, name
  for _ in $(seq 1 100); do listening "$1" && return 0; sleep 0.1; done
  log "$2 did not start on port $1"; exit 1
}

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$dir" ] || { log "no PostgreSQL binaries"; exit 1; }
  echo "$dir"
}

start_postgres() {
  if listening "$PG_PORT"; then
    log "postgres: using the server on 127.0.0.1:$PG_PORT"
  else
    apt_install postgresql postgresql-client
    local bin data="$STATE/pgdata"
    bin=$(pg_bin)
    # Debian's package may have started its own cluster (password auth on TCP):
    # stop it, and run ours with trust auth for local development instead.
    if listening "$PG_PORT" && have pg_ctlcluster; then
      for conf in /etc/postgresql/*/main; do
        [ -d "$conf" ] || continue
        v=$(basename "$(dirname "$conf")")
        pg_ctlcluster --skip-systemctl-redirect "$v" main stop 2>/dev/null || true
      done
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
      mkdir -p "$data"
      chown postgres:postgres "$data"
      runuser -u postgres -- "$bin/initdb" -D "$data" --auth=trust -U postgres >/dev/null
    fi
    log "postgres: starting a local cluster on 127.0.0.1:$PG_PORT"
    runuser -u postgres -- "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w start \
      -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k /tmp -c fsync=off" >/dev/null
    echo "$data" >"$STATE/pg.started"
  fi
  have psql || apt_install postgresql-client
  local exists
  exists=$(psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'facesvg'")
  [ "$exists" = 1 ] || psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qc "CREATE DATABASE facesvg" >/dev/null
}

start_redis() {
  if listening "$REDIS_PORT"; then
    log "redis: using the server on 127.0.0.1:$REDIS_PORT"
    return
  fi
  apt_install redis-server
  if listening "$REDIS_PORT"; then
    log "redis: the package started a server on 127.0.0.1:$REDIS_PORT"
    return
  fi
  log "redis: starting on 127.0.0.1:$REDIS_PORT"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --pidfile "$STATE/redis.pid" --logfile "$STATE/redis.log" --dir "$STATE"
  wait_for "$REDIS_PORT" redis
  echo started >"$STATE/redis.started"
}

ensure_venv() {
  # Each at its pinned version (infra/requirements.txt), installed only when that
  # version is missing.
  pip_ensure "$STATE/venv" moto cargo-lambda ziglang cfn-lint cfn-lint-serverless
  # SAM CLI pins boto3, click and pydantic to versions that moto and the test tools in
  # .local/venv do not use: it gets a venv of its own.
  pip_ensure "$STATE/sam-venv" aws-sam-cli
}

# The moto servers this project's scripts started on MOTO_PORT, by their command line
# (from /proc: procps is not on every Debian).
our_motos() {
  local p
  for p in /proc/[0-9]*; do
    if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q -- "moto_server -H 127.0.0.1 -p $MOTO_PORT "; then
      echo "${p#/proc/}"
    fi
  done
}

start_moto() {
  local pointer="${TMPDIR:-/tmp}/facesvg-moto-$MOTO_PORT.logpath"
  if listening "$MOTO_PORT" && [ -f "$pointer" ] && [ ! -f "$(cat "$pointer")" ]; then
    # Started by a checkout that is gone, and logging into a deleted file: its
    # request log (which infra/http_cache_check.py reads) is lost, so replace it.
    log "moto: the server on 127.0.0.1:$MOTO_PORT logs to $(cat "$pointer"), which is gone: restarting it"
    our_motos | xargs -r kill 2>/dev/null || true
    rm -f "$pointer"
    for _ in $(seq 50); do listening "$MOTO_PORT" || break; sleep 0.1; done
  fi
  if listening "$MOTO_PORT" && curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1; then
    log "moto: using the server on 127.0.0.1:$MOTO_PORT"
  else
    log "moto: starting on 127.0.0.1:$MOTO_PORT"
    nohup "$STATE/venv/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$STATE/moto.log" 2>&1 &
    echo $! >"$STATE/moto.pid"
    # Where this server logs, for a checkout that finds it running and reuses it
    # (infra/http_cache_check.py reads the emulator's request log).
    echo "$STATE/moto.log" >"${TMPDIR:-/tmp}/facesvg-moto-$MOTO_PORT.logpath"
    wait_for "$MOTO_PORT" moto
  fi
  eval "$(print_env)"
  "$STATE/venv/bin/python" - <<PY
import boto3, json
s3 = boto3.client("s3")
if "$BUCKET" not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
    s3.create_bucket(Bucket="$BUCKET")
sqs = boto3.client("sqs")
dlq = sqs.create_queue(QueueName="$QUEUE-dlq", Attributes={"MessageRetentionPeriod": "1209600"})["QueueUrl"]
arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
sqs.create_queue(QueueName="$QUEUE", Attributes={
    "VisibilityTimeout": "60",
    "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"}),
})
PY
}

migrate() {
  eval "$(print_env)"
  log "migrating $DATABASE_URL"
  (cd "$ROOT" && cargo run -q --bin facesvg-migrate -- "$DATABASE_URL")
}

up() {
  mkdir -p "$STATE"
  have curl || apt_install curl ca-certificates
  have bc || apt_install bc
  have cargo || { log "cargo is required (https://rustup.rs); install Rust first"; exit 1; }
  ensure_venv
  start_postgres
  start_redis
  start_moto
  migrate
  log "stack is up"
}

down() {
  if [ -f "$STATE/moto.pid" ]; then
    kill "$(cat "$STATE/moto.pid")" 2>/dev/null || true
    rm -f "$STATE/moto.pid" "${TMPDIR:-/tmp}/facesvg-moto-$MOTO_PORT.logpath"
    log "moto stopped"
  fi
  if [ -f "$STATE/redis.started" ]; then
    [ -f "$STATE/redis.pid" ] && kill "$(cat "$STATE/redis.pid")" 2>/dev/null || true
    rm -f "$STATE/redis.started"
    log "redis stopped"
  fi
  if [ -f "$STATE/pg.started" ]; then
    runuser -u postgres -- "$(pg_bin)/pg_ctl" -D "$(cat "$STATE/pg.started")" -m fast stop >/dev/null || true
    rm -f "$STATE/pg.started"
    log "postgres stopped"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  env) print_env ;;
  *) echo "usage: $0 up|down|env" >&2; exit 2 ;;
esac
