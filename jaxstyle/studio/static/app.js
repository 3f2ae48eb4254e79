// jaxstyle studio: a form over POST /api/runs, live progress from GET /api/runs/{id}/events (Server-Sent Events).
"use strict";
const $ = (id) => document.getElementById(id);
const MAIN = ["image_size", "iterations", "content_weight", "style_weight", "tv_weight", "init", "optimizer",
              "original_colors", "seed"];
const COLORS = { total: "#222", content: "#1f77b4", style: "#d62728", tv: "#2ca02c" };
const state = { options: null, content: null, styles: [], run: null, source: null, history: [], cell: null };

function field(name, container) {
  const o = state.options, id = "f-" + name;
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = name.replace(/_/g, " ");
  label.title = `${o.flags[name]}: ${o.help[name]}`;
  let input;
  if (o.choices[name]) {
    input = document.createElement("select");
    for (const c of o.choices[name]) input.add(new Option(c, c));
  } else {
    input = document.createElement("input");
  }
  input.id = id;
  input.name = name;
  const d = o.defaults[name];
  input.value = d === null ? "" : Array.isArray(d) ? d.join(",") : String(d);
  input.placeholder = d === null ? "default" : "";
  container.append(label, input);
}

function thumb(src, caption, onRemove, weight) {
  const box = document.createElement("div");
  box.className = "thumb";
  const img = new Image();
  img.src = src;
  img.alt = caption;
  img.title = caption;
  box.append(img);
  if (weight !== undefined) {
    const w = document.createElement("input");
    w.type = "number"; w.min = "0"; w.step = "any"; w.value = weight; w.className = "blend";
    w.title = "blend weight";
    box.append(w);
  }
  const rm = document.createElement("button");
  rm.type = "button"; rm.textContent = "remove"; rm.onclick = onRemove;
  box.append(rm);
  return box;
}

function showChosen() {
  const c = $("content-chosen");
  c.replaceChildren();
  if (state.content) c.append(thumb(state.content.src, state.content.name, () => { state.content = null; showChosen(); }));
  const s = $("style-chosen");
  s.replaceChildren();
  state.styles.forEach((st, i) => s.append(thumb(st.src, st.name, () => { state.styles.splice(i, 1); showChosen(); }, st.weight)));
}

function choose(role, item) {
  if (role === "content") state.content = item; else state.styles.push({ ...item, weight: 1 });
  showChosen();
}

function fromFiles(role, files) {
  for (const f of files) {
    if (!f.type.startsWith("image/")) { $("error").textContent = `${f.name}: not an image`; continue; }
    choose(role, { file: f, name: f.name, src: URL.createObjectURL(f) });
    if (role === "content") break;
  }
}

function dropZone(role) {
  const zone = $(role + "-drop");
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => { e.preventDefault(); zone.classList.remove("over"); fromFiles(role, e.dataTransfer.files); });
  $(role + "-file").addEventListener("change", (e) => fromFiles(role, e.target.files));
  for (const name of state.options.examples) {
    const img = new Image();
    img.src = "/api/examples/" + encodeURIComponent(name);
    img.alt = img.title = name;
    img.dataset.example = name;
    img.onclick = () => choose(role, { example: name, name, src: img.src });
    $(role + "-examples").append(img);
  }
}

function sweepFields() {
  const box = $("sweep-fields");
  for (const k of [0, 1]) {
    const sel = document.createElement("select");
    sel.id = "sweep-name-" + k;
    sel.add(new Option("(none)", ""));
    for (const n of state.options.sweep_fields) sel.add(new Option(n.replace(/_/g, " "), n));
    const values = document.createElement("input");
    values.id = "sweep-values-" + k;
    values.placeholder = "e.g. 1,10,100";
    box.append(sel, values);
  }
}

function formData() {
  const data = new FormData();
  data.append("weights", $("weights").value);
  for (const input of document.querySelectorAll(".fields [name]")) {
    if (input.value.trim() !== "") data.append(input.name, input.value.trim());
  }
  if (state.content) {
    if (state.content.file) data.append("content", state.content.file, state.content.name);
    else data.append("content_example", state.content.example);
  }
  const weights = [...document.querySelectorAll("#style-chosen .blend")].map((w) => w.value || "1");
  state.styles.forEach((s) => {
    if (s.file) data.append("style", s.file, s.name); else data.append("style_example", s.example);
  });
  if (state.styles.length > 1) data.set("style_blend_weights", weights.join(","));
  for (const k of [0, 1]) {
    const name = $("sweep-name-" + k).value, values = $("sweep-values-" + k).value.trim();
    if (name && values) data.append("sweep_" + name, values);
  }
  return data;
}

async function start(e) {
  e.preventDefault();
  $("error").textContent = "";
  document.querySelectorAll(".bad").forEach((el) => el.classList.remove("bad"));
  const response = await fetch("/api/runs", { method: "POST", body: formData() });
  const body = await response.json();
  if (!response.ok) {
    $("error").textContent = body.error;
    const input = body.field && document.querySelector(`[name="${body.field}"]`);
    if (input) input.classList.add("bad");
    return;
  }
  follow(body);
}

function follow(run) {
  if (state.source) state.source.close();
  state.run = run; state.history = []; state.cell = null;
  $("download-png").classList.add("disabled");
  $("download-json").classList.add("disabled");
  $("live").removeAttribute("src");
  $("cancel").disabled = false;
  makeGrid(run);
  update(run);
  state.source = new EventSource(`/api/runs/${run.id}/events`);
  state.source.onmessage = (m) => update(JSON.parse(m.data));
}

function fmt(v) { return v === null || v === undefined ? "–" : Number(Number(v).toPrecision(4)).toString(); }

function update(s) {
  const id = s.id, base = `/api/runs/${id}`;
  state.history.push(...(s.history || []));
  $("status").textContent = s.status + (s.queue_position ? ` (queue position ${s.queue_position})` : "");
  $("iteration").textContent = `${s.iteration} / ${s.iterations}`;
  $("eta").textContent = (s.eta_seconds !== null ? `ETA ${Math.round(s.eta_seconds)} s` :
    `${s.seconds.toFixed(1)} s`) + ` · weights ${s.weights}`;
  $("terms").textContent = Object.entries(s.terms).map(([k, v]) => `${k} ${fmt(v)}`).join("  ");
  if (s.has_image && state.cell === null) $("live").src = `${base}/image?v=${s.version}`;
  s.cells.forEach((c, k) => {
    const cell = $("cell-" + k);
    if (!cell) return;
    cell.querySelector("span").textContent = `${c.label}: ${c.status}${c.terms.total != null ? " · " + fmt(c.terms.total) : ""}`;
    if (c.has_image) cell.querySelector("img").src = `${base}/image?cell=${k}&v=${s.version}`;
  });
  $("error").textContent = s.error || "";
  drawChart();
  if (["done", "failed", "cancelled"].includes(s.status)) {
    if (state.source) state.source.close();
    $("cancel").disabled = true;
    if (s.has_image) setDownload(base, state.cell);
    $("download-json").href = `${base}/settings`;
    $("download-json").classList.remove("disabled");
    refreshQueue();
  }
}

function setDownload(base, cell) {
  const a = $("download-png");
  a.href = `${base}/image?download=1` + (cell === null ? "" : `&cell=${cell}`);
  a.classList.remove("disabled");
}

function makeGrid(run) {
  const grid = $("grid");
  grid.replaceChildren();
  if (!run.cells.length) return;
  const axes = Object.values(run.axes);
  grid.style.gridTemplateColumns = `repeat(${axes[axes.length - 1].length}, 1fr)`;
  run.cells.forEach((c, k) => {
    const cell = document.createElement("div");
    cell.className = "cell"; cell.id = "cell-" + k;
    cell.append(new Image(), document.createElement("span"));
    cell.onclick = () => {  // pick one: it becomes the image shown and downloaded
      state.cell = k;
      document.querySelectorAll(".cell").forEach((el) => el.classList.toggle("picked", el === cell));
      const img = cell.querySelector("img");
      if (img.src) { $("live").src = img.src; setDownload(`/api/runs/${run.id}`, k); }
    };
    grid.append(cell);
  });
}

function drawChart() {
  const canvas = $("chart"), g = canvas.getContext("2d"), h = state.history;
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (h.length < 1) return;
  const pad = 24, W = canvas.width - 2 * pad, H = canvas.height - 2 * pad;
  const logs = h.flatMap((r) => Object.keys(COLORS).map((k) => r[k]).filter((v) => v > 0).map(Math.log10));
  const lo = Math.min(...logs), hi = Math.max(...logs) + 1e-9, last = h[h.length - 1].iteration || 1;
  g.font = "10px sans-serif";
  Object.entries(COLORS).forEach(([k, color], i) => {
    g.strokeStyle = g.fillStyle = color;
    g.beginPath();
    h.filter((r) => r[k] > 0).forEach((r, j) => {
      const x = pad + W * r.iteration / last, y = pad + H * (1 - (Math.log10(r[k]) - lo) / (hi - lo));
      if (j) g.lineTo(x, y); else g.moveTo(x, y);
    });
    g.stroke();
    g.fillText(k, pad + 50 * i, 12);
  });
  g.fillStyle = "#666";
  g.fillText(fmt(10 ** hi), 2, pad);
  g.fillText(fmt(10 ** lo), 2, pad + H);
  g.fillText(`iteration ${last}`, canvas.width - 80, canvas.height - 4);
}

async function refreshQueue() {
  const { runs } = await (await fetch("/api/runs")).json();
  $("queue").replaceChildren(...runs.slice(0, 8).map((r) => {
    const li = document.createElement("li");
    li.textContent = `${r.id} ${r.kind}: ${r.status}${r.queue_position ? " #" + r.queue_position : ""} ` +
      `${r.iteration}/${r.iterations}${r.error ? " — " + r.error : ""}`;
    li.onclick = () => follow(r);
    return li;
  }));
}

async function fastApply(e) {
  const file = e.target.files[0];
  if (!file) return;
  const data = new FormData();
  data.append("image", file, file.name);
  data.append("model", $("fast-model").value);
  data.append("original_colors", $("fast-colors").checked ? "1" : "0");
  const response = await fetch("/api/fast", { method: "POST", body: data });
  if (!response.ok) { $("fast-error").textContent = (await response.json()).error; return; }
  $("fast-error").textContent = "";
  $("fast-out").src = URL.createObjectURL(await response.blob());
}

async function init() {
  state.options = await (await fetch("/api/options")).json();
  const o = state.options;
  for (const w of o.weights) $("weights").add(new Option(w, w, false, w === o.default_weights));
  for (const name of Object.keys(o.defaults)) field(name, $(MAIN.includes(name) ? "main-fields" : "advanced-fields"));
  dropZone("content");
  dropZone("style");
  sweepFields();
  if (o.models.length) {
    $("fast").hidden = false;
    for (const m of o.models) $("fast-model").add(new Option(m, m));
    $("fast-file").addEventListener("change", fastApply);
  }
  $("form").addEventListener("submit", start);
  $("cancel").onclick = () => state.run && fetch(`/api/runs/${state.run.id}`, { method: "DELETE" });
  refreshQueue();
  setInterval(refreshQueue, 3000);
}

init();
