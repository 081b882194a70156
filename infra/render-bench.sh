#!/usr/bin/env bash
# The renderer side by side with OpenCV and potrace on the same maps (synthetic
# 512²–4096² and the test faces). Installs potrace (apt) and OpenCV (PyPI, into
# .local/venv) if missing. Optional arguments: map sizes, e.g. `1024 2048`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
command -v potrace >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -qq >/dev/null; DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq potrace >/dev/null; }
[ -x .local/venv/bin/python ] || python3 -m venv .local/venv
.local/venv/bin/python -c 'import cv2, numpy' 2>/dev/null ||
  .local/venv/bin/pip install -q --disable-pip-version-check opencv-python-headless==5.0.0.93 numpy
# The bench profile (release without fat LTO, as `cargo bench` builds; its binaries
# land in target/release): minutes less to build, and no faster than production.
cargo build -q --profile bench -p facesvg --bin facesvg-render
cargo build -q --profile bench -p render-bench
target/release/render-bench "$@"
