# Shared by the infra scripts (sourced, never run): what is written once.
#
#   FUNCTIONS                 the four Lambda binaries
#   FUZZ_TARGETS              the fuzz harness's targets (shared/examples/fuzz.rs)
#   have CMD                  whether CMD is on PATH
#   apt_install PKG...        installs the Debian packages that are missing
#   pip_ensure VENV NAME...   installs NAME's pinned version (infra/requirements.txt)
#                             into VENV unless that version is installed
#
# Messages go through `log`, which each script defines with its own tag.

FUNCTIONS=(submit process status cache-cleanup)
FUZZ_TARGETS=(multipart landmarks image labelmap_gray labelmap_rgb key message)
INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

have() { command -v "$1" >/dev/null 2>&1; }

apt_install() {
  local missing=() pkg
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  have apt-get || { log "cannot install ${missing[*]}: no apt-get"; exit 1; }
  log "installing ${missing[*]} (apt)"
  # Another install may hold the lock for a while: wait for it rather than fail.
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}" >/dev/null
}

# The pinned requirement of NAME (`moto[server]==5.2.1` for `moto`).
pinned() {
  local spec
  spec=$(grep -E "^$1(\[[^]]*\])?==" "$INFRA_DIR/requirements.txt" | head -1)
  [ -n "$spec" ] || { log "no pin for $1 in infra/requirements.txt"; exit 1; }
  printf '%s\n' "$spec"
}

pip_ensure() {
  local venv=$1 name spec want got todo=()
  shift
  if [ ! -x "$venv/bin/pip" ]; then
    have python3 || apt_install python3
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv
    python3 -m venv "$venv"
  fi
  for name in "$@"; do
    spec=$(pinned "$name")
    want=${spec##*==}
    got=$("$venv/bin/python" -c 'import sys, importlib.metadata as m; print(m.version(sys.argv[1]))' "$name" 2>/dev/null || true)
    [ "$got" = "$want" ] || todo+=("$spec")
  done
  [ ${#todo[@]} -eq 0 ] && return 0
  log "installing ${todo[*]} into ${venv#"$INFRA_DIR/../"}"
  "$venv/bin/pip" install -q --disable-pip-version-check "${todo[@]}"
}
