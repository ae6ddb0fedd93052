// noisescope's in-browser player. Frames arrive as chunk files (a PNG sheet of 8-bit indices per chunk of steps),
// are coloured once per chunk through each panel's lookup table, and are drawn by requestAnimationFrame.
// The step goes back to Python (Streamlit's setComponentValue) only on pause, scrub or a step button.
"use strict";
(function () {
  const SPEEDS = [1, 2, 5, 10, 15, 20, 30, 45, 60];
  const EVERY = [1, 2, 5, 10, 20, 50];
  const SCALE = 4; // screen pixels per trace pixel (at most; shrunk to fit)
  const $ = (id) => document.getElementById(id);
  const stats = { requested: 0, shown: [], unloaded: 0, firstPaint: null, start: performance.now(), chunksLoaded: 0,
                  chunksTotal: 0, lastScrub: null, scrubLatencies: [], sent: [] };
  window.__noisescopePlayer = stats;

  let spec = null, frames = [], sheets = [], saturated = [], count = 0, index = 0, playing = false, speed = 5, every = 1;
  let seq = 0, lastTick = 0, owed = 0, canvases = [], satLabels = [], started = false, scale = SCALE;

  function send(type, data) { window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data), "*"); }
  function sendStep() { seq += 1; stats.sent.push(index); send("streamlit:setComponentValue", { value: { step: Math.min(index, spec.rows - 1), seq: seq, final: index >= spec.rows }, dataType: "json" }); }
  function setHeight() { send("streamlit:setFrameHeight", { height: document.body.scrollHeight + 10 }); }

  function loadedAt(i) { return sheets[Math.floor(i / spec.chunk)] !== undefined || (spec.final && i === spec.rows && sheets.final !== undefined); }
  function sheetOf(i) { return i === spec.rows ? [sheets.final, 0] : [sheets[Math.floor(i / spec.chunk)], i % spec.chunk]; }

  let decodeCanvas = null;
  function decodeSheet(bitmap) {
    // the PNG's 8-bit indices, kept as one byte a pixel (coloured per frame when drawn: a few KB of work)
    if (!decodeCanvas) decodeCanvas = document.createElement("canvas");
    const c = decodeCanvas; c.width = bitmap.width; c.height = bitmap.height;
    const g = c.getContext("2d", { willReadFrequently: true }); g.drawImage(bitmap, 0, 0);
    const px = g.getImageData(0, 0, c.width, c.height).data, indices = new Uint8Array(c.width * c.height);
    for (let k = 0; k < indices.length; k++) indices[k] = px[4 * k];
    bitmap.close();
    return { indices: indices, width: c.width };
  }

  let rowCanvas = null, rowImage = null, panelOf = null;
  function colourRow(sheet, j) {
    // step j of a sheet, coloured through each panel's lookup table, onto one small canvas
    const L = spec.layout, w = sheet.width, h = L.height;
    if (!rowCanvas || rowCanvas.width !== w) {
      rowCanvas = document.createElement("canvas"); rowCanvas.width = w; rowCanvas.height = h;
      rowImage = new ImageData(w, h); panelOf = new Uint8Array(w);
      for (let x = 0; x < w; x++) panelOf[x] = Math.min(Math.floor(x / (L.width + 1)), spec.panels.length - 1);
    }
    const luts = spec.panels.map((p) => spec.luts[p.scale]), px = rowImage.data, src = sheet.indices, base = j * h * w;
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const k = y * w + x, rgb = luts[panelOf[x]][src[base + k]];
        px[4 * k] = rgb[0]; px[4 * k + 1] = rgb[1]; px[4 * k + 2] = rgb[2]; px[4 * k + 3] = 255;
      }
    }
    rowCanvas.getContext("2d").putImageData(rowImage, 0, 0);
    return rowCanvas;
  }

  async function fetchChunk(name, attempt) {
    const at = (ext) => new URL(spec.frames + name + ext + (attempt ? "?try=" + attempt : ""), window.location.href);
    const opts = { cache: attempt ? "no-store" : "default" }; // a 404 (not written yet) must not be cached
    try {
      const r = await fetch(at(".json"), opts);
      if (!r.ok) throw new Error(String(r.status));
      const doc = await r.json(); // written after its PNG: the PNG is there
      const png = await fetch(at(".png"), opts);
      if (!png.ok) throw new Error(String(png.status));
      const bitmap = await createImageBitmap(await png.blob(), { colorSpaceConversion: "none", premultiplyAlpha: "none" });
      return { sheet: decodeSheet(bitmap), saturated: doc.saturated };
    } catch (e) {
      if (attempt > 200) throw e;
      await new Promise((ok) => setTimeout(ok, Math.min(100 * (attempt + 1), 1000)));
      return fetchChunk(name, attempt + 1); // written by the server's background thread: not there yet
    }
  }

  async function loadAll(mine) {
    const names = [];
    for (let k = 0; k < spec.chunks; k++) names.push(k);
    // the chunk of the step shown first, then the rest in order
    const first = Math.min(Math.floor(index / spec.chunk), spec.chunks - 1);
    names.sort((a, b) => (a === first ? -1 : b === first ? 1 : a - b));
    if (spec.final) names.push("final");
    for (const k of names) {
      const got = await fetchChunk(k === "final" ? "final" : "chunk_" + k, 0);
      if (mine !== spec) return;
      sheets[k] = got.sheet; saturated[k] = got.saturated; stats.chunksLoaded += 1;
      $("loaded").textContent = stats.chunksLoaded < stats.chunksTotal ? `frames ${stats.chunksLoaded}/${stats.chunksTotal} chunks loaded` : "";
      if (!playing) draw();
    }
  }

  function buildPanels() {
    const box = $("panels"); box.innerHTML = ""; canvases = []; satLabels = [];
    const L = spec.layout, n = spec.panels.length;
    const across = Math.min(n, 4), avail = Math.max(200, (document.body.clientWidth || 900) - 20);
    scale = Math.max(1, Math.min(SCALE, Math.floor((avail / across - 14) / L.width)));
    spec.panels.forEach((p, k) => {
      const div = document.createElement("div"); div.className = "panel";
      const title = document.createElement("div"); title.className = "title";
      title.innerHTML = p.title + ` <span class="range">[${fmt(p.low)}, ${fmt(p.high)}]${p.scale === "grey" ? " data range, beyond saturates" : " symmetric"}</span>`;
      const c = document.createElement("canvas"); c.className = "img"; c.width = L.width * scale; c.height = L.height * scale;
      c.dataset.panel = String(k);
      c.addEventListener("mousemove", (e) => hover(e, k)); c.addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
      const bar = document.createElement("div"); bar.className = "bar";
      const cb = document.createElement("canvas"); cb.width = 120; cb.height = 10; const g = cb.getContext("2d");
      const lut = spec.luts[p.scale];
      for (let x = 0; x < 120; x++) { const rgb = lut[Math.round(x / 119 * 254)]; g.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`; g.fillRect(x, 0, 1, 10); }
      const sat = document.createElement("span");
      bar.append(fmt(p.low), cb, fmt(p.high), sat);
      div.append(title, c, bar); box.append(div); canvases.push(c); satLabels.push(sat);
    });
  }

  function fmt(v) { return Number(v).toPrecision(3).replace(/\.?0+$/, ""); }

  function hover(e, k) {
    const L = spec.layout, r = e.target.getBoundingClientRect();
    const x = Math.floor((e.clientX - r.left - e.target.clientLeft) / scale), y = Math.floor((e.clientY - r.top - e.target.clientTop) / scale);
    const col = Math.floor(x / (L.tile_w + 1)), row = Math.floor(y / (L.tile_h + 1));
    const px = x - col * (L.tile_w + 1), py = y - row * (L.tile_h + 1), tile = row * L.columns + col, tip = $("tip");
    if (px >= L.tile_w || py >= L.tile_h || tile >= spec.samples.length || !loadedAt(index)) { tip.style.display = "none"; return; }
    const [sheet, j] = sheetOf(index), p = spec.panels[k];
    const v = sheet.indices[(j * L.height + y) * sheet.width + p.x + x];
    const label = spec.labels[tile] >= 0 ? ` (class ${spec.labels[tile]})` : "";
    const value = v === 255 ? "—" : fmt(p.low + v / 254 * (p.high - p.low)) + (v === 0 || v === 254 ? " (at the end of the scale)" : "");
    tip.textContent = `sample #${spec.samples[tile]}${label} · pixel (${py}, ${px}) · ${p.name} ≈ ${value}`;
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; tip.style.display = "block";
  }

  function labelText(i) {
    if (i >= spec.rows) return `Final sample (after step ${spec.rows} of ${spec.rows})`;
    const tp = spec.t_prev ? spec.t_prev[i] : -1;
    return `Step ${i + 1} of ${spec.rows} · t = ${spec.t[i]} → ` + (tp < 0 ? "the clean end (t_prev = −1)" : `t_prev = ${tp}`);
  }

  function draw() {
    $("label").textContent = labelText(index);
    $("slider").value = String(index);
    if (!loadedAt(index)) { stats.unloaded += 1; return false; } // keep the last frame drawn: never a blank grid
    const L = spec.layout, [sheet, j] = sheetOf(index);
    const sat = index >= spec.rows ? saturated.final[0] : saturated[Math.floor(index / spec.chunk)][j];
    const row = colourRow(sheet, j);
    spec.panels.forEach((p, k) => {
      const g = canvases[k].getContext("2d"); g.imageSmoothingEnabled = false;
      g.drawImage(row, p.x, 0, L.width, L.height, 0, 0, L.width * scale, L.height * scale);
      const empty = index >= spec.rows && p.scale !== "grey"; // no noise after the last step: the panel is dimmed
      canvases[k].classList.toggle("empty", empty);
      satLabels[k].textContent = p.scale === "grey" ? ` saturated ${(100 * sat[k]).toFixed(1)}%` : empty ? " (none after the last step)" : "";
    });
    const now = performance.now();
    if (stats.firstPaint === null) stats.firstPaint = now;
    stats.shown.push([index, now]);
    if (stats.shown.length > 5000) stats.shown.splice(0, 1000);
    if (stats.lastScrub !== null) { stats.scrubLatencies.push(now - stats.lastScrub); stats.lastScrub = null; }
    return true;
  }

  function go(i, tell) {
    index = Math.max(0, Math.min(count - 1, i));
    stats.lastScrub = performance.now();
    draw();
    if (tell) sendStep();
  }

  function setPlaying(on) {
    if (on && index >= count - 1) index = 0;
    playing = on; $("play").textContent = on ? "⏸ Pause" : "▶ Play";
    owed = 0; lastTick = performance.now();
    if (!on) sendStep();
  }

  function tick(now) {
    if (playing) {
      owed += (now - lastTick) * speed / 1000; lastTick = now;
      if (owed >= 1) {
        const next = index + every;
        if (next >= count) { index = count - 1; draw(); setPlaying(false); }
        else if (loadedAt(next)) { owed = Math.min(owed - 1, 1); index = next; draw(); }
        else { owed = 1; stats.stalls = (stats.stalls || 0) + 1; } // its chunk has not arrived: wait on the frame shown
      }
    }
    requestAnimationFrame(tick);
  }

  function key(e) {
    const tag = (e.target && e.target.tagName) || "";
    if (!spec || ["INPUT", "TEXTAREA", "SELECT"].includes(tag) && e.target.id !== "slider") return;
    if (e.key === " " || e.code === "Space") { setPlaying(!playing); }
    else if (e.key === "ArrowRight") { if (playing) setPlaying(false); go(index + every, true); }
    else if (e.key === "ArrowLeft") { if (playing) setPlaying(false); go(index - every, true); }
    else if (e.key === "Home") { if (playing) setPlaying(false); go(0, true); }
    else if (e.key === "End") { if (playing) setPlaying(false); go(count - 1, true); }
    else return;
    e.preventDefault();
  }

  function setup() {
    SPEEDS.forEach((s) => $("speed").append(new Option(String(s), String(s), s === 10, s === 10)));
    EVERY.forEach((s) => $("every").append(new Option(s === 1 ? "1st" : s === 2 ? "2nd" : `${s}th`, String(s), s === 1, s === 1)));
    speed = 10; stats.requested = speed;
    $("speed").addEventListener("change", (e) => { speed = Number(e.target.value); stats.requested = speed; });
    $("every").addEventListener("change", (e) => { every = Number(e.target.value); });
    $("play").addEventListener("click", () => setPlaying(!playing));
    $("first").addEventListener("click", () => { if (playing) setPlaying(false); go(0, true); });
    $("last").addEventListener("click", () => { if (playing) setPlaying(false); go(count - 1, true); });
    $("back").addEventListener("click", () => { if (playing) setPlaying(false); go(index - every, true); });
    $("next").addEventListener("click", () => { if (playing) setPlaying(false); go(index + every, true); });
    let pending = null;
    $("slider").addEventListener("input", (e) => {
      if (playing) { playing = false; $("play").textContent = "▶ Play"; }
      go(Number(e.target.value), false);
      clearTimeout(pending); pending = setTimeout(sendStep, 150);
    });
    document.addEventListener("keydown", key);
    const busy = "button, input, textarea, select, a, [role=slider], [role=switch], [role=checkbox], [role=option], [role=combobox], [contenteditable]";
    try {
      window.parent.document.addEventListener("keydown", (e) => { // the page's keys too, unless a control of the page has them
        if (e.defaultPrevented || document.visibilityState !== "visible" || (e.target.closest && e.target.closest(busy))) return;
        key(e);
      });
    } catch (e) { /* another origin */ }
    window.__noisescopePlayer.control = { play: () => setPlaying(true), pause: () => setPlaying(false), go: (i, tell) => go(i, tell !== false),
      setSpeed: (s) => { speed = s; stats.requested = s; }, setEvery: (k) => { every = k; }, state: () => ({ index, playing, speed, every, count }) };
    requestAnimationFrame(tick);
  }

  window.addEventListener("message", (event) => {
    const d = event.data;
    if (!d || d.type !== "streamlit:render") return;
    const next = d.args.spec;
    if (spec && spec.frames === next.frames) { spec.step = next.step; return; } // same frames: keep playing where we are
    const first = !started; started = true;
    spec = next; sheets = []; saturated = []; rowCanvas = null; count = spec.rows + (spec.final ? 1 : 0);
    stats.chunksLoaded = 0; stats.chunksTotal = spec.chunks + (spec.final ? 1 : 0);
    if (first || index >= count) index = Math.min(spec.step, count - 1);
    $("slider").max = String(count - 1);
    buildPanels(); draw(); setHeight();
    loadAll(spec);
  });
  setup();
  send("streamlit:componentReady", { apiVersion: 1 });
  window.addEventListener("resize", () => { if (spec) { buildPanels(); draw(); setHeight(); } });
})();
