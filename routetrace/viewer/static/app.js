// routetrace viewer. Vanilla JS, no dependencies. Every value from a trace is request data:
// it only ever reaches the page through textContent and text nodes, never as markup.
"use strict";

(function () {
  const SPAN_COLORS = {  // the same table as routetrace/tracing/display.py
    LLM: "#8b5cf6", CHAT_MODEL: "#8b5cf6", TOOL: "#f59e0b", RETRIEVER: "#10b981",
    EMBEDDING: "#10b981", RERANKER: "#10b981", AGENT: "#0ea5e9", CHAIN: "#0ea5e9",
    WORKFLOW: "#0ea5e9", TASK: "#0ea5e9",
  };
  const DEFAULT_COLOR = "#3b82f6";
  const ERROR_COLOR = "#dc2626";
  const RANGES = { "": null, "15m": 15 * 60e3, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };

  const main = document.getElementById("main");

  // -- tiny DOM helpers ---------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = String(value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function show(...nodes) { clear(main); for (const n of nodes) if (n) main.append(n); }
  function crumbs(...items) {
    const nav = document.getElementById("crumbs");
    clear(nav);
    for (const item of items) {
      nav.append(el("span", { text: "/" }));
      nav.append(item.href ? el("a", { href: item.href, text: item.text }) : el("span", { text: item.text }));
    }
  }

  function fmtDuration(ns) {
    if (ns === null || ns === undefined) return "–";
    const ms = ns / 1e6;
    return ms < 1000 ? ms.toFixed(1) + " ms" : (ms / 1000).toFixed(2) + " s";
  }
  function fmtTime(ms) {
    if (ms === null || ms === undefined) return "–";
    const d = new Date(ms);
    const pad = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
      `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  function pretty(value) {
    if (typeof value === "string") return value;
    try { return JSON.stringify(value, null, 2); } catch (e) { return String(value); }
  }
  function isEmpty(value) {
    return value === null || value === undefined || value === "" ||
      (Array.isArray(value) && value.length === 0) ||
      (typeof value === "object" && !Array.isArray(value) && Object.keys(value).length === 0);
  }
  function badge(state) { return el("span", { class: "badge " + state, text: state }); }
  // OpenTelemetry's UNSET means "nobody said": an ended span that did not fail is OK.
  function spanState(span) {
    const code = (span.status || {}).status_code;
    if (code === "ERROR" || code === "OK") return code;
    return span.end_time_ns === null || span.end_time_ns === undefined ? "IN_PROGRESS" : "OK";
  }
  function fmtWall(ns) {  // local wall time to the millisecond, for a tooltip
    const ms = Math.floor(ns / 1e6);
    return fmtTime(ms) + "." + String(ms % 1000).padStart(3, "0");
  }
  function fmtOffset(ns) { return (ns < 0 ? "−" : "+") + fmtDuration(Math.abs(ns)); }

  async function api(path) {
    const response = await fetch(path, { headers: { accept: "application/json" } });
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      const error = new Error((body && body.error) || `${response.status} ${response.statusText}`);
      error.status = response.status;
      throw error;
    }
    return body;
  }
  function failure(error) { return el("div", { class: "error-box", text: error.message }); }

  // -- experiments --------------------------------------------------------------------
  async function experimentsPage() {
    crumbs({ text: "experiments" });
    document.title = "routetrace · experiments";
    const data = await api("/api/experiments");
    const rows = data.experiments.filter((e) => e.traces === null || e.traces > 0);
    if (!rows.length) {
      show(el("h1", { text: "Experiments" }),
        el("div", { class: "empty", id: "empty" },
          "No traces yet. Add the middleware to an app, or run ", el("code", { text: "routetrace demo" }), "."));
      return;
    }
    const table = el("table", { class: "grid", id: "experiments" },
      el("tr", {}, ...["experiment", "id", "traces", "errors", "last trace"].map((h) => el("th", { text: h }))));
    for (const e of rows) {
      const href = "/experiments/" + encodeURIComponent(e.experiment_id);
      table.append(el("tr", { class: "clickable", onclick: () => { location.href = href; } },
        el("td", {}, el("a", { href, text: e.name })),
        el("td", { class: "mono", text: e.experiment_id }),
        el("td", { class: "num", text: e.traces === null ? "–" : e.traces }),
        el("td", { class: "num", text: e.errors === null ? "–" : e.errors }),
        el("td", { class: "nowrap", text: fmtTime(e.last_request_time) })));
    }
    show(el("h1", { text: "Experiments" }), table);
  }

  // -- trace table ----------------------------------------------------------------------
  async function tracesPage(experimentId) {
    const params = new URLSearchParams(location.search);
    const experiments = (await api("/api/experiments")).experiments;
    const exp = experiments.find((e) => e.experiment_id === experimentId);
    const title = exp ? exp.name : "experiment " + experimentId;
    crumbs({ text: "experiments", href: "/" }, { text: title });
    document.title = "routetrace · " + title;

    const status = el("select", { name: "status" },
      ...["", "OK", "ERROR", "IN_PROGRESS"].map((s) => el("option", { value: s, text: s || "any" })));
    status.value = params.get("status") || "";
    const name = el("input", { name: "name", placeholder: "POST /math", value: params.get("name") || "" });
    const text = el("input", { name: "q", placeholder: "text in request/response", value: params.get("q") || "" });
    const range = el("select", { name: "range" },
      ...Object.keys(RANGES).map((r) => el("option", { value: r, text: r ? "last " + r : "any time" })));
    range.value = params.get("range") in RANGES ? params.get("range") : "";
    const form = el("form", { class: "filters", id: "filters" },
      el("label", {}, "status", status), el("label", {}, "route / name", name),
      el("label", {}, "text", text), el("label", {}, "time", range),
      el("button", { type: "submit", text: "Filter" }));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      for (const [k, v] of [["status", status.value], ["name", name.value], ["q", text.value], ["range", range.value]]) {
        if (v) next.set(k, v);
      }
      location.search = next.toString();
    });

    const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);
    const query = new URLSearchParams({ experiment_id: experimentId, page: String(page) });
    for (const k of ["status", "name", "q"]) if (params.get(k)) query.set(k, params.get(k));
    if (RANGES[range.value]) query.set("since", String(Date.now() - RANGES[range.value]));

    const heading = el("h1", { text: title });
    let data;
    try {
      data = await api("/api/traces?" + query.toString());
    } catch (error) {
      show(heading, form, failure(error));
      return;
    }
    if (!data.traces.length) {
      show(heading, form, el("div", { class: "empty", id: "empty", text: page > 1 ? "No more traces." : "No traces match." }));
      return;
    }
    const table = el("table", { class: "grid", id: "traces" },
      el("tr", {}, ...["time", "name", "status", "duration", "request", "response"].map((h) => el("th", { text: h }))));
    for (const t of data.traces) {
      const href = "/traces/" + encodeURIComponent(t.trace_id);
      table.append(el("tr", { class: "clickable trace-row", "data-trace-id": t.trace_id, onclick: () => { location.href = href; } },
        el("td", { class: "nowrap" }, el("a", { href, text: fmtTime(t.request_time) })),
        el("td", { class: "nowrap", text: t.name || "–" }),
        el("td", {}, badge(t.state)),
        el("td", { class: "num", text: t.execution_duration === null ? "–" : fmtDuration(t.execution_duration * 1e6) }),
        el("td", { class: "preview", title: t.request_preview || "", text: t.request_preview || "" }),
        el("td", { class: "preview", title: t.response_preview || "", text: t.response_preview || "" })));
    }
    const go = (p) => { const next = new URLSearchParams(location.search); next.set("page", String(p)); location.search = next.toString(); };
    const pager = el("div", { class: "pager" },
      el("button", { type: "button", id: "prev", disabled: page <= 1, onclick: () => go(page - 1), text: "← newer" }),
      el("span", { text: `page ${page}` + (data.total !== null ? ` · ${data.total} traces` : "") }),
      el("button", { type: "button", id: "next", disabled: !data.has_more, onclick: () => go(page + 1), text: "older →" }));
    show(heading, form, table, pager);
  }

  // -- one trace ---------------------------------------------------------------------------
  function ordered(spans) {  // depth-first, children by start time; as display.ordered_spans
    const ids = new Set(spans.map((s) => s.span_id));
    const byParent = new Map();
    for (const s of spans) {
      const parent = ids.has(s.parent_id) ? s.parent_id : null;
      if (!byParent.has(parent)) byParent.set(parent, []);
      byParent.get(parent).push(s);
    }
    for (const list of byParent.values()) list.sort((a, b) => a.start_time_ns - b.start_time_ns);
    const out = [];
    const seen = new Set();
    const stack = (byParent.get(null) || []).slice().reverse().map((s) => [s, 0]);
    while (stack.length) {
      const [span, depth] = stack.pop();
      if (seen.has(span.span_id)) continue;
      seen.add(span.span_id);
      out.push([span, depth]);
      for (const c of (byParent.get(span.span_id) || []).slice().reverse()) stack.push([c, depth + 1]);
    }
    return out;
  }

  function kv(object) {
    const dl = el("dl", { class: "kv" });
    for (const [k, v] of Object.entries(object || {})) {
      dl.append(el("dt", { text: k }), el("dd", { text: typeof v === "string" ? v : pretty(v) }));
    }
    return dl;
  }
  function section(title, value, asJson) {
    if (isEmpty(value)) return null;
    return el("div", {}, el("h3", { text: title }), asJson ? el("pre", { class: "value", text: pretty(value) }) : kv(value));
  }

  // -- exceptions, as a person reads them ---------------------------------------------------
  const FRAME = /^\s*File "(.*)", line (\d+), in (.*)$/;
  // Frames of installed packages, the standard library and routetrace's own machinery.
  const LIBRARY = /[\\/](site-packages|dist-packages)[\\/]|[\\/]lib[\\/]python\d[^\\/]*[\\/]|^<frozen |[\\/]routetrace[\\/](middleware|tracing|backends|routing|viewer)[\\/]/;

  function parseStack(text) {  // Python's traceback text into frames and the lines between
    const items = [];
    const lines = String(text || "").split("\n");
    for (let i = 0; i < lines.length; i++) {
      const m = lines[i].match(FRAME);
      if (m) {
        const next = lines[i + 1];
        const code = next !== undefined && /^\s{4,}\S/.test(next) && !FRAME.test(next) ? next.trim() : null;
        if (code !== null) i++;
        items.push({ frame: true, file: m[1], line: m[2], func: m[3], code, library: LIBRARY.test(m[1]) });
      } else if (/^\s*[\^~]+\s*$/.test(lines[i])) {
        continue;  // Python 3.11's markers under the code line: the frame already shows it
      } else if (lines[i].trim()) {
        items.push({ frame: false, text: lines[i] });
      }
    }
    return items;
  }
  function frameNode(f) {
    const short = f.file.split(/[\\/]/).slice(-2).join("/");
    return el("div", { class: "frame" + (f.library ? " lib" : " app"), title: f.file },
      el("div", { class: "frame-where" }, el("span", { class: "frame-file", text: short }),
        ":" + f.line + " in ", el("span", { class: "frame-func", text: f.func })),
      f.code ? el("code", { class: "frame-code", text: f.code }) : null);
  }
  function libraryGroup(frames) {
    const packages = [...new Set(frames.map((f) => {
      const m = f.file.match(/(?:site|dist)-packages[\\/]([^\\/]+)/);
      if (m) return m[1].replace(/\.py$/, "");
      if (/[\\/]routetrace[\\/]/.test(f.file)) return "routetrace";
      return "python";
    }))];
    return el("details", { class: "lib-frames" },
      el("summary", { text: `${frames.length} library frame${frames.length > 1 ? "s" : ""} (${packages.join(", ")})` }),
      ...frames.map(frameNode));
  }
  function exceptionView(event, spanStart) {
    const a = event.attributes || {};
    const type = a["exception.type"] || event.name;
    const head = el("div", { class: "exc-head" },
      el("span", { class: "exc-type", text: type }),
      a["exception.message"] ? ": " : null,
      a["exception.message"] ? el("span", { class: "exc-message", text: a["exception.message"] }) : null);
    const box = el("div", { class: "exception" }, head);
    if (event.timestamp) {
      box.append(el("div", { class: "exc-when", title: fmtWall(event.timestamp), text: "at " + fmtOffset(event.timestamp - spanStart) + " into the span" }));
    }
    const items = parseStack(a["exception.stacktrace"]);
    if (items.some((i) => i.frame)) {
      const list = el("div", { class: "frames" }, el("div", { class: "frames-note", text: "most recent call last; your code is highlighted" }));
      let pending = [];
      const flush = () => { if (pending.length) list.append(libraryGroup(pending)); pending = []; };
      for (const item of items) {
        if (item.frame && item.library) { pending.push(item); continue; }
        flush();
        if (item.frame) list.append(frameNode(item));
        else if (!/^Traceback \(most recent call last\)/.test(item.text) && item.text.trim() !== `${type}: ${a["exception.message"] || ""}`.trim()) {
          list.append(el("div", { class: "frames-text", text: item.text }));
        }
      }
      flush();
      box.append(list);
    } else if (a["exception.stacktrace"]) {
      box.append(el("pre", { class: "value", text: a["exception.stacktrace"] }));
    }
    return box;
  }
  function isException(event) {
    return event.name === "exception" || "exception.type" in (event.attributes || {});
  }
  function eventList(span) {
    const list = el("div", { class: "events" });
    for (const event of span.events || []) {
      const attrs = Object.assign({}, event.attributes || {});
      if (isException(event)) delete attrs["exception.stacktrace"];  // shown in full above
      list.append(el("div", { class: "event" },
        el("span", { class: "event-offset", title: event.timestamp ? fmtWall(event.timestamp) : "", text: event.timestamp ? fmtOffset(event.timestamp - span.start_time_ns) : "–" }),
        el("span", { class: "event-name", text: event.name }),
        isEmpty(attrs) ? null : kv(attrs)));
    }
    return list;
  }

  function spanDetail(span, t0) {
    const duration = span.end_time_ns === null ? null : span.end_time_ns - span.start_time_ns;
    const status = span.status || {};
    const exceptions = (span.events || []).filter(isException);
    return el("div", { class: "detail", id: "span-detail", "data-span-id": span.span_id },
      el("h2", {}, span.name, el("span", { class: "type", text: span.span_type }), " ", badge(spanState(span)),
        el("a", { class: "permalink", href: "#span-" + span.span_id, title: "link to this span", text: "link" })),
      el("div", { class: "meta" },
        el("span", { text: "duration " + fmtDuration(duration) }),
        el("span", { text: "starts at +" + fmtDuration(span.start_time_ns - t0) }),
        el("span", { class: "mono", text: "span " + span.span_id }),
        status.description && !exceptions.length ? el("span", { text: status.description }) : null),
      exceptions.length ? el("div", { id: "exceptions" }, el("h3", { text: exceptions.length > 1 ? "Exceptions" : "Exception" }),
        ...exceptions.map((e) => exceptionView(e, span.start_time_ns))) : null,
      section("Inputs", span.inputs, true),
      section("Outputs", span.outputs, true),
      section("Attributes", span.attributes, false),
      (span.events || []).length ? el("div", {}, el("h3", { text: "Events" }), eventList(span)) : null);
  }

  // What the client got: the status code when the trace has one; an exception that escaped
  // the app before any response means the server answered 500 on its behalf.
  function responseSummary(root) {
    if (!root) return null;
    const outputs = root.outputs && typeof root.outputs === "object" ? root.outputs : {};
    const code = outputs.status_code || outputs.status || (root.attributes || {})["http.response.status_code"];
    const exc = (root.events || []).find(isException);
    const excText = exc ? (exc.attributes || {})["exception.type"] + ((exc.attributes || {})["exception.message"] ? ": " + exc.attributes["exception.message"] : "") : null;
    if (code) return { status: String(code), text: excText ? `${code} · ${excText}` : String(code) };
    if (exc) return { status: "500", text: `500 · unhandled ${excText} (no response from the app; the server answered 500)` };
    return null;
  }

  function waterfall(spans, onSelect) {
    const rows = ordered(spans);
    const t0 = Math.min(...rows.map(([s]) => s.start_time_ns));
    const t1 = Math.max(...rows.map(([s]) => s.end_time_ns === null ? s.start_time_ns : s.end_time_ns));
    const total = Math.max(1, t1 - t0);
    const axis = el("div", { class: "wf-track" });
    for (let i = 0; i <= 4; i++) {
      const tick = el("span", { class: "wf-tick", text: fmtDuration(total * i / 4) });
      tick.style.left = (i * 25) + "%";
      if (i === 4) tick.style.transform = "translateX(-100%)";
      else if (i > 0) tick.style.transform = "translateX(-50%)";
      axis.append(tick);
    }
    const box = el("div", { class: "waterfall", id: "waterfall" },
      el("div", { class: "wf-row wf-axis" }, el("div", { class: "wf-name", text: "span" }), axis,
        el("div", { class: "wf-duration", text: "duration" })));
    const rowNodes = [];
    for (const [span, depth] of rows) {
      const end = span.end_time_ns === null ? t1 : span.end_time_ns;
      const duration = span.end_time_ns === null ? null : span.end_time_ns - span.start_time_ns;
      const error = (span.status || {}).status_code === "ERROR";
      const bar = el("div", { class: "wf-bar", title: `${span.name}: ${fmtDuration(duration)}` });
      const width = Math.max(0.3, (end - span.start_time_ns) / total * 100);
      bar.style.left = Math.min((span.start_time_ns - t0) / total * 100, 100 - width) + "%";
      bar.style.width = width + "%";
      bar.style.background = error ? ERROR_COLOR : (SPAN_COLORS[span.span_type] || DEFAULT_COLOR);
      const name = el("div", { class: "wf-name", title: span.name },
        el("span", { class: "wf-span-name", text: span.name }), el("span", { class: "type", text: span.span_type }));
      name.style.paddingLeft = (8 + depth * 16) + "px";
      const row = el("div", { class: "wf-row", id: "span-" + span.span_id, "data-span-id": span.span_id, "data-depth": depth },
        name, el("div", { class: "wf-track" }, bar), el("div", { class: "wf-duration", text: fmtDuration(duration) }));
      row.addEventListener("click", (event) => {
        for (const r of rowNodes) r.classList.remove("selected");
        row.classList.add("selected");
        onSelect(span, t0);
        // Every span has an address to share, /traces/{id}#span-{span_id}: a person's click
        // puts it in the address bar; the page's own first selection leaves the URL alone.
        if (event.isTrusted && location.hash !== "#span-" + span.span_id) {
          history.replaceState(null, "", "#span-" + span.span_id);
        }
      });
      rowNodes.push(row);
      box.append(row);
    }
    return { box, rows: rowNodes, t0 };
  }

  async function tracePage(traceId) {
    crumbs({ text: "experiments", href: "/" }, { text: traceId });
    let trace;
    try {
      trace = await api("/api/traces/" + encodeURIComponent(traceId));
    } catch (error) {
      document.title = "routetrace · not found";
      show(el("h1", { text: error.status === 404 ? "Trace not found" : "Cannot load the trace" }),
        el("div", { class: "empty", id: "not-found" }, error.message, " ", el("a", { href: "/", text: "Back to the experiments" })));
      return;
    }
    const info = trace.info;
    const spans = trace.data.spans || [];
    const expName = info.experiment_name || info.experiment_id;
    crumbs({ text: "experiments", href: "/" },
      { text: expName, href: "/experiments/" + encodeURIComponent(info.experiment_id) },
      { text: info.trace_id });
    const title = (info.tags || {})["mlflow.traceName"] || "trace";
    document.title = "routetrace · " + title;
    const heading = el("h1", {}, el("span", { id: "trace-name", text: title }), badge(info.state));
    const root = ordered(spans).map(([s]) => s)[0];
    const response = responseSummary(root);
    const meta = el("div", { class: "meta" },
      response ? el("span", { id: "trace-status", class: "response" + (Number(response.status) >= 500 ? " failed" : ""), text: response.text }) : null,
      el("span", { text: fmtTime(info.request_time) }),
      el("span", { text: "duration " + (info.execution_duration === null ? "–" : fmtDuration(info.execution_duration * 1e6)) }),
      el("span", { text: spans.length + " spans" }),
      el("span", { class: "mono", text: info.trace_id }));
    const detailSlot = el("div", {});
    const infoBox = el("div", { id: "trace-info" },
      section("Request preview", info.request_preview, true),
      response && (!info.response_preview || info.response_preview === "{}")
        ? el("div", {}, el("h3", { text: "Response" }), el("pre", { class: "value", id: "response-summary", text: response.text }))
        : section("Response preview", info.response_preview, true),
      section("Tags", info.tags, false),
      section("Metadata", info.trace_metadata, false));
    if (!spans.length) {
      show(heading, meta, el("div", { class: "empty", text: "This trace has no spans." }), infoBox);
      return;
    }
    const wf = waterfall(spans, (span, t0) => { clear(detailSlot); detailSlot.append(spanDetail(span, t0)); });
    show(heading, meta, wf.box, detailSlot, el("h2", { text: "Trace" }), infoBox);
    const fromHash = () => {
      const m = location.hash.match(/^#span-(.+)$/);
      const row = m && wf.rows.find((r) => r.getAttribute("data-span-id") === decodeURIComponent(m[1]));
      if (row) { row.click(); detailSlot.scrollIntoView({ block: "start" }); }
      return Boolean(row);
    };
    if (!fromHash()) wf.rows[0].click();
    window.addEventListener("hashchange", fromHash);
  }

  // -- routing ---------------------------------------------------------------------------
  async function route() {
    api("/api/info").then((info) => {
      document.getElementById("store").textContent = info.uri;
    }).catch(() => {});
    const path = location.pathname;
    let m;
    try {
      if ((m = path.match(/^\/traces\/([^/]+)$/))) await tracePage(decodeURIComponent(m[1]));
      else if ((m = path.match(/^\/experiments\/([^/]+)$/))) await tracesPage(decodeURIComponent(m[1]));
      else if (path === "/") await experimentsPage();
      else show(el("h1", { text: "Not found" }), el("div", { class: "empty" }, el("a", { href: "/", text: "Back to the experiments" })));
    } catch (error) {
      show(failure(error));
    }
    document.body.setAttribute("data-ready", "1");
  }
  route();
})();
