#!/usr/bin/env bash
# The change detection of `infra/run.sh --watch` (infra/lib.sh), without building
# anything: every watched path exists, a file added, edited or removed changes the
# snapshot and nothing else does, and a change maps to the functions it rebuilds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[watch-test] %s\n' "$*" >&2; }
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"
failures=0
expect() { # description, got, want
  if [ "$2" != "$3" ]; then
    log "FAILED: $1: got [$2], want [$3]"
    failures=$((failures + 1))
  fi
}

for scope in shared "${FUNCTIONS[@]}"; do
  while read -r path; do
    [ -e "$path" ] || { log "FAILED: $scope watches $path, which does not exist"; failures=$((failures + 1)); }
  done < <(watch_paths "$scope")
done

all=$(printf '%s ' "${FUNCTIONS[@]}")
expect "shared rebuilds all" "$(watch_affected shared | paste -sd' ') " "$all"
expect "shared with one function rebuilds all" "$(watch_affected status shared | paste -sd' ') " "$all"
expect "one function" "$(watch_affected status | paste -sd' ')" "status"
expect "two functions, in the table's order" "$(watch_affected cache-cleanup submit | paste -sd' ')" "submit cache-cleanup"
expect "no scope" "$(watch_affected | paste -sd' ')" ""

dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/src/nested"
echo one >"$dir/src/a.rs"
echo two >"$dir/src/nested/b.rs"
s0=$(watch_snapshot "$dir/src" "$dir/Cargo.toml")
expect "nothing happened" "$(watch_snapshot "$dir/src" "$dir/Cargo.toml")" "$s0"
touch -d '2001-01-01 00:00:01' "$dir/src/nested/b.rs"
s1=$(watch_snapshot "$dir/src" "$dir/Cargo.toml")
[ "$s1" != "$s0" ] || { log "FAILED: an edit (mtime) was not seen"; failures=$((failures + 1)); }
echo '[package]' >"$dir/Cargo.toml"
s2=$(watch_snapshot "$dir/src" "$dir/Cargo.toml")
[ "$s2" != "$s1" ] || { log "FAILED: a new manifest was not seen"; failures=$((failures + 1)); }
rm "$dir/src/a.rs"
s3=$(watch_snapshot "$dir/src" "$dir/Cargo.toml")
[ "$s3" != "$s2" ] || { log "FAILED: a removed file was not seen"; failures=$((failures + 1)); }
mkdir "$dir/src/empty"
expect "an empty directory is no change" "$(watch_snapshot "$dir/src" "$dir/Cargo.toml")" "$s3"

[ "$failures" -eq 0 ] || exit 1
log "passed"
