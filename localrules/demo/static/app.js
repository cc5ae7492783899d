// localrules playground: draws what the server streams, sends what the mouse and buttons do.
// The CA itself runs on the server; see localrules/demo/protocol.py for the messages.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const grid = $("grid"), output = $("output");
  const demo = {
    hello: null, lastFrame: null, lastError: null, frames: 0, errors: 0, socket: null,
    palette: null, mode: "draw", speed: 30, paused: false,
    send(obj) { return this.sendRaw(JSON.stringify(obj)); },
    sendRaw(text) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
      this.socket.send(text);
      return true;
    },
  };
  window.localrulesDemo = demo;  // for the console and the end-to-end tests

  // ------------------------------------------------------------------ connection
  let retry = 500;
  function connect() {
    const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
    demo.socket = ws;
    setStatus("connecting…", "");
    ws.onopen = () => { retry = 500; setStatus("live", "live"); };
    ws.onmessage = (ev) => {
      let msg;
      try { msg = JSON.parse(ev.data); } catch (e) { return; }
      if (msg.type === "hello") onHello(msg);
      else if (msg.type === "frame") onFrame(msg);
      else if (msg.type === "error") onError(msg);
    };
    ws.onclose = () => {
      if (demo.socket !== ws) return;
      setStatus("disconnected, retrying…", "down");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 8000);
    };
  }
  function setStatus(text, cls) { const s = $("status"); s.textContent = text; s.className = cls; }

  // ------------------------------------------------------------------ messages in
  function onHello(h) {
    const first = !demo.hello;
    demo.hello = h;
    const restore = h.task === "restore";
    document.body.classList.toggle("restore", restore);
    $("task").textContent = restore ? "restore: masked digits, CA + MLP gate" : "self-classifying MNIST digits";
    $("output-figure").hidden = !restore;
    $("knockout").hidden = !restore;
    $("palette-row").hidden = restore;
    $("legend").hidden = restore;
    $("grid-caption").textContent = restore
      ? "input: what the model sees (draw, erase, knock out)"
      : "cells: alive cells show the digit they vote for";
    const sel = $("palette");
    sel.textContent = "";
    for (const name of Object.keys(h.palettes)) {
      const opt = document.createElement("option");
      opt.value = opt.textContent = name;
      sel.appendChild(opt);
    }
    const saved = localStorage.getItem("localrules.palette");
    sel.value = saved && h.palettes[saved] ? saved : h.default_palette;
    choosePalette(sel.value);
    $("speed").max = String(Math.min(120, h.max_steps_per_second));
    if (first) {  // the task's default speed
      demo.speed = h.steps_per_second;
      $("speed").value = String(h.steps_per_second);
      $("speed-value").textContent = $("speed").value;
    } else if (demo.paused || demo.speed !== h.steps_per_second) {
      sendSpeed();  // a reconnect opens a fresh session: tell it what this page shows
    }
    const model = String(h.checkpoint).split(/[\\/]/).slice(-2).join("/");
    $("info").textContent = `test digits: ${h.digits} (${h.n_digits.toLocaleString()}); model: ${model}`;
    $("info").title = h.checkpoint;
  }

  function onFrame(f) {
    demo.lastFrame = f;
    demo.frames += 1;
    render();
  }

  function onError(e) {
    demo.lastError = e;
    demo.errors += 1;
    $("error").textContent = `server: ${e.error}`;
    clearTimeout(onError.timer);
    onError.timer = setTimeout(() => { $("error").textContent = ""; }, 6000);
  }

  // ------------------------------------------------------------------ drawing the grid
  const W = 28, H = 28;
  const scratch = document.createElement("canvas");
  scratch.width = W; scratch.height = H;
  const sctx = scratch.getContext("2d");

  function decode(b64) {
    const s = atob(b64), a = new Uint8Array(s.length);
    for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
    return a;
  }
  function hexRgb(h) { const n = parseInt(h.slice(1), 16); return [(n >> 16) & 255, (n >> 8) & 255, n & 255]; }

  function blit(canvas, fill) {
    const img = sctx.createImageData(W, H);
    for (let i = 0; i < W * H; i++) {
      const [r, g, b] = fill(i);
      img.data[4 * i] = r; img.data[4 * i + 1] = g; img.data[4 * i + 2] = b; img.data[4 * i + 3] = 255;
    }
    sctx.putImageData(img, 0, 0);
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(scratch, 0, 0, canvas.width, canvas.height);
  }

  function render() {
    const f = demo.lastFrame, h = demo.hello;
    if (!f || !h) return;
    $("step").textContent = f.step;
    if (f.task === "mnist-selfclassify") renderSelfClassify(f, h);
    else renderRestore(f);
  }

  function renderSelfClassify(f, h) {
    const labels = decode(f.labels), dead = hexRgb(h.dead_colour), cols = demo.palette;
    const undecided = [176, 176, 176];  // 254: alive, no step run yet
    blit(grid, (i) => (labels[i] === 255 ? dead : labels[i] === 254 ? undecided : cols[labels[i]]));
    $("step-of").textContent = "";
    $("stat-line").textContent = !f.alive ? "no alive cells: draw or load a digit"
      : f.majority === null ? `${f.alive} alive cells · no votes yet: step or play`
      : `${f.alive} alive cells · ${(100 * f.agreement).toFixed(1)} % agree on ${f.majority}`;
    const entries = $("legend").children;
    for (let d = 0; d < 10; d++) {
      const voted = f.majority === null ? 0 : f.alive;
      const share = voted ? (100 * f.counts[d]) / voted : 0;
      entries[d].querySelector(".share").textContent = voted ? `${share.toFixed(0)} %` : "";
      entries[d].classList.toggle("majority", voted > 0 && f.majority === d);
    }
  }

  function renderRestore(f) {
    const inp = decode(f.input), out = decode(f.output);
    const ink = (v) => { const c = 255 - v; return [c, c, c]; };  // dark ink on white paper
    blit(grid, (i) => ink(inp[i]));
    blit(output, (i) => ink(out[i]));
    $("step-of").textContent = ` / ${f.max_steps}`;
    const parts = [f.running ? "restoring…" : "done"];
    if (f.psnr_db !== null) parts.push(`PSNR ${f.psnr_db.toFixed(1)} dB vs. the clean digit`);
    if (f.guess !== null) parts.push(`classifier reads ${f.guess}`);
    $("stat-line").textContent = parts.join(" · ");
  }

  // ------------------------------------------------------------------ palette and legend
  function choosePalette(name) {
    const h = demo.hello;
    demo.palette = h.palettes[name].map(hexRgb);
    localStorage.setItem("localrules.palette", name);
    const legend = $("legend");
    legend.textContent = "";
    h.palettes[name].forEach((hex, d) => {
      const e = document.createElement("div");
      e.className = "entry";
      e.dataset.digit = String(d);
      e.innerHTML = `<span class="swatch"></span><b>${d}</b><span class="share"></span>`;
      e.querySelector(".swatch").style.background = hex;
      legend.appendChild(e);
    });
    render();
  }
  $("palette").addEventListener("change", (ev) => choosePalette(ev.target.value));

  // ------------------------------------------------------------------ mouse: draw and erase
  let stroke = null, pending = [], flushQueued = false;
  const brush = () => parseFloat($("brush").value);

  function cellPoint(ev) {
    const r = grid.getBoundingClientRect();
    return [((ev.clientX - r.left) / r.width) * W, ((ev.clientY - r.top) / r.height) * H];
  }
  function queue(p) {
    if (stroke.last) {  // fill the gap so a fast stroke stays continuous
      const [x0, y0] = stroke.last, dx = p[0] - x0, dy = p[1] - y0;
      const n = Math.ceil(Math.hypot(dx, dy) / 0.4);
      for (let k = 1; k < n; k++) pending.push([x0 + (dx * k) / n, y0 + (dy * k) / n]);
    }
    pending.push(p);
    stroke.last = p;
    if (!flushQueued) { flushQueued = true; requestAnimationFrame(flush); }
  }
  function flush() {
    flushQueued = false;
    if (!stroke && !pending.length) return;
    const erase = stroke ? stroke.erase : false;
    const max = (demo.hello && demo.hello.max_points) || 2048;
    while (pending.length) {
      const points = pending.splice(0, max).map(([x, y]) => [+x.toFixed(2), +y.toFixed(2)]);
      demo.send({ type: "draw", points, radius: brush(), erase });
    }
  }
  grid.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0 && ev.button !== 2) return;
    ev.preventDefault();
    grid.setPointerCapture(ev.pointerId);
    stroke = { erase: demo.mode === "erase" || ev.button === 2 || ev.shiftKey, last: null };
    queue(cellPoint(ev));
  });
  grid.addEventListener("pointermove", (ev) => { if (stroke) queue(cellPoint(ev)); });
  const endStroke = () => { if (stroke) { flush(); stroke = null; } };
  grid.addEventListener("pointerup", endStroke);
  grid.addEventListener("pointercancel", endStroke);
  grid.addEventListener("contextmenu", (ev) => ev.preventDefault());

  function setMode(mode) {
    demo.mode = mode;
    $("mode-draw").setAttribute("aria-pressed", String(mode === "draw"));
    $("mode-erase").setAttribute("aria-pressed", String(mode === "erase"));
  }
  $("mode-draw").addEventListener("click", () => setMode("draw"));
  $("mode-erase").addEventListener("click", () => setMode("erase"));
  $("brush").addEventListener("input", () => { $("brush-value").textContent = $("brush").value; });

  // ------------------------------------------------------------------ buttons
  const load = (d) => demo.send({ type: "load", digit: d });
  const clear = () => demo.send({ type: "clear" });
  for (const b of document.querySelectorAll("#digits button")) {
    b.addEventListener("click", () => load(parseInt(b.dataset.digit, 10)));
  }
  $("clear").addEventListener("click", clear);
  $("knockout").addEventListener("click", () => demo.send({ type: "knockout", fraction: 0.7 }));
  $("step-once").addEventListener("click", () => demo.send({ type: "step", n: 1 }));

  function sendSpeed() {
    demo.send({ type: "speed", steps_per_second: demo.paused ? 0 : demo.speed });
  }
  $("speed").addEventListener("input", () => {
    demo.speed = parseFloat($("speed").value);
    $("speed-value").textContent = $("speed").value;
    sendSpeed();
  });
  function togglePause() {
    demo.paused = !demo.paused;
    $("pause").setAttribute("aria-pressed", String(demo.paused));
    $("pause").textContent = demo.paused ? "play" : "pause";
    sendSpeed();
  }
  $("pause").addEventListener("click", togglePause);

  document.addEventListener("keydown", (ev) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.target.tagName === "SELECT") return;
    if (/^[0-9]$/.test(ev.key)) load(parseInt(ev.key, 10));
    else if (ev.key === "c" || ev.key === "C") clear();
    else if (ev.key === " " && ev.target.tagName !== "BUTTON") { ev.preventDefault(); togglePause(); }
  });

  // form fields may keep their values across a reload
  $("brush-value").textContent = $("brush").value;
  connect();
})();
