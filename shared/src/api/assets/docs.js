// The API page: fetches openapi.json from this origin and renders it (routes, fields,
// limits, errors, schemas), with a "try it" form per route. No libraries, nothing
// loaded from elsewhere; every string from the description goes in as text, never as
// HTML.
"use strict";

(function () {
  const TOKEN_KEY = "facesvg.token";
  let spec = null;

  // --- small DOM helpers -------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  // Inline `code`, **bold** and [text](#anchor or relative link); everything else is text.
  function inline(text) {
    const out = [];
    const re = /(`[^`]+`|\*\*[^*]+\*\*|\[[^\]]+\]\([^)\s]+\))/g;
    let last = 0;
    for (const m of String(text).matchAll(re)) {
      if (m.index > last) out.push(text.slice(last, m.index));
      const t = m[0];
      if (t.startsWith("`")) out.push(el("code", { text: t.slice(1, -1) }));
      else if (t.startsWith("**")) out.push(el("strong", { text: t.slice(2, -2) }));
      else {
        const [, label, href] = t.match(/^\[([^\]]+)\]\(([^)\s]+)\)$/);
        // Only links within this site: the page must not send anyone elsewhere by surprise.
        out.push(/^[a-z]+:/i.test(href) ? label : el("a", { href, text: label }));
      }
      last = m.index + t.length;
    }
    if (last < text.length) out.push(text.slice(last));
    return out;
  }

  function prose(text, cls) {
    if (!text) return null;
    return el("div", { class: cls || "prose" },
      String(text).split(/\n\s*\n/).map((p) => el("p", {}, inline(p))));
  }

  function bytes(n) {
    if (n >= 1048576) return `${+(n / 1048576).toFixed(2)} MiB`;
    if (n >= 1024) return `${+(n / 1024).toFixed(2)} KiB`;
    return `${n} bytes`;
  }

  function slug(s) {
    return String(s).replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "");
  }

  // --- schemas -------------------------------------------------------------------
  function resolve(ref) {
    if (!ref.startsWith("#/")) return null;
    return ref.slice(2).split("/").reduce((o, k) => (o ? o[k.replace(/~1/g, "/").replace(/~0/g, "~")] : undefined), spec);
  }
  function refName(ref) {
    return ref.split("/").pop();
  }

  function typeLabel(s) {
    if (!s || typeof s !== "object") return "any";
    if (s.$ref) return refName(s.$ref);
    if ("const" in s) return JSON.stringify(s.const);
    if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(" | ");
    if (s.oneOf) return "one of";
    if (s.anyOf) return "any of";
    let t = Array.isArray(s.type) ? s.type.join(" | ") : s.type || "any";
    if (s.type === "array" && s.items) t = `array of ${typeLabel(s.items)}`;
    if (s.format) t += ` (${s.format})`;
    return t;
  }

  function constraints(s) {
    const c = [];
    if (!s || typeof s !== "object") return c;
    if (s.minimum !== undefined) c.push(`≥ ${s.minimum}`);
    if (s.maximum !== undefined) c.push(`≤ ${s.maximum}`);
    if (s.minItems !== undefined) c.push(`min ${s.minItems} items`);
    if (s.maxItems !== undefined) c.push(`max ${s.maxItems} items`);
    if (s.default !== undefined) c.push(`default ${JSON.stringify(s.default)}`);
    if (s.contentMediaType && s.contentMediaType !== "application/octet-stream") c.push(s.contentMediaType);
    if (s["x-max-bytes"] !== undefined) c.push(`max ${bytes(s["x-max-bytes"])}`);
    if (s.additionalProperties === false) c.push("no other fields");
    if (s.propertyNames && s.propertyNames.enum) c.push(`keys: ${s.propertyNames.enum.join(", ")}`);
    return c;
  }

  // A schema as a tree. References open on demand, so recursive schemas cannot loop.
  function schemaTree(s, depth) {
    depth = depth || 0;
    if (!s || typeof s !== "object") return el("div", { class: "schema" }, "any");
    if (s.$ref) {
      const name = refName(s.$ref);
      const target = resolve(s.$ref);
      const details = el("details", { class: "schema", open: depth === 0 },
        el("summary", {}, el("a", { href: `#schema-${slug(name)}`, text: name }), " ",
          el("span", { class: "cons", text: target ? typeLabel({ ...target, description: undefined }) : "" })));
      let filled = false;
      const fill = () => {
        if (filled || !target) return;
        filled = true;
        details.append(...schemaBody(target, depth + 1));
      };
      if (depth === 0) fill();
      details.addEventListener("toggle", fill);
      return details;
    }
    return el("div", { class: "schema" }, schemaBody(s, depth));
  }

  function schemaBody(s, depth) {
    const parts = [];
    if (s.description && depth > 0) parts.push(el("p", { class: "desc" }, inline(s.description)));
    const alts = s.oneOf || s.anyOf;
    if (alts) {
      parts.push(el("div", { class: "cons", text: s.oneOf ? "exactly one of:" : "any of:" }));
      for (const alt of alts) parts.push(el("div", { class: "prop" }, schemaTree(alt, depth + 1)));
      return parts;
    }
    const cons = constraints(s);
    if (!s.properties) {
      parts.push(el("div", {}, el("span", { class: "type", text: typeLabel(s) }),
        cons.length ? el("span", { class: "cons", text: ` · ${cons.join(" · ")}` }) : null));
      if (s.type === "array" && s.items && (s.items.$ref || s.items.properties)) {
        parts.push(el("div", { class: "prop" }, schemaTree(s.items, depth + 1)));
      }
      if (s.additionalProperties && typeof s.additionalProperties === "object") {
        parts.push(el("div", { class: "prop" }, el("span", { class: "cons", text: "values: " }), schemaTree(s.additionalProperties, depth + 1)));
      }
      return parts;
    }
    if (cons.length) parts.push(el("div", { class: "cons", text: cons.join(" · ") }));
    const required = new Set(s.required || []);
    for (const [name, p] of Object.entries(s.properties)) {
      const pc = constraints(p);
      const target = p.$ref ? resolve(p.$ref) : null;
      const expandable = (t) => t && (t.properties || t.oneOf || t.anyOf || t.items || t.additionalProperties);
      const nested = (p.$ref && expandable(target)) || p.properties || p.oneOf || p.anyOf ||
        (p.type === "array" && p.items && (p.items.$ref || p.items.properties));
      parts.push(el("div", { class: "prop" },
        el("span", { class: "name", text: name }),
        required.has(name) ? el("span", { class: "req", title: "required", text: "*" }) : null,
        " ", el("span", { class: "type", text: typeLabel(p) }),
        pc.length ? el("span", { class: "cons", text: ` · ${pc.join(" · ")}` }) : null,
        p.description ? el("p", { class: "desc" }, inline(p.description)) : null,
        nested ? schemaTree(p.$ref ? { $ref: p.$ref } : (p.type === "array" ? p.items : { ...p, description: undefined }), depth + 1) : null));
    }
    return parts;
  }

  // --- operations ----------------------------------------------------------------
  function operations() {
    const ops = [];
    for (const [path, item] of Object.entries(spec.paths || {})) {
      for (const method of ["get", "post", "put", "delete", "patch"]) {
        if (item[method]) ops.push({ path, method, op: item[method] });
      }
    }
    return ops;
  }

  function opId(o) {
    return `op-${o.op.operationId || slug(o.method + o.path)}`;
  }

  function securityNote(op) {
    const sec = op.security !== undefined ? op.security : spec.security || [];
    if (!sec.length) return el("span", { class: "lock", text: "public" });
    const parts = sec.map((req) => Object.entries(req).map(([name, scopes]) =>
      scopes.length ? `${name} + scope ${scopes.join(", ")}` : name).join(" & "));
    return el("span", { class: "lock", title: "authentication", text: `auth: ${parts.join(" or ")}` });
  }

  function paramsTable(params) {
    if (!params || !params.length) return null;
    return [el("h4", { text: "Parameters" }),
      el("table", {}, el("tr", {}, ["name", "in", "type", "constraints", "description"].map((h) => el("th", { text: h }))),
        params.map((p) => {
          p = p.$ref ? resolve(p.$ref) : p;
          return el("tr", {},
            el("td", {}, el("code", { text: p.name }), p.required ? el("span", { class: "req", text: " *" }) : null),
            el("td", { text: p.in }),
            el("td", { text: typeLabel(p.schema) }),
            el("td", { text: constraints(p.schema).join(" · ") }),
            el("td", {}, inline(p.description || "")));
        }))];
  }

  function bodySection(body) {
    if (!body) return null;
    body = body.$ref ? resolve(body.$ref) : body;
    const out = [el("h4", {}, "Request body", body.required ? el("span", { class: "req", text: " *" }) : null,
      body["x-max-bytes"] ? el("span", { class: "muted", text: ` · at most ${bytes(body["x-max-bytes"])}` }) : null)];
    for (const [type, media] of Object.entries(body.content || {})) {
      out.push(el("div", {}, el("code", { text: type })));
      const schema = media.schema && media.schema.$ref ? resolve(media.schema.$ref) : media.schema;
      if (schema && schema.properties) {
        const required = new Set(schema.required || []);
        if (schema.description) out.push(prose(schema.description, "muted"));
        out.push(el("table", {}, el("tr", {}, ["field", "type", "constraints", "description"].map((h) => el("th", { text: h }))),
          Object.entries(schema.properties).map(([name, p]) => {
            const enc = media.encoding && media.encoding[name];
            const cons = constraints(p);
            if (enc && enc.contentType && !cons.includes(enc.contentType)) cons.push(enc.contentType);
            return el("tr", { id: `field-${slug(name)}` },
              el("td", {}, el("code", { text: name }), required.has(name) ? el("span", { class: "req", text: " *" }) : null),
              el("td", { text: p.format === "binary" ? "file" : typeLabel(p) }),
              el("td", { text: cons.join(" · ") }),
              el("td", {}, inline(p.description || "")));
          })));
      } else if (media.schema) {
        out.push(schemaTree(media.schema));
      }
    }
    return out;
  }

  function responsesSection(responses) {
    const out = [el("h4", { text: "Responses" })];
    for (const [code, r0] of Object.entries(responses || {})) {
      const r = r0.$ref ? resolve(r0.$ref) : r0;
      const cls = `code c${code[0]}`;
      // The first paragraph is the summary line; any others open with the schema.
      const [first, ...rest] = String(r.description || "").split(/\n\s*\n/);
      const details = el("details", { class: "resp" },
        el("summary", {}, el("span", { class: cls, text: code }), inline(first)));
      if (rest.length) details.append(prose(rest.join("\n\n")));
      for (const [name, h] of Object.entries(r.headers || {})) {
        details.append(el("div", {}, "Header ", el("code", { text: name }), " — ", inline(h.description || "")));
      }
      for (const [type, media] of Object.entries(r.content || {})) {
        details.append(el("div", {}, el("code", { text: type })));
        if (media.schema) details.append(schemaTree(media.schema));
      }
      out.push(details);
    }
    return out;
  }

  // --- try it ----------------------------------------------------------------------
  function tryForm(o) {
    const fields = [];
    const box = el("details", { class: "try" }, el("summary", { text: "Try it" }));
    const form = el("form", {});
    for (const p0 of o.op.parameters || []) {
      const p = p0.$ref ? resolve(p0.$ref) : p0;
      const input = el("input", { type: "text", name: p.name, placeholder: p.schema && p.schema.default !== undefined ? String(p.schema.default) : (p.required ? "required" : "") });
      fields.push({ kind: p.in, name: p.name, input });
      form.append(el("label", {}, el("span", { text: `${p.name} (${p.in})` }), input));
    }
    const body = o.op.requestBody && (o.op.requestBody.$ref ? resolve(o.op.requestBody.$ref) : o.op.requestBody);
    const multipart = body && body.content && body.content["multipart/form-data"];
    if (multipart) {
      const schema = multipart.schema.$ref ? resolve(multipart.schema.$ref) : multipart.schema;
      for (const [name, p] of Object.entries(schema.properties || {})) {
        let input;
        if (p.format === "binary") input = el("input", { type: "file", name });
        else if (p.enum || p.type === "boolean") {
          const values = p.enum || [true, false];
          input = el("select", { name }, el("option", { value: "", text: "(omit)" }), values.map((v) => el("option", { value: String(v), text: String(v) })));
        } else input = el("input", { type: "text", name, placeholder: p.default !== undefined ? String(p.default) : "" });
        fields.push({ kind: "form", name, input, file: p.format === "binary" });
        form.append(el("label", {}, el("span", { text: name }), input));
      }
    }
    const output = el("pre", { class: "hidden" });
    const send = el("button", { type: "submit", text: `Send ${o.method.toUpperCase()}` });
    form.append(send, output);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      let path = o.path;
      const query = new URLSearchParams();
      let data = null;
      for (const f of fields) {
        if (f.kind === "path") path = path.replace(`{${f.name}}`, encodeURIComponent(f.input.value));
        else if (f.kind === "query" && f.input.value !== "") query.set(f.name, f.input.value);
        else if (f.kind === "form") {
          data = data || new FormData();
          if (f.file) { if (f.input.files[0]) data.append(f.name, f.input.files[0]); }
          else if (f.input.value !== "") data.append(f.name, f.input.value);
        }
      }
      // Relative to this page, so a stage prefix (/dev/docs) is kept.
      const url = new URL(path.replace(/^\//, "") + (query.toString() ? `?${query}` : ""), document.baseURI);
      const headers = {};
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = `Bearer ${token}`;
      send.disabled = true;
      output.classList.remove("hidden");
      output.textContent = `${o.method.toUpperCase()} ${url.pathname}${url.search} …`;
      try {
        const started = performance.now();
        const resp = await fetch(url, { method: o.method.toUpperCase(), headers, body: data });
        const ms = Math.round(performance.now() - started);
        const type = resp.headers.get("content-type") || "";
        let text = await resp.text();
        if (type.includes("json")) { try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* show as sent */ } }
        else if (text.length > 4000) text = text.slice(0, 4000) + `\n… (${text.length} characters)`;
        const extra = ["retry-after", "location"].filter((h) => resp.headers.get(h)).map((h) => `${h}: ${resp.headers.get(h)}\n`).join("");
        output.textContent = `${resp.status} ${resp.statusText} · ${type} · ${ms} ms\n${extra}\n${text}`;
      } catch (e) {
        output.textContent = `request failed: ${e}`;
      } finally {
        send.disabled = false;
      }
    });
    box.append(form);
    return box;
  }

  // --- page ------------------------------------------------------------------------
  function authBox() {
    const input = el("input", { type: "password", id: "token", placeholder: "JWT (not needed through the local gateway)", autocomplete: "off" });
    input.value = sessionStorage.getItem(TOKEN_KEY) || "";
    input.addEventListener("change", () => {
      if (input.value.trim()) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      else sessionStorage.removeItem(TOKEN_KEY);
    });
    return el("div", { id: "auth" }, el("label", { for: "token", text: "Bearer token" }), input,
      el("span", { class: "muted", text: "kept in this tab only" }));
  }

  function limitsSection() {
    const limits = spec["x-facesvg-limits"];
    if (!limits) return null;
    const rows = [];
    const walk = (prefix, obj) => {
      for (const [k, v] of Object.entries(obj)) {
        if (v && typeof v === "object" && !Array.isArray(v)) walk(`${prefix}${k}.`, v);
        else rows.push(el("tr", {}, el("td", { text: prefix + k }),
          el("td", { text: Array.isArray(v) ? v.join(", ") : (/bytes$/.test(k) ? `${bytes(v)} (${v})` : v.toLocaleString("en")) })));
      }
    };
    walk("", limits);
    return [el("h2", { id: "limits", text: "Limits" }),
      el("p", { class: "muted", text: "Defaults; each is checked before the work it protects." }),
      el("table", { class: "limits" }, rows)];
  }

  function render() {
    const content = document.getElementById("content");
    const toc = document.getElementById("toc");
    content.textContent = "";
    toc.textContent = "";
    document.getElementById("version").textContent = `v${spec.info.version} · OpenAPI ${spec.openapi}`;
    document.title = `${spec.info.title} API`;

    content.append(el("p", {}, el("strong", {}, inline(spec.info.summary || ""))), prose(spec.info.description), authBox());

    const ops = operations();
    const tags = (spec.tags || []).map((t) => t.name);
    for (const o of ops) for (const t of o.op.tags || ["other"]) if (!tags.includes(t)) tags.push(t);
    for (const tag of tags) {
      const mine = ops.filter((o) => (o.op.tags || ["other"]).includes(tag));
      if (!mine.length) continue;
      const info = (spec.tags || []).find((t) => t.name === tag);
      toc.append(el("h3", { text: tag }));
      content.append(el("h2", { id: `tag-${slug(tag)}`, text: tag }), info && info.description ? prose(info.description, "muted") : null);
      for (const o of mine) {
        const id = opId(o);
        toc.append(el("a", { href: `#${id}`, "data-filter": `${o.method} ${o.path} ${o.op.summary || ""}` },
          el("span", { class: `method ${o.method}`, text: o.method.toUpperCase() }), o.path));
        content.append(el("section", { class: "op", id, "data-filter": `${o.method} ${o.path} ${o.op.summary || ""} ${o.op.description || ""}` },
          el("h3", {}, el("span", { class: `method ${o.method}`, text: o.method.toUpperCase() }), el("span", { class: "path", text: o.path }), securityNote(o.op)),
          o.op.summary ? el("div", {}, el("strong", { text: o.op.summary })) : null,
          prose(o.op.description),
          paramsTable(o.op.parameters),
          bodySection(o.op.requestBody),
          responsesSection(o.op.responses),
          tryForm(o)));
      }
    }

    const limits = limitsSection();
    if (limits) { toc.append(el("h3", { text: "reference" }), el("a", { href: "#limits", text: "Limits" })); content.append(limits); }

    const schemes = (spec.components && spec.components.securitySchemes) || {};
    if (Object.keys(schemes).length) {
      toc.append(el("a", { href: "#security", text: "Authentication" }));
      content.append(el("h2", { id: "security", text: "Authentication" }));
      for (const [name, s] of Object.entries(schemes)) {
        content.append(el("div", { class: "op" }, el("h3", {}, el("code", { text: name }), el("span", { class: "tag", text: [s.type, s.scheme, s.bearerFormat].filter(Boolean).join(" · ") })), prose(s.description)));
      }
    }

    const schemas = (spec.components && spec.components.schemas) || {};
    content.append(el("h2", { id: "schemas", text: "Schemas" }));
    toc.append(el("h3", { text: "schemas" }));
    for (const [name, s] of Object.entries(schemas)) {
      toc.append(el("a", { href: `#schema-${slug(name)}`, "data-filter": name, text: name }));
      content.append(el("section", { class: "op", id: `schema-${slug(name)}`, "data-filter": `${name} ${s.description || ""}` },
        el("h3", {}, el("code", { text: name })), prose(s.description), schemaTree({ ...s, description: undefined }, 1)));
    }
    if (location.hash) {
      const target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  function applyFilter(text) {
    const words = text.toLowerCase().split(/\s+/).filter(Boolean);
    for (const node of document.querySelectorAll("[data-filter]")) {
      const hay = node.getAttribute("data-filter").toLowerCase();
      node.classList.toggle("hidden", !words.every((w) => hay.includes(w)));
    }
  }

  document.getElementById("filter").addEventListener("input", (ev) => applyFilter(ev.target.value));

  fetch("openapi.json")
    .then((r) => {
      if (!r.ok) throw new Error(`openapi.json answered ${r.status}`);
      return r.json();
    })
    .then((json) => {
      spec = json;
      render();
      document.body.setAttribute("data-ready", "true");
    })
    .catch((e) => {
      const content = document.getElementById("content");
      content.textContent = "";
      content.append(el("p", { class: "status-bad", text: `Could not load the description: ${e.message}` }));
    });
})();
