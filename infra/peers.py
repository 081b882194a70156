#!/usr/bin/env python3
"""Peers of facesvg's tracer, run on the same label map for side-by-side numbers.

  peers.py MAP.png OUTDIR RUNS [--opencv-only]

- OpenCV: per label, findContours (RETR_CCOMP: outer borders and holes) then
  approxPolyDP with epsilon 1.0, one even-odd <path> per label.
- potrace: per label, a PBM of its mask traced by the potrace CLI with --turdsize 0,
  the per-label SVGs merged into one document.

Writes OUTDIR/opencv.svg and OUTDIR/potrace.svg, whose region elements carry
data-label="N", and prints one JSON line of median wall times in milliseconds.
With --opencv-only, only OpenCV is timed (the bench's later rounds) and nothing
is written.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np


def opencv_svg(labels):
    h, w = labels.shape
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}">']
    for label in np.unique(labels):
        if label == 0:
            continue
        mask = (labels == label).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        d = []
        for c in contours:
            poly = cv2.approxPolyDP(c, 1.0, True).reshape(-1, 2)
            d.append("M" + "L".join(f"{x} {y}" for x, y in poly) + "Z")
        parts.append(f'<path data-label="{label}" fill-rule="evenodd" d="{"".join(d)}"/>')
    parts.append("</svg>")
    return "\n".join(parts)


def potrace_svg(labels, tmp):
    h, w = labels.shape
    groups = []
    for label in np.unique(labels):
        if label == 0:
            continue
        pbm = os.path.join(tmp, f"{label}.pbm")
        out = os.path.join(tmp, f"{label}.svg")
        bits = np.packbits((labels == label).astype(np.uint8), axis=1)
        with open(pbm, "wb") as f:
            f.write(f"P4\n{w} {h}\n".encode())
            f.write(bits.tobytes())
        subprocess.run(["potrace", "--svg", "--turdsize", "0", "-o", out, pbm], check=True)
        text = open(out).read()
        g = re.search(r"<g transform=.*?</g>", text, re.S).group(0)
        groups.append(g.replace("<g ", f'<g data-label="{label}" ', 1))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}">\n'
            + "\n".join(groups) + "\n</svg>")


def timed(fn, runs):
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times), out


def main():
    path, outdir, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    labels = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    cv_ms, cv_svg = timed(lambda: opencv_svg(labels), runs)
    if "--opencv-only" in sys.argv[4:]:
        print(json.dumps({"opencv_ms": cv_ms, "opencv_version": cv2.__version__}))
        return
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        po_ms, po_svg = timed(lambda: potrace_svg(labels, tmp), max(1, runs // 3))
    for name, svg in (("opencv", cv_svg), ("potrace", po_svg)):
        with open(os.path.join(outdir, f"{name}.svg"), "w") as f:
            f.write(svg)
    print(json.dumps({"opencv_ms": cv_ms, "potrace_ms": po_ms, "opencv_version": cv2.__version__}))


if __name__ == "__main__":
    main()
