// agent-envs viewer: the list of episodes and one episode at a time, from data in this file.
// No network: every episode is a gzip+base64 block in the page, decoded when it is opened.
"use strict";
(() => {
  const META = JSON.parse(document.getElementById("meta").textContent);
  const COMPARE = META.mode === "compare";
  const ROW_H = 28;
  const RAW_LIMIT = 12000;          // token spans drawn before "show all"
  const CHUNK_CACHE = 24;           // decoded episode and prompt chunks kept in memory

  const $ = (sel, el = document) => el.querySelector(sel);

  // Build DOM nodes; text always goes in as text nodes (model output is never HTML).
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v;
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "hidden") el.hidden = true;
      else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const fmt = (x, d = 3) => (x === null || x === undefined ? "-" :
    (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(d)) : String(x)));
  const badge = (label, text) => h("span", { class: "badge " + label }, text || label);

  // -- data blocks ----------------------------------------------------------------------
  const blobs = new Map();
  function blob(name) {
    if (blobs.has(name)) {
      const p = blobs.get(name);
      blobs.delete(name); blobs.set(name, p);   // most recently used last
      return p;
    }
    const p = (async () => {
      const el = document.getElementById("b-" + name);
      if (!el) throw new Error("this page has no data block " + name);
      if (typeof DecompressionStream === "undefined")
        throw new Error("this browser has no DecompressionStream; open the page in a current " +
                        "Chromium, Firefox or Safari");
      const bin = atob(el.textContent.trim());
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      return JSON.parse(await new Response(stream).text());
    })();
    blobs.set(name, p);
    const chunks = [...blobs.keys()].filter((k) => /^[cp]\d+$/.test(k));
    if (chunks.length > CHUNK_CACHE) blobs.delete(chunks[0]);
    return p;
  }
  let ROWS = [];
  let PARTS = [];      // prompt message n -> [chunk, slot] of its block "p<chunk>"
  async function episodeAt(i) {
    const r = ROWS[i];
    const ep = (await blob("c" + r.c))[r.k];
    if (!ep.resolved) {
      // A segment's prompt is a list of shared parts (each distinct prompt message is stored
      // once per page): put their token ids and messages back in front of the segment's own.
      for (const seg of ep.segments) {
        const parts = await Promise.all(seg.parts.map(async (n) => {
          const [c, k] = PARTS[n];
          return (await blob("p" + c))[k];
        }));
        const prompt = parts.flatMap((p) => p.messages.map((m) => Object.assign({}, m)));
        prompt.slice(0, seg.history).forEach((m) => { m.history = true; });
        seg.ids = parts.flatMap((p) => p.ids).concat(seg.completion);
        seg.messages = prompt.concat(seg.messages);
      }
      ep.resolved = true;
    }
    return ep;
  }

  // -- header -------------------------------------------------------------------------
  function sourceLine(s) {
    if (!s) return "";
    if (!s.suite) return `${s.episodes} episodes from ${s.path}` +
      (s.kind === "run" ? " (an unfinished eval run)" : "");
    const acc = s.overall;
    const parts = [
      `suite ${s.suite.name} v${s.suite.version} (${String(s.suite.hash).slice(0, 12)}, ${s.suite.status})`,
      `model ${s.policy.model}`,
      acc ? `accuracy ${fmt(acc.value)} [${fmt(acc.ci[0])}, ${fmt(acc.ci[1])}]` : null,
      `${s.episodes} episodes`, `trials ${s.trials}`, `seed ${s.seed}`,
      s.reasoning_effort ? `effort ${s.reasoning_effort}` : null,
      s.excluded_infra ? `${s.excluded_infra} excluded as infra` : null,
      s.ended_at ? `ended ${s.ended_at}` : null,
    ];
    return parts.filter(Boolean).join(" \u00b7 ");
  }
  function renderHeader() {
    $("#title").textContent = META.title;
    if (!COMPARE) { $("#summary").textContent = sourceLine(META.source); return; }
    const a = META.a, b = META.b;
    const acc = (s) => (s.overall ? fmt(s.overall.value) : "-");
    $("#summary").append(
      h("div", {}, `A: ${a.policy.model} (accuracy ${acc(a)}, ${a.path})`),
      h("div", {}, `B: ${b.policy.model} (accuracy ${acc(b)}, ${b.path})`),
      h("div", {}, `B \u2212 A = ${META.diff >= 0 ? "+" : ""}${fmt(META.diff)} (95% CI ` +
        `${fmt(META.ci[0])} .. ${fmt(META.ci[1])}) on ${META.shared_tasks} shared tasks; ` +
        `${META.tasks.length} tasks flipped` + (META.same_suite ? "" : "; different suite hashes")));
  }

  // -- the list ---------------------------------------------------------------------------
  const LIST_COLS = [
    { key: "i", label: "#", num: true },
    { key: "task", label: "task", title: (r) => r.task + (r.q ? "\n" + r.q : "") },
    { key: "family", label: "family" },
    { key: "cat", label: "category" },
    { key: "diff", label: "diff" },
    { key: "reward", label: "reward", num: true, text: (r) => fmt(r.reward, 2) },
    { key: "verdict", label: "verdict", node: (r) => badge(r.verdict) },
    { key: "turns", label: "turns", num: true },
    { key: "calls", label: "calls", num: true },
    { key: "tool_errors", label: "tool err", num: true },
    { key: "tokens", label: "tokens", num: true },
    { key: "infra", label: "infra / cut", text: (r) => r.infra ? "infra: " + r.infra : (r.trunc || ""),
      cls: (r) => (r.infra ? "flag" : "") },
  ];
  const CMP_COLS = [
    { key: "n", label: "#", num: true },
    { key: "task", label: "task" },
    { key: "family", label: "family" },
    { key: "cat", label: "category" },
    { key: "diff", label: "" },
    { key: "a", label: "A solved", num: true, text: (r) => fmt(r.a, 2) },
    { key: "dir", label: "change", node: (r) => badge(r.dir, r.dir === "to_correct" ?
      "wrong \u2192 correct" : "correct \u2192 wrong") },
    { key: "b", label: "B solved", num: true, text: (r) => fmt(r.b, 2) },
    { key: "na", label: "A trials", num: true },
    { key: "nb", label: "B trials", num: true },
    { key: "x1", label: "" }, { key: "x2", label: "" },
  ];
  const COLS = COMPARE ? CMP_COLS : LIST_COLS;
  let ITEMS = [];      // what the grid lists: episode rows, or flipped tasks
  let VIEW = [];       // indices into ITEMS after filtering and sorting
  let sortKey = COMPARE ? "n" : "i", sortAsc = true;

  function setupList() {
    const head = $("#grid-head");
    for (const c of COLS) {
      const s = h("span", { class: c.num ? "num" : "", "data-key": c.key }, c.label);
      if (c.label) s.addEventListener("click", () => {
        sortAsc = sortKey === c.key ? !sortAsc : true;
        sortKey = c.key;
        refresh();
      });
      head.append(s);
    }
    const fam = new Set(), cat = new Set();
    for (const r of ITEMS) { if (r.family) fam.add(r.family); if (r.cat) cat.add(r.cat); }
    for (const f of [...fam].sort()) $("#f-family").append(h("option", { value: f }, f));
    for (const c of [...cat].sort()) $("#f-cat").append(h("option", { value: c }, c));
    if (COMPARE) {
      $("#f-verdict").replaceChildren(h("option", { value: "" }, "all flipped tasks"),
        h("option", { value: "to_correct" }, "wrong \u2192 correct"),
        h("option", { value: "to_wrong" }, "correct \u2192 wrong"));
      $("#f-toolerr").parentElement.hidden = true;
      $("#f-modelerr").parentElement.hidden = true;
    }
    let timer = 0;
    $("#q").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(refresh, 120); });
    for (const id of ["#f-verdict", "#f-family", "#f-cat", "#f-toolerr", "#f-modelerr"])
      $(id).addEventListener("change", refresh);
    const grid = $("#grid");
    let pending = false;
    grid.addEventListener("scroll", () => {
      if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; drawRows(); }); }
    });
    window.addEventListener("resize", () => drawRows());
  }

  function haystack(r) {
    if (r._hay === undefined) r._hay = [r.task, r.id, r.q, r.reason, r.cat, r.infra, r.family]
      .filter(Boolean).join(" ").toLowerCase();
    return r._hay;
  }
  function keep(r, f) {
    if (f.verdict) {
      const v = COMPARE ? r.dir : r.verdict;
      if (f.verdict === "failed" ? !(v === "wrong" || v === "unfinished") : v !== f.verdict) return false;
    }
    if (f.family && r.family !== f.family) return false;
    if (f.cat && r.cat !== f.cat) return false;
    if (f.toolerr && !r.tool_errors) return false;
    if (f.modelerr && !r.model_errors) return false;
    if (f.terms.length) { const s = haystack(r); if (!f.terms.every((t) => s.includes(t))) return false; }
    return true;
  }
  function refresh() {
    const f = {
      verdict: $("#f-verdict").value, family: $("#f-family").value, cat: $("#f-cat").value,
      toolerr: $("#f-toolerr").checked, modelerr: $("#f-modelerr").checked,
      terms: $("#q").value.trim().toLowerCase().split(/\s+/).filter(Boolean),
    };
    VIEW = [];
    for (let i = 0; i < ITEMS.length; i++) if (keep(ITEMS[i], f)) VIEW.push(i);
    const k = sortKey, dir = sortAsc ? 1 : -1;
    VIEW.sort((x, y) => {
      const a = ITEMS[x][k], b = ITEMS[y][k];
      if (a === b) return x - y;
      if (a === null || a === undefined || a === "") return 1;
      if (b === null || b === undefined || b === "") return -1;
      return (typeof a === "number" && typeof b === "number" ? a - b :
        String(a).localeCompare(String(b), undefined, { numeric: true })) * dir;
    });
    for (const s of $("#grid-head").children) {
      s.classList.toggle("sorted", s.dataset.key === k);
      s.classList.toggle("asc", s.dataset.key === k && sortAsc);
    }
    $("#count").textContent = `${VIEW.length} of ${ITEMS.length} ${COMPARE ? "flipped tasks" : "episodes"}`;
    $("#grid-space").style.height = VIEW.length * ROW_H + "px";
    drawRows();
  }
  function drawRows() {
    const grid = $("#grid");
    const first = Math.max(0, Math.floor(grid.scrollTop / ROW_H) - 8);
    const last = Math.min(VIEW.length, Math.ceil((grid.scrollTop + grid.clientHeight) / ROW_H) + 8);
    const out = [];
    for (let n = first; n < last; n++) {
      const r = ITEMS[VIEW[n]];
      const row = h("div", { class: "grid-row row", "data-i": COMPARE ? r.n : r.i,
                             style: `top:${n * ROW_H}px`,
                             onclick: () => { location.hash = (COMPARE ? "#/t/" : "#/e/") + (COMPARE ? r.n : r.i); } });
      for (const c of COLS) {
        const v = c.node ? c.node(r) : (c.text ? c.text(r) : (r[c.key] ?? ""));
        row.append(h("span", { class: (c.num ? "num " : "") + (c.cls ? c.cls(r) : ""),
                               title: c.title ? c.title(r) : (typeof v === "string" ? v : null) }, v));
      }
      out.push(row);
    }
    $("#grid-space").replaceChildren(...out);
  }

  // -- one episode --------------------------------------------------------------------------
  const isCall = (m) => m.role === "assistant" && m.to && m.to !== "assistant" && m.to !== "user";

  function withCitations(text, browserish) {
    // Browser pages and answers: 【id†text】 links and 【cursor†Lx-Ly】 citations stand out;
    // page lines keep their L{n}: numbers, dimmed.
    const re = browserish ? /(【[^】\n]{0,200}】|^L\d+: )/gm : /(【[^】\n]{0,200}】)/g;
    const out = [];
    let last = 0;
    for (const m of text.matchAll(re)) {
      if (m.index > last) out.push(text.slice(last, m.index));
      out.push(h("span", { class: m[0].startsWith("【") ? "cite" : "lineno" }, m[0]));
      last = m.index + m[0].length;
    }
    if (last < text.length) out.push(text.slice(last));
    return h("pre", {}, out);
  }
  function prettyArgs(m) {
    const t = m.text || "";
    if ((m.ctype && m.ctype.includes("json")) || /^\s*[{[]/.test(t)) {
      try { return JSON.stringify(JSON.parse(t), null, 2); } catch (e) { /* show as written */ }
    }
    return t;
  }
  function toolStatus(turn) {
    const o = turn && turn.tool;
    if (!o) return null;
    if (o.timed_out) return h("div", { class: "status failed" }, "timed out" + (o.error ? ": " + o.error : ""));
    if (!o.ok) return h("div", { class: "status failed" }, "tool error" +
      (o.error ? ": " + (o.error.length > 240 ? o.error.slice(0, 240) + "\u2026" : o.error) : ""));
    return h("div", { class: "status ok" }, "ok" + (o.duration_s ? ` \u00b7 ${fmt(o.duration_s * 1000, 1)} ms` : ""));
  }
  function callBlock(m, ans, turn) {
    const args = h("div", { class: "args" },
      h("div", { class: "who" }, `call \u2192 ${m.to}`, h("span", { class: "mono" },
        `  [${m.channel || "no channel"}${m.ctype ? " \u00b7 " + m.ctype : ""}]`)),
      h("pre", {}, prettyArgs(m)));
    const failed = turn && turn.tool && (!turn.tool.ok || turn.tool.timed_out);
    let answer;
    if (ans) {
      answer = h("div", { class: "answer" + (failed ? " failed" : "") },
        h("div", { class: "who" }, `answer from ${ans.name || ans.role}` +
          (ans.channel ? `  [${ans.channel}]` : "")),
        withCitations(ans.text || "", String(ans.name || "").startsWith("browser")),
        toolStatus(turn));
    } else {
      answer = h("div", { class: "answer none" }, h("div", { class: "who" }, "no answer"),
        turn && turn.model_error ? h("div", { class: "status failed" }, turn.model_error) :
          "the episode ended before the tool answered");
    }
    return h("div", { class: "call" }, args, answer);
  }
  function messageBlock(m) {
    if (m.role === "raw")
      return h("div", { class: "msg raw" }, h("div", { class: "who" }, m.error), h("pre", {}, m.text));
    if ((m.role === "system" || m.role === "developer") && m.src === "prompt") {
      const first = (m.text || "").split("\n").find((l) => l.trim()) || "";
      return h("details", { class: "msg sys" },
        h("summary", {}, `${m.role} message (${(m.text || "").length} characters): ${first.slice(0, 90)}`),
        h("pre", {}, m.text));
    }
    if (m.role === "system")
      return h("div", { class: "msg notice" }, h("div", { class: "who" }, "env notice (system)"), h("pre", {}, m.text));
    if (m.role === "user")
      return h("div", { class: "msg user" }, h("div", { class: "who" }, "user"), h("pre", {}, m.text));
    if (m.role === "tool")
      return h("div", { class: "msg" }, h("div", { class: "who" }, `tool ${m.name}`),
        withCitations(m.text || "", String(m.name || "").startsWith("browser")));
    const ch = m.channel || "no channel";
    const label = ch === "analysis" ? "analysis (reasoning)" : ch === "final" ? "final answer" :
      ch === "commentary" ? "commentary (preamble)" : ch;
    return h("div", { class: "msg " + ch.replace(/[^a-z]/g, "") },
      h("div", { class: "who" }, `assistant \u00b7 ${label}`),
      withCitations(m.text || "", false));
  }
  function turnHead(ep, n) {
    const t = ep.turns[n];
    if (!t) return h("div", { class: "turn-head" }, `turn ${n + 1}`);
    const stop = t.finish === "length" || !t.stop ? "cut before a stop token" :
      `ended with <|${t.stop}|>`;
    return h("div", { class: "turn-head" }, `turn ${n + 1} \u00b7 ${t.end - t.start} tokens sampled \u00b7 ${stop}`,
      t.model_error ? h("span", { class: "err" }, ` \u00b7 model error: ${t.model_error}`) : null);
  }
  function conversation(ep) {
    const out = [];
    ep.segments.forEach((seg, k) => {
      if (k > 0) out.push(h("div", { class: "segment-head" },
        `segment ${k + 1}: a new prompt of ${seg.prompt_len} tokens (the history re-rendered; ` +
        "analysis of finished turns dropped)"));
      const hist = seg.messages.filter((m) => m.history);
      if (hist.length) out.push(h("details", { class: "history" },
        h("summary", {}, `history as re-rendered into this segment (${hist.length} messages)`),
        hist.map(messageBlock)));
      const msgs = seg.messages.filter((m) => !m.history);
      let turn = null;
      for (let j = 0; j < msgs.length; j++) {
        const m = msgs[j];
        if (m.src === "model" && m.turn !== turn) { turn = m.turn; out.push(turnHead(ep, turn)); }
        if (isCall(m)) {
          const next = msgs[j + 1];
          const paired = next && next.role === "tool" && next.src === "env";
          out.push(callBlock(m, paired ? next : null, ep.turns[m.turn]));
          if (paired) j++;
          continue;
        }
        out.push(messageBlock(m));
      }
    });
    return out;
  }
  function verdictCard(ep) {
    const v = ep.verdict || {};
    const rows = [["reward", fmt(ep.reward)]];
    for (const [k, x] of Object.entries(ep.components || {})) rows.push([`component ${k}`, fmt(x)]);
    if (ep.verdict) {
      rows.push(["extracted answer", v.extracted === null || v.extracted === undefined ? "(none)" : String(v.extracted)]);
      rows.push(["reason", v.reason || ""]);
    }
    rows.push(["ended", ep.terminated ? "final answer (terminated)" :
      ep.truncated ? `truncated: ${ep.trunc || "?"}` : "not ended"]);
    if (ep.infra) rows.push(["infra error", ep.infra]);
    const t = ep.times || {};
    rows.push(["time", `policy ${fmt(t.policy_s, 2)} s \u00b7 env ${fmt(t.env_s, 2)} s \u00b7 total ${fmt(t.total_s, 2)} s`]);
    return h("div", { class: "verdict-card " + ep.label },
      h("div", {}, h("b", {}, "verdict "), badge(ep.label)),
      h("table", {}, rows.map(([k, x]) => h("tr", {}, h("td", {}, k), h("td", {}, h("pre", {}, x))))));
  }

  // -- raw tokens: the loss mask and the sampler's log-probs ------------------------------------
  function expand(rle, n) {
    const mask = new Uint8Array(n);
    let pos = 0, v = 0;
    for (const len of rle) { if (v) mask.fill(1, pos, pos + len); pos += len; v ^= 1; }
    return mask;
  }
  const heat = (lp) => (lp === null || lp === undefined ? "#9ca3af" :
    `hsl(${Math.round(120 * Math.exp(Math.min(0, lp)))}, 75%, 42%)`);
  function drawStrip(canvas, n, colorAt) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(200, Math.floor((canvas.clientWidth || 800) * dpr)), hgt = 14 * dpr;
    canvas.width = w; canvas.height = hgt;
    const ctx = canvas.getContext("2d");
    const step = w / Math.max(1, n);
    for (let i = 0; i < n; i++) {
      const c = colorAt(i);
      if (!c) continue;
      ctx.fillStyle = c;
      ctx.fillRect(Math.floor(i * step), 0, Math.max(1, Math.ceil(step)), hgt);
    }
  }
  async function rawView(ep, el) {
    const vocab = await blob("tokens");
    const parts = [h("div", { class: "legend" },
      h("span", {}, h("i", { style: "background:#dbeafe" }), "sampled by the policy (loss mask 1)"),
      h("span", {}, h("i", { style: "background:#eceef2" }), "prompt and env tokens (loss mask 0)"),
      h("span", {}, "log-prob heat: ", h("i", { style: `background:${heat(-4)}` }), "p \u2248 0.02 ",
        h("i", { style: `background:${heat(-0.7)}` }), "p \u2248 0.5 ",
        h("i", { style: `background:${heat(0)}` }), "p = 1"))];
    ep.segments.forEach((seg, k) => {
      const n = seg.ids.length;
      const mask = expand(seg.mask, n);
      const lps = new Array(n).fill(null);
      let s = 0;
      for (let i = 0; i < n; i++) if (mask[i]) lps[i] = seg.logprobs[s++] ?? null;
      const sampled = s;
      const allZero = seg.logprobs.length > 0 && seg.logprobs.every((x) => x === 0);
      const maskStrip = h("canvas", { class: "strip mask-strip" });
      const lpStrip = h("canvas", { class: "strip lp-strip" });
      const box = h("div", { class: "tokens" });
      const draw = (limit) => {
        const frag = document.createDocumentFragment();
        for (let i = 0; i < Math.min(n, limit); i++) {
          const id = seg.ids[i];
          const text = vocab[id] ?? `<|id ${id}|>`;
          const sp = text.startsWith("<|") && text.endsWith("|>");
          const span = document.createElement("span");
          span.className = "tok " + (mask[i] ? "s" : "e") + (sp ? " sp" : "");
          span.dataset.n = i;
          span.textContent = text;
          let title = `#${i} id ${id} \u00b7 ${mask[i] ? "sampled" : (i < seg.prompt_len ? "prompt" : "env")}`;
          if (mask[i] && lps[i] !== null) {
            span.style.setProperty("--lp", heat(lps[i]));
            title += ` \u00b7 log-prob ${lps[i]} (p ${Math.exp(lps[i]).toFixed(3)})`;
          }
          span.title = title;
          frag.append(span);
        }
        box.replaceChildren(frag);
        if (n > limit) box.append(h("div", { class: "more" }, h("a", { onclick: () => draw(n) },
          `showing ${limit} of ${n} tokens: show all`)));
      };
      draw(RAW_LIMIT);
      const jump = (ev) => {
        const r = ev.target.getBoundingClientRect();
        const i = Math.floor((ev.clientX - r.left) / r.width * n);
        const span = box.querySelector(`[data-n="${i}"]`);
        if (span) { span.scrollIntoView({ block: "center" }); span.animate([{ outline: "2px solid #111" }, { outline: "none" }], 1200); }
      };
      maskStrip.addEventListener("click", jump);
      lpStrip.addEventListener("click", jump);
      parts.push(h("div", { class: "raw-seg" },
        h("div", { class: "segment-head" }, `segment ${k + 1}: ${n} tokens (${seg.prompt_len} prompt, ` +
          `${sampled} sampled, ${n - seg.prompt_len - sampled} env)`),
        h("div", { class: "strip-label" }, "loss mask (click to jump)"), maskStrip,
        h("div", { class: "strip-label" }, allZero ? "sampler log-probs: all recorded as 0.0 " +
          "(p = 1: a scripted policy, or one that records none)" : "sampler log-probs of the sampled tokens"),
        lpStrip, box));
      requestAnimationFrame(() => {
        drawStrip(maskStrip, n, (i) => (mask[i] ? "#3b82f6" : "#d1d5db"));
        drawStrip(lpStrip, n, (i) => (mask[i] ? heat(lps[i]) : null));
      });
    });
    el.replaceChildren(...parts);
  }

  function episodeBlock(ep, row) {
    const total = ep.segments.reduce((a, s) => a + s.ids.length, 0);
    const kv = (k, v) => h("span", { class: "kv" }, `${k} `, h("b", {}, fmt(v)));
    const head = h("div", { class: "ep-head" }, h("span", { class: "task" }, ep.task || "(no task id)"),
      badge(ep.label), kv("reward", ep.reward), kv("env", ep.env),
      row && row.cat ? kv("category", row.cat) : null, kv("policy", `${ep.policy} ${ep.policy_version}`),
      kv("episode", ep.id), kv("seed", ep.seed), kv("turns", ep.turns.length), kv("tokens", total));
    const conv = h("div", { class: "conversation" }, conversation(ep));
    const raw = h("div", { class: "raw-view", hidden: true });
    const btn = h("button", { class: "toggle-raw", title: "show the token ids with the loss mask and log-probs" },
      "raw tokens");
    btn.addEventListener("click", async () => {
      const on = raw.hidden;
      raw.hidden = !on; conv.hidden = on; btn.classList.toggle("on", on);
      btn.textContent = on ? "messages" : "raw tokens";
      if (on && !raw.childElementCount) {
        try { await rawView(ep, raw); } catch (e) { raw.replaceChildren(h("div", { class: "err" }, String(e))); }
      }
    });
    return h("div", { class: "episode-view", "data-episode": ep.id }, head,
      h("div", { class: "ep-tools" }, btn), conv, raw, verdictCard(ep));
  }

  function nav(list, cur, prefix) {
    const pos = list.indexOf(cur);
    const go = (d) => { const j = list[pos + d]; if (j !== undefined) location.hash = prefix + j; };
    return h("div", { class: "ep-tools" }, h("a", { href: "#/" }, "\u2190 list"),
      pos > 0 ? h("a", { onclick: () => go(-1) }, "\u2191 previous") : null,
      pos >= 0 && pos < list.length - 1 ? h("a", { onclick: () => go(1) }, "\u2193 next") : null,
      h("span", { class: "kv" }, pos >= 0 ? `${pos + 1} of ${list.length} in the list` : ""));
  }

  async function openEpisode(i) {
    const sec = $("#episode");
    $("#list").hidden = true; sec.hidden = false;
    sec.replaceChildren(h("div", { class: "kv" }, "loading\u2026"));
    try {
      const ep = await episodeAt(i);
      sec.replaceChildren(nav(VIEW.map((v) => ITEMS[v].i), i, "#/e/"), episodeBlock(ep, ROWS[i]));
      window.scrollTo(0, 0);
    } catch (e) { sec.replaceChildren(h("div", { class: "err" }, `cannot open episode ${i}: ${e}`)); }
  }

  async function pane(label, src, idx) {
    const box = h("div", { class: "pane" });
    const head = h("div", { class: "pane-head" }, `${label}: ${src.policy.model}`);
    const body = h("div", {});
    const show = async (j) => {
      trials.querySelectorAll("a").forEach((a, n) => a.classList.toggle("on", n === j));
      body.replaceChildren(h("div", { class: "kv" }, "loading\u2026"));
      body.replaceChildren(episodeBlock(await episodeAt(idx[j]), ROWS[idx[j]]));
    };
    const trials = h("div", { class: "trials" }, idx.length ? "trials: " : "no episode of this task",
      idx.map((i, j) => [h("a", { onclick: () => show(j) }, `#${j} ${ROWS[i].verdict}`), " "]));
    box.append(head, trials, body);
    if (idx.length) await show(0);
    return box;
  }
  async function openTask(n) {
    const t = META.tasks[n];
    const sec = $("#episode");
    $("#list").hidden = true; sec.hidden = false;
    if (!t) { sec.replaceChildren(h("div", { class: "err" }, `no flipped task ${n}`)); return; }
    sec.replaceChildren(h("div", { class: "kv" }, "loading\u2026"));
    try {
      const [a, b] = await Promise.all([pane("A", META.a, t.ea), pane("B", META.b, t.eb)]);
      sec.replaceChildren(nav(VIEW.map((v) => ITEMS[v].n), n, "#/t/"),
        h("div", { class: "ep-head" }, h("span", { class: "task" }, t.task), badge(t.dir,
          t.dir === "to_correct" ? "wrong \u2192 correct" : "correct \u2192 wrong"),
          h("span", { class: "kv" }, `category ${t.cat || "-"} \u00b7 A solved ${fmt(t.a, 2)} \u00b7 B solved ${fmt(t.b, 2)}`)),
        h("div", { class: "panes" }, a, b));
      window.scrollTo(0, 0);
    } catch (e) { sec.replaceChildren(h("div", { class: "err" }, `cannot open task ${n}: ${e}`)); }
  }

  function route() {
    const m = location.hash.match(/^#\/(e|t)\/(\d+)$/);
    if (m && m[1] === "e" && !COMPARE) return openEpisode(Number(m[2]));
    if (m && m[1] === "t" && COMPARE) return openTask(Number(m[2]));
    $("#episode").hidden = true;
    $("#list").hidden = false;
    drawRows();
  }

  async function main() {
    renderHeader();
    const index = await blob("index");
    ROWS = index.rows;
    PARTS = index.parts;
    ITEMS = COMPARE ? META.tasks.map((t, n) => Object.assign({ n, na: t.ea.length, nb: t.eb.length }, t)) : ROWS;
    setupList();
    $("#list").hidden = false;
    refresh();
    window.addEventListener("hashchange", route);
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !$("#episode").hidden) location.hash = "#/";
    });
    await route();
    window.viewerReadyMs = performance.now();   // since navigation start (benchmarks)
    document.body.dataset.ready = "1";   // for tests and scripts: the list is drawn
  }
  main().catch((e) => {
    const el = $("#error");
    el.hidden = false;
    el.textContent = "The viewer could not start: " + e;
    document.body.dataset.ready = "error";
  });
})();
