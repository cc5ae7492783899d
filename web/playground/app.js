// localrules static playground: the shipped models run in this tab with ONNX Runtime Web (WASM).
// The same interactions as the server playground (localrules/demo/static/), with no server:
// models/*.onnx are `localrules export` graphs, built with the page by scripts/build-playground.
//
//   self-classifier: state' = step(pixels, state, fire, noise), fire ~ [U(0,1) <= fire_rate] and
//                    noise ~ N(0, 1) drawn here per step (the graph scales it by the training std)
//   restorers:       restored = model(masked[, keep]), one full restoration per edit; keep (1 = the
//                    pixel is known: loaded or drawn; 0: erased or knocked out) is fed to the
//                    models whose graph takes it (the manifest lists each model's inputs)
//
// window.playground is the page's handle for the console and the tests (runDraws: given draws).
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const W = 28, H = 28, N = W * H, DEAD = 255, MAX_SPEED = 241;  // the slider's last notch: as fast as it can
  const grid = $("grid"), output = $("output");
  const pg = {
    ready: false, restoreReady: false, error: null, system: "selfclassify", mode: "draw",
    speed: 30, paused: false, steps: 0, rate: 0, loaded: null, restorations: 0, manifest: null,
  };
  window.playground = pg;

  let manifest = null, digits = null, C = 0;
  const sessions = {};
  let pixels = new Float32Array(N), state = null;      // self-classifier
  let image = new Float32Array(N), keep = new Uint8Array(N).fill(1), reference = null, knocked = false;  // restorer
  let restored = new Float32Array(N), psnr = null, guess = null, restoreMs = null;
  let busy = false, dirty = true, manual = 0;
  const edits = [];  // edits made while a step runs, applied before the next one

  // ------------------------------------------------------------------ set-up
  ort.env.wasm.wasmPaths = new URL("ort/", location.href).href;
  ort.env.wasm.numThreads = 1;  // a static host sends no cross-origin isolation headers: no threads
  const create = (file) => ort.InferenceSession.create(file, { executionProviders: ["wasm"] });

  async function init() {
    try {
      manifest = pg.manifest = await (await fetch("manifest.json")).json();
      digits = new Uint8Array(await (await fetch(manifest.digits.file)).arrayBuffer());
      C = manifest.selfclassify.channels;
      state = new Float32Array(N * C);
      sessions.selfclassify = await create(manifest.models.selfclassify.file);
      setupPalettes();
      $("info").textContent = `test digits: ${manifest.digits.source} (${manifest.digits.count}); ` +
        `model: ${manifest.models.selfclassify.model}; ONNX Runtime Web ${manifest.onnxruntime_web} (WASM), in this tab`;
      pg.ready = true;
      setStatus("ready", "live");
      if (location.hash === "#restore") chooseSystem("restore");
      loop();
    } catch (e) {
      fail(e);
    }
  }
  function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = cls; }
  function fail(e) {
    pg.error = String(e && e.message ? e.message : e);
    setStatus("failed", "down");
    $("error").textContent = pg.error;
  }

  // ------------------------------------------------------------------ random draws
  function randomFire() {
    const f = new Uint8Array(N), rate = manifest.selfclassify.fire_rate;
    for (let i = 0; i < N; i++) f[i] = Math.random() <= rate ? 1 : 0;
    return f;
  }
  function randomNoise() {  // N(0, 1) by Box-Muller
    const z = new Float32Array(N * C);
    for (let i = 0; i < z.length; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - Math.random())), a = 2 * Math.PI * Math.random();
      z[i] = r * Math.cos(a);
      if (i + 1 < z.length) z[i + 1] = r * Math.sin(a);
    }
    return z;
  }

  // ------------------------------------------------------------------ self-classifier
  const alive = (i) => pixels[i] > manifest.selfclassify.alive_threshold;
  function anyAlive() { for (let i = 0; i < N; i++) if (alive(i)) return true; return false; }

  async function step(fire, noise) {
    const out = await sessions.selfclassify.run({
      pixels: new ort.Tensor("float32", pixels.slice(), [1, H, W, 1]),
      state: new ort.Tensor("float32", state, [1, H, W, C]),
      fire: new ort.Tensor("bool", fire || randomFire(), [1, H, W, 1]),
      noise: new ort.Tensor("float32", noise || randomNoise(), [1, H, W, C]),
    });
    state = out.state_out.data;
    pg.steps += 1;
    dirty = true;
  }

  function labels() {  // each alive cell's label (argmax of its last 10 channels), DEAD when dead
    const out = new Uint8Array(N), L = manifest.selfclassify.labels;
    for (let i = 0; i < N; i++) {
      if (!alive(i)) { out[i] = DEAD; continue; }
      let best = 0, bv = -Infinity;
      for (let k = 0; k < L; k++) { const v = state[i * C + C - L + k]; if (v > bv) { bv = v; best = k; } }
      out[i] = best;
    }
    return out;
  }

  function edit(fn) {  // apply now, or right after the step in flight
    if (busy) edits.push(fn); else { fn(); dirty = true; }
  }
  function applyEdits() { while (edits.length) edits.shift()(); dirty = true; }

  // the brush: cells whose centre lies within radius of a point (points in cell units, as the server's)
  function brush(points, radius, erase) {
    for (const [x, y] of points) {
      for (let i = Math.max(0, Math.floor(y - radius - 1)); i < Math.min(H, Math.ceil(y + radius + 1)); i++) {
        for (let j = Math.max(0, Math.floor(x - radius - 1)); j < Math.min(W, Math.ceil(x + radius + 1)); j++) {
          const dx = j + 0.5 - x, dy = i + 0.5 - y;
          if (dx * dx + dy * dy > radius * radius) continue;
          const k = i * W + j;
          if (pg.system === "restore") { image[k] = erase ? 0 : 1; keep[k] = erase ? 0 : 1; continue; }
          pixels[k] = erase ? 0 : 1;  // newly alive cells keep the zero state of dead cells
          if (erase) state.fill(0, k * C, (k + 1) * C);
        }
      }
    }
  }

  function sampleDigit(d) {  // a random shipped test digit of label d, (784) in [0, 1]
    const idx = [];
    manifest.digits.labels.forEach((l, k) => { if (l === d) idx.push(k); });
    const k = idx[Math.floor(Math.random() * idx.length)];
    return Float32Array.from(digits.subarray(k * N, (k + 1) * N), (v) => v / 255);
  }

  function loadDigit(d) {
    if (pg.system === "restore") {
      image = sampleDigit(d); keep.fill(1); reference = image.slice(); knocked = false; pg.loaded = d;
      return restoreSoon();
    }
    edit(() => { pixels = sampleDigit(d); state.fill(0); pg.steps = 0; pg.loaded = d; });
  }
  function mutate() {  // another digit in the same cells: cells alive in both keep their state
    const others = [...Array(10).keys()].filter((d) => d !== pg.loaded);
    const d = others[Math.floor(Math.random() * others.length)];
    edit(() => {
      const next = sampleDigit(d), thr = manifest.selfclassify.alive_threshold;
      for (let i = 0; i < N; i++) {
        if (!(pixels[i] > thr && next[i] > thr)) state.fill(0, i * C, (i + 1) * C);
      }
      pixels = next; pg.loaded = d;
    });
  }
  function clear() {
    if (pg.system === "restore") {
      image = new Float32Array(N); keep.fill(1); reference = null; knocked = false; pg.loaded = null;
      return restoreSoon();
    }
    edit(() => { pixels.fill(0); state.fill(0); pg.steps = 0; pg.loaded = null; });
  }

  // steps/s over the last second of stepping
  const stamps = [];
  function tick() {
    const now = performance.now();
    stamps.push(now);
    while (stamps.length && stamps[0] < now - 1000) stamps.shift();
    pg.rate = stamps.length > 1 ? (1000 * (stamps.length - 1)) / (now - stamps[0]) : 0;
  }
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const yieldTask = () => new Promise((r) => { const ch = new MessageChannel(); ch.port1.onmessage = () => r(); ch.port2.postMessage(0); });

  async function loop() {
    let due = performance.now();
    for (;;) {
      const run = pg.system === "selfclassify" && (manual > 0 || (!pg.paused && anyAlive()));
      if (!run) { stamps.length = 0; pg.rate = 0; await sleep(30); due = performance.now(); continue; }
      busy = true;
      try { await step(); } catch (e) { fail(e); busy = false; return; }
      busy = false;
      applyEdits();
      if (manual > 0) { manual -= 1; continue; }
      tick();
      if (pg.speed >= MAX_SPEED) { await yieldTask(); due = performance.now(); continue; }
      due += 1000 / pg.speed;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      else { if (wait < -200) due = performance.now(); await yieldTask(); }
    }
  }

  // ------------------------------------------------------------------ restorer
  let restoring = false, again = false;
  async function ensureRestore() {
    if (pg.restoreReady) return;
    setStatus("loading restorers…", "");
    for (const key of ["hybrid", "ca", "cnn-ae", "classifier"]) sessions[key] = sessions[key] || await create(manifest.models[key].file);
    pg.restoreReady = true;
    setStatus("ready", "live");
  }
  async function restoreSoon() {
    dirty = true;
    if (restoring) { again = true; return; }
    restoring = true;
    try {
      await ensureRestore();
      do {
        again = false;
        const t0 = performance.now();
        const key = $("restorer").value, feeds = { masked: new ort.Tensor("float32", image.slice(), [1, H, W]) };
        if (manifest.models[key].inputs.includes("keep")) feeds.keep = new ort.Tensor("bool", keep.slice(), [1, H, W]);
        const out = await sessions[key].run(feeds);
        restored = out.restored.data;
        const logits = (await sessions.classifier.run({ masked: new ort.Tensor("float32", restored.slice(), [1, H, W]) })).logits.data;
        guess = logits.indexOf(Math.max(...logits));
        restoreMs = performance.now() - t0;
        psnr = null;
        if (reference && reference.some((v) => v > 0)) {
          let se = 0;
          for (let i = 0; i < N; i++) se += (restored[i] - reference[i]) ** 2;
          psnr = 10 * Math.log10(1 / Math.max(se / N, 1e-10));
        }
        pg.restorations += 1;
        dirty = true;
      } while (again);
    } catch (e) { fail(e); }
    restoring = false;
  }
  function knockout(frac) {  // blank exactly round(frac * N) random pixels, as in training
    if (!knocked) reference = image.slice();
    const order = [...Array(N).keys()];
    for (let i = N - 1; i > 0; i--) { const j = Math.floor(Math.random() * (i + 1)); [order[i], order[j]] = [order[j], order[i]]; }
    for (let k = 0; k < Math.round(frac * N); k++) { image[order[k]] = 0; keep[order[k]] = 0; }
    knocked = true;
    restoreSoon();
  }

  // ------------------------------------------------------------------ drawing
  const scratch = document.createElement("canvas");
  scratch.width = W; scratch.height = H;
  const sctx = scratch.getContext("2d");
  const hexRgb = (h) => { const n = parseInt(h.slice(1), 16); return [(n >> 16) & 255, (n >> 8) & 255, n & 255]; };
  let palette = null;

  function blit(canvas, fill) {
    const img = sctx.createImageData(W, H);
    for (let i = 0; i < N; i++) {
      const [r, g, b] = fill(i);
      img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
    }
    sctx.putImageData(img, 0, 0);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(scratch, 0, 0, canvas.width, canvas.height);
  }

  function render() {
    requestAnimationFrame(render);
    $("rate").textContent = pg.system === "restore"
      ? (restoreMs === null ? "–" : (1000 / restoreMs).toFixed(1)) : pg.rate.toFixed(0);
    if (!dirty || !pg.ready) return;
    dirty = false;
    if (pg.system === "restore") return renderRestore();
    const lab = labels(), dead = hexRgb(manifest.dead_colour), undecided = [176, 176, 176];
    const voted = pg.steps > 0;  // at step 0 the zero state's argmax would read as "agree on 0"
    blit(grid, (i) => (lab[i] === DEAD ? dead : voted ? palette[lab[i]] : undecided));
    $("step").textContent = pg.steps;
    const counts = new Array(10).fill(0);
    let n = 0;
    for (const l of lab) if (l !== DEAD) { counts[l] += 1; n += 1; }
    const majority = counts.indexOf(Math.max(...counts));
    $("stat-line").textContent = !n ? "no alive cells: draw or load a digit"
      : !voted ? `${n} alive cells · no votes yet: step or play`
      : `${n} alive cells · ${((100 * counts[majority]) / n).toFixed(1)} % agree on ${majority}`;
    const entries = $("legend").children;
    for (let d = 0; d < 10; d++) {
      entries[d].querySelector(".share").textContent = n && voted ? `${((100 * counts[d]) / n).toFixed(0)} %` : "";
      entries[d].classList.toggle("majority", n > 0 && voted && majority === d);
    }
  }
  function renderRestore() {
    const ink = (v) => { const c = Math.round(255 * (1 - Math.min(1, Math.max(0, v)))); return [c, c, c]; };
    blit(grid, (i) => ink(image[i]));
    blit(output, (i) => ink(restored[i]));
    const parts = [restoring ? "restoring…" : "done"];
    if (psnr !== null) parts.push(`PSNR ${psnr.toFixed(1)} dB vs. the clean digit`);
    if (guess !== null) parts.push(`classifier reads ${guess}`);
    $("stat-line").textContent = parts.join(" · ");
  }

  function setupPalettes() {
    const sel = $("palette");
    for (const name of Object.keys(manifest.palettes)) {
      const opt = document.createElement("option");
      opt.value = opt.textContent = name;
      sel.appendChild(opt);
    }
    const saved = localStorage.getItem("localrules.palette");
    sel.value = saved && manifest.palettes[saved] ? saved : manifest.default_palette;
    choosePalette(sel.value);
  }
  function choosePalette(name) {
    palette = manifest.palettes[name].map(hexRgb);
    localStorage.setItem("localrules.palette", name);
    const legend = $("legend");
    legend.textContent = "";
    manifest.palettes[name].forEach((hex, d) => {
      const e = document.createElement("div");
      e.className = "entry";
      e.dataset.digit = String(d);
      e.innerHTML = `<span class="swatch"></span><b>${d}</b><span class="share"></span>`;
      e.querySelector(".swatch").style.background = hex;
      legend.appendChild(e);
    });
    dirty = true;
  }
  $("palette").addEventListener("change", (ev) => choosePalette(ev.target.value));

  function chooseSystem(sys) {
    pg.system = sys;
    $("system").value = sys;
    const restore = sys === "restore";
    document.body.classList.toggle("restore", restore);
    for (const id of ["output-figure", "knockout", "restorer-row"]) $(id).hidden = !restore;
    for (const id of ["palette-row", "legend", "speed-row", "mutate", "step-part"]) $(id).hidden = restore;
    $("grid-caption").textContent = restore ? "input: what the model sees (draw, erase, knock out)"
      : "cells: alive cells show the digit they vote for";
    $("rate-unit").textContent = restore ? "restorations/s" : "steps/s";
    dirty = true;
    if (restore) restoreSoon();
  }
  $("system").addEventListener("change", (ev) => chooseSystem(ev.target.value));
  $("restorer").addEventListener("change", () => restoreSoon());

  // ------------------------------------------------------------------ mouse: draw and erase
  let stroke = null;
  function cellPoint(ev) {
    const r = grid.getBoundingClientRect();
    return [((ev.clientX - r.left) / r.width) * W, ((ev.clientY - r.top) / r.height) * H];
  }
  function paint(p) {
    const pts = [];
    if (stroke.last) {  // fill the gap so a fast stroke stays continuous
      const [x0, y0] = stroke.last, dx = p[0] - x0, dy = p[1] - y0, n = Math.ceil(Math.hypot(dx, dy) / 0.4);
      for (let k = 1; k < n; k++) pts.push([x0 + (dx * k) / n, y0 + (dy * k) / n]);
    }
    pts.push(p);
    stroke.last = p;
    const radius = parseFloat($("brush").value), erase = stroke.erase;
    if (pg.system === "restore") {
      brush(pts, radius, erase);
      if (!erase && !knocked) reference = image.slice();
      restoreSoon();
    } else {
      edit(() => brush(pts, radius, erase));
    }
  }
  grid.addEventListener("pointerdown", (ev) => {
    if (!pg.ready || (ev.button !== 0 && ev.button !== 2)) return;
    ev.preventDefault();
    grid.setPointerCapture(ev.pointerId);
    stroke = { erase: pg.mode === "erase" || ev.button === 2 || ev.shiftKey, last: null };
    paint(cellPoint(ev));
  });
  grid.addEventListener("pointermove", (ev) => { if (stroke) paint(cellPoint(ev)); });
  const endStroke = () => { stroke = null; };
  grid.addEventListener("pointerup", endStroke);
  grid.addEventListener("pointercancel", endStroke);
  grid.addEventListener("contextmenu", (ev) => ev.preventDefault());

  function setMode(mode) {
    pg.mode = mode;
    $("mode-draw").setAttribute("aria-pressed", String(mode === "draw"));
    $("mode-erase").setAttribute("aria-pressed", String(mode === "erase"));
  }
  $("mode-draw").addEventListener("click", () => setMode("draw"));
  $("mode-erase").addEventListener("click", () => setMode("erase"));
  $("brush").addEventListener("input", () => { $("brush-value").textContent = $("brush").value; });

  // ------------------------------------------------------------------ buttons and keys
  const ready = (fn) => (...a) => { if (pg.ready) fn(...a); };
  for (const b of document.querySelectorAll("#digits button")) {
    b.addEventListener("click", ready(() => loadDigit(parseInt(b.dataset.digit, 10))));
  }
  $("clear").addEventListener("click", ready(clear));
  $("mutate").addEventListener("click", ready(mutate));
  $("knockout").addEventListener("click", ready(() => knockout(manifest.restore.knockout)));
  $("step-once").addEventListener("click", ready(() => { manual += 1; }));

  function setSpeed(v) {
    pg.speed = v;
    $("speed").value = String(Math.min(v, MAX_SPEED));
    $("speed-value").textContent = v >= MAX_SPEED ? "max" : String(v);
  }
  $("speed").addEventListener("input", () => setSpeed(parseFloat($("speed").value)));
  function setPaused(p) {
    pg.paused = p;
    $("pause").setAttribute("aria-pressed", String(p));
    $("pause").textContent = p ? "play" : "pause";
  }
  $("pause").addEventListener("click", () => setPaused(!pg.paused));

  document.addEventListener("keydown", (ev) => {
    if (!pg.ready || ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.tagName === "SELECT") return;
    if (/^[0-9]$/.test(ev.key)) loadDigit(parseInt(ev.key, 10));
    else if (ev.key === "c" || ev.key === "C") clear();
    else if ((ev.key === "m" || ev.key === "M") && pg.system === "selfclassify") mutate();
    else if (ev.key === " " && ev.target.tagName !== "BUTTON") { ev.preventDefault(); setPaused(!pg.paused); }
  });

  // ------------------------------------------------------------------ hooks for the console and tests
  const b64bytes = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
  Object.assign(pg, {
    setSpeed, setPaused, chooseSystem, loadDigit, mutate, clear, knockout,
    pixels: () => Array.from(pixels),
    labels: () => Array.from(labels()),
    state: () => Array.from(state),
    image: () => Array.from(image),
    keep: () => Array.from(keep),
    restored: () => Array.from(restored),
    idle: async () => { while (busy || restoring) await sleep(5); },
    // pause, then run `steps` steps from the current state with the given draws: fires (base64
    // uint8, steps x 784) and noises (base64 float32, steps x 784 x C; null: zeros)
    async runDraws({ steps, fires, noises }) {
      setPaused(true);
      await pg.idle();
      const f = b64bytes(fires), z = noises ? new Float32Array(b64bytes(noises).buffer) : null;
      for (let t = 0; t < steps; t++) {
        await step(f.slice(t * N, (t + 1) * N), z ? z.slice(t * N * C, (t + 1) * N * C) : new Float32Array(N * C));
      }
      return { labels: pg.labels(), state: pg.state() };
    },
  });

  $("brush-value").textContent = $("brush").value;
  requestAnimationFrame(render);
  init();
})();
