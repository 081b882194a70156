#!/usr/bin/env bash
# The viewer and the dashboard in headless Chromium against the running local API (infra/run.sh):
# installs Debian's chromium and Playwright (PyPI, into .local/venv; it drives the
# system browser, it downloads none of its own) when missing, then runs
# infra/browser_test.py, which saves a screenshot of each to the given paths.
#
#   infra/browser_test.sh docs/viewer.png [docs/dashboard.png]   FACESVG_URL defaults to http://127.0.0.1:8080
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SHOT=${1:-"$ROOT/.local/viewer.png"}
VENV="$ROOT/.local/venv"

log() { printf '[browser] %s\n' "$*" >&2; }

# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"
[ -x /usr/bin/chromium ] || apt_install chromium
[ -x "$VENV/bin/python" ] || { log "no $VENV: run infra/stack.sh up first"; exit 1; }
pip_ensure "$VENV" playwright
exec "$VENV/bin/python" infra/browser_test.py "$SHOT" ${2:+"$2"}
