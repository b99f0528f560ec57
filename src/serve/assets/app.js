// steex explorer: the page of `steex serve`. Plain JavaScript, no framework; talks to the
// JSON API of the same server (see src/serve/mod.rs).
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  query: null,        // the query JSON
  labels: null,       // {width, height, ids: Uint8Array}
  image: null,        // HTMLImageElement of the query
  chosen: new Set(),  // region ids that may change
  job: null,
  events: null,
  points: [],
  steps: 0,
};

function showMessage(text, info) {
  const m = $("message");
  m.textContent = text;
  m.className = info ? "message info" : "message";
  m.hidden = !text;
}

async function api(method, url, body, contentType) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.body = body;
    if (contentType) opts.headers["Content-Type"] = contentType;
  }
  const r = await fetch(url, opts);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch (_) { /* not JSON */ }
  if (!r.ok) throw new Error((json && json.error) || `${method} ${url}: ${r.status}`);
  return json;
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`cannot load ${url}`));
    img.src = url + (url.includes("?") ? "&" : "?") + "t=" + Date.now();
  });
}

function regionName(id) {
  const r = state.info.regions[id];
  return r ? r.name : `label ${id}`;
}

function regionColour(id) {
  const r = state.info.regions[id];
  return r ? r.colour : "#808080";
}

function hexRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

// ---- start-up ----------------------------------------------------------------------------

async function start() {
  try {
    state.info = await api("GET", "/api/info");
  } catch (e) {
    showMessage(e.message);
    return;
  }
  const info = state.info;
  if (info.mode === "results") {
    $("model-line").textContent = "no models loaded: browsing a results folder";
  } else {
    $("model-line").textContent =
      `${info.mode === "demo" ? "demo: the synthetic world's bundled models" : "models from files"}` +
      `${info.preset ? " (preset " + info.preset + ")" : ""}, images ${info.width} x ${info.height}, ` +
      `${info.regions.length} regions, outputs: ${info.attributes.join(", ")} (${info.output})`;
    $("query-panel").hidden = false;
    $("settings-panel").hidden = false;
    setupSettings();
    if (info.mode === "demo") await loadScenes();
  }
  if (info.results) await loadResults();
}

function setupSettings() {
  const info = state.info;
  const sel = $("attribute");
  info.attributes.forEach((a, i) => {
    const o = document.createElement("option");
    o.value = String(i);
    o.textContent = a;
    sel.appendChild(o);
  });
  if (info.output === "softmax") {
    $("target").disabled = true;
    sel.previousSibling.textContent = "class ";
  }
  $("steps").value = info.defaults.steps;
  $("lr").value = info.defaults.lr;
  $("lambda").value = info.defaults.lambda_prox;
  $("frame-every").value = info.defaults.frame_every;
  $("settings").addEventListener("submit", (ev) => { ev.preventDefault(); runJob(); });
  $("cancel").addEventListener("click", cancelJob);
  $("image-file").addEventListener("change", uploadImage);
  $("mask-file").addEventListener("change", uploadMask);
  $("overlay-alpha").addEventListener("input", drawQuery);
  $("query-canvas").addEventListener("click", clickCanvas);
  $("all-regions").addEventListener("click", () => { presentIds().forEach((i) => state.chosen.add(i)); refreshRegions(); });
  $("no-regions").addEventListener("click", () => { state.chosen.clear(); refreshRegions(); });
  $("frame-slider").addEventListener("input", showFrame);
}

async function loadScenes() {
  const r = await api("GET", "/api/scenes");
  $("scene-picker").hidden = false;
  const box = $("scenes");
  for (const s of r.scenes) {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.seed = String(s.seed);
    b.title = `seed ${s.seed}: ${r.attribute} = ${s.stop ? 1 : 0}`;
    b.innerHTML = `<img src="${s.image}" alt="scene ${s.seed}"><span>${r.attribute} ${s.stop ? 1 : 0}</span>`;
    b.addEventListener("click", () => pickScene(s.seed, b));
    box.appendChild(b);
  }
}

// ---- the query ---------------------------------------------------------------------------

async function pickScene(seed, button) {
  document.querySelectorAll("#scenes button").forEach((b) => b.classList.remove("chosen"));
  $("image-file").value = "";
  $("mask-file").value = "";
  button.classList.add("chosen");
  try {
    await setQuery(await api("POST", `/api/queries?scene=${seed}`));
  } catch (e) { showMessage(e.message); }
}

async function uploadImage() {
  const f = $("image-file").files[0];
  if (!f) return;
  $("mask-file").value = "";
  document.querySelectorAll("#scenes button").forEach((b) => b.classList.remove("chosen"));
  showMessage("uploading and scoring...", true);
  try {
    // The server sniffs the format from the bytes.
    await setQuery(await api("POST", "/api/queries", f, "application/octet-stream"));
    showMessage(state.query.labels ? "" : "This server has no segmenter: upload the image's mask.", !state.query.labels);
  } catch (e) { showMessage(e.message); }
}

async function uploadMask() {
  const f = $("mask-file").files[0];
  if (!f || !state.query) return;
  try {
    await setQuery(await api("PUT", `/api/queries/${state.query.id}/mask`, f, "image/png"));
    showMessage("");
  } catch (e) { showMessage(e.message); }
}

async function setQuery(q) {
  // The label map and the chosen regions change together, once the new ones are loaded.
  state.query = q;
  state.labels = null;
  $("mask-file").disabled = false;
  $("query-view").hidden = false;
  $("query-source").textContent = `${q.id}: ${q.source}, ${q.width} x ${q.height}` +
    (q.labels_source ? `, label map from the ${q.labels_source}` : ", no label map yet");
  const scores = $("scores");
  scores.innerHTML = "";
  q.attributes.forEach((a, i) => {
    const p = q.probabilities[i];
    const tr = document.createElement("tr");
    tr.innerHTML = `<td>${a}</td><td>${p.toFixed(3)}</td><td class="${p >= 0.5 ? "ok" : "no"}">${p >= 0.5 ? "yes" : "no"}</td>`;
    scores.appendChild(tr);
  });
  state.image = await loadImage(q.image);
  let labels = null;
  if (q.labels) {
    const img = await loadImage(q.labels);
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const data = ctx.getImageData(0, 0, img.width, img.height).data;
    const ids = new Uint8Array(img.width * img.height);
    for (let i = 0; i < ids.length; i++) ids[i] = data[4 * i];
    labels = { width: img.width, height: img.height, ids };
  }
  state.labels = labels;
  state.chosen = new Set(presentIds());
  refreshRegions();
  $("run").disabled = !q.labels;
}

function presentIds() {
  return state.query ? state.query.regions_present.map((r) => r.id) : [];
}

function refreshRegions() {
  const list = $("region-list");
  list.innerHTML = "";
  for (const r of state.query.regions_present) {
    const li = document.createElement("li");
    li.dataset.region = r.name;
    li.className = state.chosen.has(r.id) ? "" : "off";
    li.innerHTML = `<span class="chip" style="background:${regionColour(r.id)}"></span>${r.name} <span class="small">${r.pixels} px</span>`;
    li.addEventListener("click", () => toggleRegion(r.id));
    list.appendChild(li);
  }
  drawQuery();
}

function toggleRegion(id) {
  if (state.chosen.has(id)) state.chosen.delete(id); else state.chosen.add(id);
  refreshRegions();
}

function drawQuery() {
  const c = $("query-canvas");
  const ctx = c.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, c.width, c.height);
  if (!state.image) return;
  ctx.drawImage(state.image, 0, 0, c.width, c.height);
  if (!state.labels) return;
  const { width, height, ids } = state.labels;
  const overlay = document.createElement("canvas");
  overlay.width = width; overlay.height = height;
  const octx = overlay.getContext("2d");
  const img = octx.createImageData(width, height);
  const alpha = Number($("overlay-alpha").value) / 100;
  const colours = state.info.regions.map((r) => hexRgb(r.colour));
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i];
    const rgb = colours[id] || [128, 128, 128];
    img.data.set(rgb, 4 * i);
    img.data[4 * i + 3] = Math.round(255 * alpha * (state.chosen.has(id) ? 1 : 0.25));
  }
  octx.putImageData(img, 0, 0);
  ctx.drawImage(overlay, 0, 0, c.width, c.height);
}

function clickCanvas(ev) {
  if (!state.labels) return;
  const c = $("query-canvas");
  const rect = c.getBoundingClientRect();
  const x = Math.floor(((ev.clientX - rect.left) / rect.width) * state.labels.width);
  const y = Math.floor(((ev.clientY - rect.top) / rect.height) * state.labels.height);
  const id = state.labels.ids[y * state.labels.width + x];
  if (id !== undefined && id !== 255) toggleRegion(id);
}

// ---- the job -----------------------------------------------------------------------------

function numberOrNull(id) {
  const v = $(id).value.trim();
  return v === "" ? null : Number(v);
}

async function runJob() {
  if (!state.query) return;
  const present = presentIds();
  const chosen = present.filter((i) => state.chosen.has(i));
  if (chosen.length === 0) { showMessage("Choose at least one region that may change."); return; }
  const body = {
    query: state.query.id,
    attribute: $("attribute").value,
    steps: numberOrNull("steps"),
    lr: numberOrNull("lr"),
    lambda_prox: numberOrNull("lambda"),
    frame_every: numberOrNull("frame-every"),
  };
  if (chosen.length < present.length) body.regions = chosen.map(regionName);
  const t = $("target").value;
  if (t !== "" && !$("target").disabled) body.target = Number(t);
  const es = numberOrNull("early-stop");
  if (es) body.early_stop = es;
  for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
  showMessage("");
  try {
    const r = await api("POST", "/api/jobs", JSON.stringify(body), "application/json");
    followJob(r);
  } catch (e) { showMessage(e.message); }
}

function followJob(r) {
  if (state.events) state.events.close();
  state.job = r.job;
  state.points = [];
  state.steps = 0;
  state.frames = null;
  $("result-panel").hidden = true; // the previous result goes until this one's is there
  $("run").disabled = true;
  $("cancel").disabled = false;
  $("job-status").textContent = `${r.job}: queued`;
  drawChart();
  const es = new EventSource(r.events);
  state.events = es;
  const data = (ev) => JSON.parse(ev.data);
  es.addEventListener("queued", (ev) => {
    const d = data(ev);
    $("job-status").textContent = d.position > 0 ? `${d.job}: queued, ${d.position} ahead` : `${d.job}: starts next`;
  });
  es.addEventListener("started", (ev) => {
    const d = data(ev);
    state.steps = d.steps;
    $("job-status").textContent = `${d.job}: running`;
  });
  es.addEventListener("step", (ev) => {
    const d = data(ev);
    state.points.push(d);
    state.steps = d.steps;
    $("job-status").textContent = `${state.job}: step ${d.step} / ${d.steps}, score ${d.score.toFixed(3)}`;
    drawChart();
  });
  const finish = (ev, what) => {
    es.close();
    state.events = null;
    $("run").disabled = false;
    $("cancel").disabled = true;
    const d = data(ev);
    if (what === "failed") { $("job-status").textContent = `${d.job}: failed`; showMessage(d.error); return; }
    $("job-status").textContent = `${d.job}: ${what}` + (d.steps_run !== undefined ? ` after ${d.steps_run} steps` : "");
    if (d.result) showResult(d);
  };
  es.addEventListener("done", (ev) => finish(ev, "done"));
  es.addEventListener("cancelled", (ev) => finish(ev, "cancelled"));
  es.addEventListener("failed", (ev) => finish(ev, "failed"));
  es.onerror = () => { if (state.events === es) $("job-status").textContent += " (connection lost)"; };
}

async function cancelJob() {
  if (!state.job) return;
  try { await api("DELETE", `/api/jobs/${state.job}`); } catch (e) { showMessage(e.message); }
}

function drawChart() {
  const c = $("score-chart");
  const ctx = c.getContext("2d");
  const W = c.width, H = c.height, pad = 28;
  ctx.clearRect(0, 0, W, H);
  ctx.strokeStyle = "#bbb";
  ctx.strokeRect(pad, 6, W - pad - 6, H - pad - 6);
  ctx.fillStyle = "#555";
  ctx.font = "11px sans-serif";
  ctx.fillText("1", 12, 14);
  ctx.fillText("0", 12, H - pad);
  ctx.fillText("step", W - 40, H - 8);
  const y = (p) => 6 + (1 - p) * (H - pad - 12);
  ctx.setLineDash([4, 4]);
  ctx.beginPath(); ctx.moveTo(pad, y(0.5)); ctx.lineTo(W - 6, y(0.5)); ctx.stroke();
  ctx.setLineDash([]);
  const n = Math.max(state.steps, state.points.length, 1);
  const x = (s) => pad + (s / n) * (W - pad - 12);
  ctx.strokeStyle = "#c33";
  ctx.lineWidth = 2;
  ctx.beginPath();
  state.points.forEach((p, i) => { if (i === 0) ctx.moveTo(x(p.step), y(p.score)); else ctx.lineTo(x(p.step), y(p.score)); });
  ctx.stroke();
  ctx.lineWidth = 1;
  ctx.fillText(`score (probability of ${$("attribute").selectedOptions[0]?.textContent || "the output"})`, pad + 6, H - 8);
}

function showResult(d) {
  $("result-panel").hidden = false;
  const e = d.result; // result.json: the explainer's record flattened in
  const name = d.result.attribute.name;
  $("result-line").innerHTML =
    `${name}: ${d.initial_probability.toFixed(3)} on the query &rarr; ${d.final_probability.toFixed(3)} on the counterfactual, ` +
    `<b class="${d.success ? "ok" : "no"}">${d.success ? "decision changed" : "not changed"}</b> ` +
    `(${e.steps_run} steps, ${d.result.seconds.toFixed(1)} s)`;
  for (const k of ["query", "reconstruction", "counterfactual", "difference"]) $(`img-${k}`).src = d.images[k] + "?t=" + Date.now();
  // The slider: the reconstruction (step 0), the frames, the counterfactual.
  state.frames = [{ step: 0, url: d.images.reconstruction }].concat(d.frames,
    [{ step: e.steps_run, url: d.images.counterfactual, last: true }]);
  $("slider-box").hidden = false;
  $("frame-slider").max = String(state.frames.length - 1);
  $("frame-slider").value = String(state.frames.length - 1);
  showFrame();
  const bars = $("region-bars");
  bars.innerHTML = "";
  const changes = d.result.region_change.filter((r) => r.pixels > 0 || r.code_distance > 0);
  const maxCode = Math.max(...changes.map((r) => r.code_distance), 1e-9);
  for (const r of changes) {
    const label = document.createElement("span");
    label.innerHTML = `<span class="chip" style="background:${regionColour(r.id)}"></span>${r.name}`;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.background = regionColour(r.id);
    bar.style.width = `${(100 * r.share).toFixed(1)}%`;
    bar.dataset.region = r.name;
    const v = document.createElement("span");
    v.textContent = `${(100 * r.share).toFixed(1)}%, code ${r.code_distance.toFixed(2)}`;
    v.title = `code distance relative to the largest: ${(r.code_distance / maxCode).toFixed(2)}`;
    bars.append(label, bar, v);
  }
}

function showFrame() {
  if (!state.frames) return;
  const f = state.frames[Number($("frame-slider").value)];
  $("frame-img").src = f.url;
  $("frame-label").textContent = f.step === 0 ? "step 0 (reconstruction)" : f.last ? `step ${f.step} (counterfactual)` : `after step ${f.step}`;
}

// ---- the results folder ------------------------------------------------------------------

async function loadResults() {
  let r;
  try { r = await api("GET", "/api/results"); } catch (e) { showMessage(e.message); return; }
  $("results-panel").hidden = false;
  const s = r.summary;
  $("results-summary").textContent = `${r.dir}: ${r.images.length} images` +
    (s ? `, ${s.n_ok} explained, ${s.n_failed} failed, success rate ${s.success_rate.toFixed(3)}` : "") +
    (r.attribute ? `; scores of ${r.attribute}` : "");
  state.results = r.images;
  state.sort = { key: "image", dir: 1 };
  document.querySelectorAll("#results-table th").forEach((th) => th.addEventListener("click", () => {
    const key = th.dataset.key;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
    renderResults();
  }));
  renderResults();
}

function fmt(v, digits) {
  if (v === null || v === undefined) return "";
  if (typeof v === "boolean") return v ? "yes" : "no";
  if (typeof v === "number") return digits === undefined ? String(v) : v.toFixed(digits);
  return String(v);
}

function renderResults() {
  const { key, dir } = state.sort;
  const rows = state.results.slice().sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * dir;
  });
  document.querySelectorAll("#results-table th").forEach((th) => {
    th.className = th.dataset.key === key ? (dir > 0 ? "sorted-asc" : "sorted-desc") : "";
  });
  const body = document.querySelector("#results-table tbody");
  body.innerHTML = "";
  for (const r of rows) {
    const tr = document.createElement("tr");
    const cells = [r.image, r.status, fmt(r.success), fmt(r.initial_score, 3), fmt(r.final_score, 3),
      fmt(r.score_change, 3), fmt(r.steps_run), fmt(r.seconds, 1)];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.appendChild(td);
    }
    if (r.reason) tr.title = r.reason;
    tr.addEventListener("click", () => showResultImages(r));
    body.appendChild(tr);
  }
}

function showResultImages(r) {
  const box = $("results-images");
  box.innerHTML = "";
  for (const k of ["query", "reconstruction", "counterfactual", "difference"]) {
    if (!r.files[k]) continue;
    const fig = document.createElement("figure");
    fig.innerHTML = `<img src="${r.files[k]}" alt="${k}"><figcaption>${r.image}: ${k}</figcaption>`;
    box.appendChild(fig);
  }
  if (!box.children.length) box.textContent = `${r.image}: no result folder`;
}

start();
