// The result viewer: submits a face to this origin's API, follows the task, and lays
// the SVG over the chosen photo. The SVG's viewBox is the crop box in image pixels, so
// the overlay is placed at the crop box's share of the photo and needs no scaling of
// its own. No libraries and nothing loaded from elsewhere; the page's policy only lets
// it talk to its own origin.
"use strict";

(function () {
  const TOKEN_KEY = "facesvg.token";
  const SUBMIT = "api/v1/frontal/crop/submit";
  const statusPath = (id) => `api/v1/frontal/crop/status/${encodeURIComponent(id)}`;
  const resultPath = (id) => `api/v1/frontal/crop/result/${encodeURIComponent(id)}.svg`;
  // A task normally finishes in well under a second; stop waiting after this.
  const GIVE_UP_MS = 5 * 60 * 1000;
  const FIELD_INPUTS = {
    image: "image", landmarks: "landmarks", segmentation_map: "segmentation",
    label_scheme: "label-scheme", crop: "crop",
  };

  const $ = (id) => document.getElementById(id);
  const form = $("submit-form");
  const photo = $("photo");
  const stage = $("stage");
  const overlay = $("overlay");

  let photoUrl = null;
  let downloadUrls = [];
  let current = null; // { svg, crop: {x,y,w,h}, image: {w,h} }
  let run = 0; // the latest submission; older ones stop when they see a newer one

  // --- state shown to the person ------------------------------------------------
  function setState(state) {
    document.body.setAttribute("data-state", state);
  }

  function progress(value, text) {
    $("progress-box").hidden = false;
    const bar = $("progress-bar");
    if (value === null) bar.removeAttribute("value");
    else bar.value = value;
    $("status-text").textContent = text;
  }

  function showMessage(text, kind) {
    const box = $("message");
    box.hidden = !text;
    box.className = kind || "";
    box.textContent = text || "";
  }

  function markField(field) {
    for (const label of document.querySelectorAll("label.field")) {
      label.classList.toggle("invalid", !!field && label.getAttribute("data-field") === field);
    }
  }

  function errorText(body, status) {
    const e = body && body.error;
    if (e && typeof e === "object") {
      return `${status} ${e.code}: ${e.message}${e.field ? ` (field: ${e.field})` : ""}`;
    }
    if (body && body.message) return `${status}: ${body.message}`;
    return `the service answered ${status}`;
  }

  // --- HTTP ------------------------------------------------------------------------
  function authHeaders() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  // Relative to the page, so that a stage prefix (/dev/viewer) is kept.
  function apiUrl(path) {
    return new URL(path, document.baseURI);
  }

  async function readJson(resp) {
    const text = await resp.text();
    try { return JSON.parse(text); } catch (_) { return { message: text.slice(0, 200) }; }
  }

  // Seconds from a Retry-After header (delta-seconds or an HTTP date), else `fallback`.
  function retryAfterMs(resp, fallback) {
    const raw = resp.headers.get("retry-after");
    if (!raw) return fallback;
    const secs = Number(raw);
    if (Number.isFinite(secs)) return Math.min(Math.max(secs, 0), 60) * 1000;
    const at = Date.parse(raw);
    return Number.isFinite(at) ? Math.min(Math.max(at - Date.now(), 0), 60000) : fallback;
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // --- the photo -------------------------------------------------------------------
  function choosePhoto() {
    const file = $("image").files[0];
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = null;
    clearResult();
    if (!file) {
      stage.classList.add("empty");
      photo.removeAttribute("src");
      return;
    }
    photoUrl = URL.createObjectURL(file);
    photo.src = photoUrl;
    photo.decode().then(() => {
      stage.classList.remove("empty");
      layout();
    }).catch(() => showMessage("The browser cannot show this photo; the service may still render it.", "info"));
  }

  // Places the photo and the overlay in the stage: the whole photo, or the crop box
  // filling the stage. Positions are shares of the visible box, so the layout follows
  // the stage's size without listening to resizes.
  function layout() {
    const W = photo.naturalWidth;
    const H = photo.naturalHeight;
    if (!W || !H) return;
    const crop = current ? current.crop : null;
    const zoom = crop && $("zoom").checked;
    const v = zoom ? crop : { x: 0, y: 0, w: W, h: H };
    const pct = (n) => `${n * 100}%`;
    stage.style.aspectRatio = `${v.w} / ${v.h}`;
    stage.style.width = `min(100%, calc(80vh * ${v.w / v.h}))`;
    stage.style.marginInline = "auto";
    photo.style.left = pct(-v.x / v.w);
    photo.style.top = pct(-v.y / v.h);
    photo.style.width = pct(W / v.w);
    photo.style.height = pct(H / v.h);
    if (crop) {
      overlay.style.left = pct((crop.x - v.x) / v.w);
      overlay.style.top = pct((crop.y - v.y) / v.h);
      overlay.style.width = pct(crop.w / v.w);
      overlay.style.height = pct(crop.h / v.h);
    }
  }

  // --- submit and follow ------------------------------------------------------------
  async function submit(ev) {
    ev.preventDefault();
    const mine = ++run;
    markField(null);
    showMessage("");
    clearResult();
    const image = $("image").files[0];
    const landmarks = $("landmarks").files[0];
    const segmentation = $("segmentation").files[0];
    if (!image || !landmarks) {
      markField(!image ? "image" : "landmarks");
      showMessage(`Choose ${!image ? "a face photo" : "its landmarks"} first.`);
      return;
    }
    const data = new FormData();
    data.append("image", image);
    data.append("landmarks", landmarks);
    if (segmentation) {
      data.append("segmentation_map", segmentation);
      const scheme = $("label-scheme").value;
      if (scheme !== "bisenet") data.append("label_scheme", scheme);
    }
    // Dots are drawn by the service from the numbers it parsed; the page only shows or
    // hides them. Opacity is left at the service's default: the slider is a view
    // control, and sending it would make every position a new cache key.
    data.append("show_landmarks", "true");
    if ($("crop").value) data.append("crop", $("crop").value);

    setState("submitting");
    $("submit").disabled = true;
    const started = performance.now();
    const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
    try {
      progress(10, "Uploading…");
      let resp;
      for (let attempt = 0; ; attempt++) {
        resp = await fetch(apiUrl(SUBMIT), { method: "POST", headers: authHeaders(), body: data });
        if ((resp.status === 503 || resp.status === 429) && attempt < 3) {
          const wait = retryAfterMs(resp, 1000);
          progress(10, `The service is busy (${resp.status}); retrying in ${wait / 1000} s…`);
          await sleep(wait);
          continue;
        }
        break;
      }
      const body = await readJson(resp);
      if (mine !== run) return;
      if (resp.status === 200) {
        progress(90, `Answered from the cache (${body.cache_tier}) in ${elapsed()}; fetching the SVG…`);
        return await show(body.task_id, body.result, { "cache tier": body.cache_tier, "render time": ms(body.processing_time_ms) }, elapsed, mine);
      }
      if (resp.status === 422 && body.task_id) {
        const e = body.error || {};
        markField(e.field);
        throw new Error(`These inputs failed before: ${e.code || "error"}: ${e.message || ""}`);
      }
      if (resp.status !== 202) {
        markField(body.error && body.error.field);
        throw new Error(errorText(body, resp.status));
      }
      const id = body.task_id;
      const facts = { deduplicated: body.deduplicated ? "yes (the same task was already open)" : "no" };
      let delay = 150;
      for (;;) {
        if (mine !== run) return;
        if (performance.now() - started > GIVE_UP_MS) throw new Error(`task ${id} did not finish in ${GIVE_UP_MS / 60000} minutes`);
        const st = await fetch(apiUrl(statusPath(id)), { headers: authHeaders() });
        const sbody = await readJson(st);
        if (mine !== run) return;
        if (st.status === 503 || st.status === 429) {
          const wait = retryAfterMs(st, 1000);
          progress(null, `The service is busy (${st.status}); asking again in ${wait / 1000} s… (${elapsed()})`);
          await sleep(wait);
          continue;
        }
        if (st.status !== 200) throw new Error(errorText(sbody, st.status));
        if (sbody.status === "SUCCESS") {
          facts["render time"] = ms(sbody.processing_time_ms);
          progress(90, `Rendered in ${elapsed()}; fetching the SVG…`);
          return await show(id, sbody.result, facts, elapsed, mine);
        }
        if (sbody.status === "FAILURE") {
          const e = sbody.error || {};
          markField(e.field);
          throw new Error(`The task failed: ${e.code || "error"}: ${e.message || ""}${e.retryable ? " (submit again to retry)" : ""}`);
        }
        const label = sbody.status === "PROCESSING" ? "Rendering" : "Queued";
        progress(sbody.status === "PROCESSING" ? 60 : 30,
          `${label} (${sbody.status}${sbody.attempts > 1 ? `, attempt ${sbody.attempts}` : ""})… ${elapsed()}`);
        await sleep(retryAfterMs(st, delay));
        delay = Math.min(delay * 1.5, 2000);
      }
    } catch (e) {
      if (mine !== run) return;
      setState("error");
      progress(0, "Stopped.");
      showMessage(e.message || String(e));
    } finally {
      if (mine === run) $("submit").disabled = false;
    }
  }

  function ms(v) {
    return v === null || v === undefined ? "—" : `${v} ms`;
  }

  // --- the result -------------------------------------------------------------------
  async function show(id, result, facts, elapsed, mine) {
    const resp = await fetch(apiUrl(resultPath(id)), { headers: authHeaders() });
    if (resp.status !== 200) throw new Error(errorText(await readJson(resp), resp.status));
    const text = await resp.text();
    if (mine !== run) return;
    const svg = parseSvg(text);
    const box = (svg.getAttribute("viewBox") || "").trim().split(/[\s,]+/).map(Number);
    if (box.length !== 4 || box.some((n) => !Number.isFinite(n)) || box[2] <= 0 || box[3] <= 0) {
      throw new Error("the SVG has no usable viewBox");
    }
    // The viewBox already maps image pixels onto the overlay's box, which has the crop
    // box's aspect ratio: stretch exactly, with no letterboxing.
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    svg.setAttribute("preserveAspectRatio", "none");
    overlay.textContent = "";
    overlay.append(svg);
    current = { svg, text, crop: { x: box[0], y: box[1], w: box[2], h: box[3] } };

    const img = result && result.image;
    const mismatch = img && photo.naturalWidth && (img.width !== photo.naturalWidth || img.height !== photo.naturalHeight);
    layout();
    buildControls(id, result, facts);
    progress(100, `Done in ${elapsed()}.`);
    if (mismatch) {
      showMessage(`The service saw a ${img.width}×${img.height} image but the browser shows ${photo.naturalWidth}×${photo.naturalHeight}; the overlay may not line up.`, "info");
    }
    setState("done");
  }

  // The SVG comes from this service, but it is markup put into the page: keep only
  // drawing elements and presentation attributes.
  function parseSvg(text) {
    const doc = new DOMParser().parseFromString(text, "image/svg+xml");
    const root = doc.documentElement;
    if (root.nodeName !== "svg" || doc.getElementsByTagName("parsererror").length) {
      throw new Error("the service returned something that is not an SVG");
    }
    for (const bad of root.querySelectorAll("script, foreignObject, a, image, use, iframe")) bad.remove();
    for (const node of [root, ...root.querySelectorAll("*")]) {
      for (const attr of [...node.attributes]) {
        if (/^on/i.test(attr.name) || /href$/i.test(attr.name) || attr.name === "style") node.removeAttribute(attr.name);
      }
    }
    return document.importNode(root, true);
  }

  function clearResult() {
    current = null;
    overlay.textContent = "";
    $("controls").hidden = true;
    $("regions").textContent = "";
    for (const u of downloadUrls) URL.revokeObjectURL(u);
    downloadUrls = [];
    if (photo.naturalWidth) layout();
  }

  function buildControls(id, result, facts) {
    const svg = current.svg;
    const dl = $("facts");
    dl.textContent = "";
    const all = {
      task: id,
      source: result ? result.source.replace("_", " ") : "—",
      image: result ? `${result.image.width}×${result.image.height} px` : "—",
      "crop box": `${current.crop.w}×${current.crop.h} at (${current.crop.x}, ${current.crop.y})`,
      ...facts,
      "SVG size": `${(current.text.length / 1024).toFixed(1)} KiB`,
    };
    for (const [k, v] of Object.entries(all)) {
      const dt = document.createElement("dt");
      dt.textContent = k;
      const dd = document.createElement("dd");
      dd.textContent = v;
      dl.append(dt, dd);
    }

    const group = svg.querySelector("g.regions");
    const opacity = $("opacity");
    const initial = group && group.getAttribute("fill-opacity");
    if (initial !== null && initial !== undefined) opacity.value = initial;
    applyOpacity();

    const dots = svg.querySelector("g.landmarks");
    $("show-landmarks").disabled = !dots;
    applyLandmarks();

    const info = new Map(((result && result.regions) || []).map((r) => [r.name, r]));
    const list = $("regions");
    for (const path of svg.querySelectorAll("path.region")) {
      const name = (path.id || "").replace(/^region-/, "") || path.getAttribute("class");
      const r = info.get(name);
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = true;
      box.id = `toggle-${name}`;
      box.setAttribute("data-region", name);
      box.addEventListener("change", () => { path.style.display = box.checked ? "" : "none"; });
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = path.getAttribute("fill") || "transparent";
      const label = document.createElement("label");
      label.htmlFor = box.id;
      const title = document.createElement("span");
      title.textContent = name;
      const area = document.createElement("span");
      area.className = "area";
      area.textContent = r ? `${Math.round(r.area).toLocaleString("en")} px²` : "";
      label.append(box, swatch, title, area);
      const li = document.createElement("li");
      li.setAttribute("data-region", name);
      li.append(label);
      li.addEventListener("mouseenter", () => path.classList.add("highlight"));
      li.addEventListener("mouseleave", () => path.classList.remove("highlight"));
      list.append(li);
    }

    const original = URL.createObjectURL(new Blob([current.text], { type: "image/svg+xml" }));
    downloadUrls.push(original);
    $("download").href = original;
    $("download").download = `facesvg-${id}.svg`;
    $("download-shown").download = `facesvg-${id}-shown.svg`;
    $("controls").hidden = false;
  }

  function applyOpacity() {
    const v = $("opacity").value;
    $("opacity-value").textContent = Number(v).toFixed(2);
    const group = current && current.svg.querySelector("g.regions");
    if (group) group.setAttribute("fill-opacity", v);
  }

  function applyLandmarks() {
    const dots = current && current.svg.querySelector("g.landmarks");
    if (dots) dots.style.display = $("show-landmarks").checked ? "" : "none";
  }

  function setAll(on) {
    for (const box of document.querySelectorAll("#regions input[type=checkbox]")) {
      if (box.checked !== on) { box.checked = on; box.dispatchEvent(new Event("change")); }
    }
  }

  // The SVG as it looks now: hidden regions dropped, the chosen opacity kept.
  function downloadShown(ev) {
    if (!current) { ev.preventDefault(); return; }
    const copy = current.svg.cloneNode(true);
    for (const node of copy.querySelectorAll("[style]")) {
      if (node.style.display === "none") node.remove();
      else node.removeAttribute("style");
    }
    for (const node of copy.querySelectorAll(".highlight")) node.classList.remove("highlight");
    copy.setAttribute("width", String(current.crop.w));
    copy.setAttribute("height", String(current.crop.h));
    copy.removeAttribute("preserveAspectRatio");
    const text = new XMLSerializer().serializeToString(copy);
    const u = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    downloadUrls.push(u);
    ev.currentTarget.href = u;
  }

  // --- wiring -------------------------------------------------------------------------
  const token = $("token");
  token.value = sessionStorage.getItem(TOKEN_KEY) || "";
  token.addEventListener("change", () => {
    if (token.value.trim()) sessionStorage.setItem(TOKEN_KEY, token.value.trim());
    else sessionStorage.removeItem(TOKEN_KEY);
  });
  $("image").addEventListener("change", choosePhoto);
  form.addEventListener("submit", submit);
  $("opacity").addEventListener("input", applyOpacity);
  $("show-landmarks").addEventListener("change", applyLandmarks);
  $("zoom").addEventListener("change", layout);
  $("all-on").addEventListener("click", () => setAll(true));
  $("all-off").addEventListener("click", () => setAll(false));
  $("download-shown").addEventListener("click", downloadShown);
  applyOpacity();
  setState("ready");
})();
