#!/usr/bin/env bash
# The renderer side by side with OpenCV and potrace on the same maps (the test
# faces; synthetic, heavy, blob and ragged maps 512²–4096²). Installs potrace (apt) and OpenCV (PyPI, into
# .local/venv) if missing. Optional arguments: map sizes, e.g. `1024 2048`, and
# `--only blobs,ragged` (families: faces, synthetic, heavy, blobs, ragged).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
log() { printf '[render-bench] %s\n' "$*" >&2; }
# shellcheck source=infra/lib.sh
. "$ROOT/infra/lib.sh"
have potrace || apt_install potrace
pip_ensure "$ROOT/.local/venv" opencv-python-headless numpy
# The bench profile (release without fat LTO, as `cargo bench` builds; its binaries
# land in target/release): minutes less to build, and no faster than production.
cargo build -q --profile bench -p facesvg --bin facesvg-render
cargo build -q --profile bench -p render-bench
"${CARGO_TARGET_DIR:-target}/release/render-bench" "$@"
