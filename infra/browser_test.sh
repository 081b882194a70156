#!/usr/bin/env bash
# The viewer in headless Chromium against the running local API (infra/run.sh):
# installs Debian's chromium and Playwright (PyPI, into .local/venv; it drives the
# system browser, it downloads none of its own) when missing, then runs
# infra/browser_test.py, which saves a screenshot to the given path.
#
#   infra/browser_test.sh docs/viewer.png      FACESVG_URL defaults to http://127.0.0.1:8080
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SHOT=${1:-"$ROOT/.local/viewer.png"}
PLAYWRIGHT=1.65.2
VENV="$ROOT/.local/venv"

log() { printf '[browser] %s\n' "$*" >&2; }

if ! [ -x /usr/bin/chromium ]; then
  log "installing chromium (apt)"
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium >/dev/null
fi
[ -x "$VENV/bin/python" ] || { log "no $VENV: run infra/stack.sh up first"; exit 1; }
if [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("playwright"))' 2>/dev/null || true)" != "$PLAYWRIGHT" ]; then
  log "installing playwright $PLAYWRIGHT into .local/venv"
  "$VENV/bin/pip" install -q "playwright==$PLAYWRIGHT"
fi
exec "$VENV/bin/python" infra/browser_test.py "$SHOT"
