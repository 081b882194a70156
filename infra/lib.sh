# Shared by the infra scripts (sourced, never run): what is written once.
#
#   FUNCTIONS                 the four Lambda binaries
#   FUZZ_TARGETS              the fuzz harness's targets (shared/examples/fuzz.rs)
#   have CMD                  whether CMD is on PATH
#   apt_install PKG...        installs the Debian packages that are missing
#   pip_ensure VENV NAME...   installs NAME's pinned version (infra/requirements.txt)
#                             into VENV unless that version is installed
#   watch_paths SCOPE         what `infra/run.sh --watch` watches for SCOPE (`shared`
#                             or a function): its sources and manifests
#   watch_snapshot PATH...    one line that changes when a file under PATH is added,
#                             removed, or modified (path, mtime, size: no file is read)
#   watch_affected SCOPE...   the functions a change in the scopes rebuilds (`shared`
#                             rebuilds all four)
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

watch_paths() {
  case "$1" in
    # The library is compiled into every function, and the migrations into it.
    shared) printf '%s\n' shared/src shared/Cargo.toml migrations Cargo.toml Cargo.lock ;;
    *) printf '%s\n' "functions/$1/src" "functions/$1/Cargo.toml" ;;
  esac
}

watch_snapshot() {
  # A path that does not exist (yet) is simply empty: creating it is a change.
  { find "$@" -type f -printf '%p %T@ %s\n' 2>/dev/null || true; } | LC_ALL=C sort | cksum
}

watch_affected() {
  local scope fn out=()
  for scope in "$@"; do
    if [ "$scope" = shared ]; then
      printf '%s\n' "${FUNCTIONS[@]}"
      return 0
    fi
  done
  for fn in "${FUNCTIONS[@]}"; do
    for scope in "$@"; do
      if [ "$scope" = "$fn" ]; then out+=("$fn"); fi
    done
  done
  [ ${#out[@]} -eq 0 ] || printf '%s\n' "${out[@]}"
}
