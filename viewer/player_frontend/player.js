// noisescope's in-browser player. One or more tracks (a trace each) on one timeline of positions; a track's frames
// arrive as chunk files (a PNG sheet of 8-bit values per chunk of steps, or 16-bit 2-D points), kept compressed, and a
// few chunks around the position shown are decoded at a time. A track's compressed image chunks are kept up to KEPT_BYTES
// (those farthest from the position shown go first, and are fetched again when needed), so a long trace's frames do not
// pile up in the browser. requestAnimationFrame draws; the position goes back to
// Python (Streamlit's setComponentValue) only on pause, scrub or a step button.
"use strict";
(function () {
  const SPEEDS = [1, 2, 5, 10, 15, 20, 30, 45, 60];
  const EVERY = [1, 2, 5, 10, 20, 50];
  const SCALE = 4; // screen pixels per trace pixel (at most; shrunk to fit, never under 2 where two panels fit across)
  const DECODED = 6; // decoded image chunks kept per track (the rest stay compressed, as Blobs)
  const KEPT_BYTES = 128 * 1024 * 1024; // compressed image chunks kept per track (2-D points: every chunk, trails need them)
  const POINT_LEVELS = 65534, MISSING = 65535;
  const $ = (id) => document.getElementById(id);
  const stats = { requested: 0, shown: [], unloaded: 0, stalls: 0, firstPaint: null, start: performance.now(), chunksLoaded: 0,
                  chunksTotal: 0, lastScrub: null, scrubLatencies: [], sent: [], decoded: 0, evicted: 0, prefetched: false };
  window.__noisescopePlayer = stats;

  let spec = null, tracks = [], count = 0, index = 0, playing = false, speed = 10, every = 1;
  let seq = 0, lastTick = 0, owed = 0, started = false, generation = 0, keptBytes = KEPT_BYTES;
  const rawSize = (raw) => (raw.size !== undefined ? raw.size : raw.byteLength); // a Blob (images) or an ArrayBuffer (points)

  function send(type, data) { window.parent.postMessage(Object.assign({ isStreamlitMessage: true, type: type }, data), "*"); }
  function sendStep() { seq += 1; stats.sent.push(index); send("streamlit:setComponentValue", { value: { step: index, seq: seq }, dataType: "json" }); }
  function setHeight() { send("streamlit:setFrameHeight", { height: document.body.scrollHeight + 10 }); }
  function fmt(v) { return Number(v).toPrecision(3).replace(/\.?0+$/, ""); }

  // ---- a track's chunks: fetched (compressed, up to KEPT_BYTES for images), decoded on demand -----------------------
  function Store(track) {
    this.track = track; this.raw = {}; this.docs = {}; this.decoded = new Map(); this.pending = {}; this.loading = {}; this.bytes = 0;
    this.overflowed = false; // a chunk was let go: fetching ahead stops
  }
  Store.prototype.chunkOf = function (step) { return step >= this.track.rows ? "final" : Math.floor(step / this.track.chunk); };
  Store.prototype.rowOf = function (step) { return step >= this.track.rows ? 0 : step % this.track.chunk; };
  Store.prototype.fetched = function (c) { return this.raw[c] !== undefined; };
  Store.prototype.ready = function (c) { return this.decoded.has(c); };
  Store.prototype.get = function (c) { const d = this.decoded.get(c); if (d) { this.decoded.delete(c); this.decoded.set(c, d); } return d; };
  Store.prototype.full = function () { return this.track.kind !== "points" && (this.overflowed || this.bytes >= keptBytes); };
  Store.prototype.load = function (c) {
    // a promise that chunk c is fetched (false: these frames are no longer shown); fetched once at a time
    if (this.fetched(c)) return Promise.resolve(true);
    if (!this.loading[c]) {
      const self = this, mine = generation;
      this.loading[c] = fetchChunk(this.track, c === "final" ? "final" : "chunk_" + c, mine).then((got) => {
        delete self.loading[c];
        if (got === null || mine !== generation) return false;
        self.keep(c, got);
        if (!playing) show(index);
        return true;
      });
    }
    return this.loading[c];
  };
  Store.prototype.keep = function (c, got) {
    // chunk c fetched; image chunks over KEPT_BYTES: those farthest from the position shown let go (fetched again if needed)
    if (!this.fetched(c)) this.bytes += rawSize(got.raw);
    this.raw[c] = got.raw; this.docs[c] = got.doc;
    this.trim(c);
  };
  Store.prototype.trim = function (c) {
    // image chunks over keptBytes: the farthest from the position shown let go, never chunk c nor the position's own
    if (this.track.kind === "points") return;
    const at = (k) => (k === "final" ? this.track.chunks : Number(k));
    const here = at(this.chunkOf(this.track.steps ? this.track.steps[index] : index));
    while (this.bytes > keptBytes) {
      let far = null, gap = 0;
      for (const k of Object.keys(this.raw)) {
        const d = Math.abs(at(k) - here);
        if (String(k) !== String(c) && d > gap) { gap = d; far = k; }
      }
      if (far === null) break;
      this.bytes -= rawSize(this.raw[far]); delete this.raw[far]; stats.evicted += 1; this.overflowed = true;
    }
  };
  Store.prototype.decode = function (c) {
    // a promise of chunk c decoded (kept among the DECODED most recently used); undefined if not fetched yet (its
    // fetch is started: a chunk let go, or not reached by the prefetch)
    if (this.decoded.has(c)) return Promise.resolve(this.get(c));
    if (!this.fetched(c)) { this.load(c); return undefined; }
    if (this.pending[c]) return this.pending[c];
    const self = this;
    const work = this.track.kind === "points" ? Promise.resolve(new Uint16Array(this.raw[c])) : decodeSheet(this.raw[c], this.track.channels);
    this.pending[c] = work.then((d) => {
      delete self.pending[c]; stats.decoded += 1;
      self.decoded.set(c, d);
      if (self.track.kind !== "points") while (self.decoded.size > DECODED) self.decoded.delete(self.decoded.keys().next().value);
      return d;
    });
    return this.pending[c];
  };

  async function inflateSheet(blob, channels) {
    // the PNGs the server writes (8-bit grey or RGB, one IDAT, filter 0 on every row) inflated straight into their
    // values by the browser's DecompressionStream: no canvas, no RGBA copy. null: not such a PNG (the canvas decodes it)
    const head = new DataView(await blob.slice(0, 41).arrayBuffer()), type = channels === 1 ? 0 : 2;
    if (head.byteLength < 41 || head.getUint8(24) !== 8 || head.getUint8(25) !== type || head.getUint8(28) !== 0 || head.getUint32(37) !== 0x49444154) return null;
    const w = head.getUint32(16), h = head.getUint32(20), size = head.getUint32(33), stride = w * channels + 1;
    if (blob.size !== 41 + size + 4 + 12) return null; // IDAT, its CRC, IEND: nothing else
    const raw = new Uint8Array(h * stride), reader = blob.slice(41, 41 + size).stream().pipeThrough(new DecompressionStream("deflate")).getReader();
    let n = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.length > raw.length) return null;
      raw.set(value, n); n += value.length;
    }
    if (n !== raw.length) return null;
    const out = new Uint8Array(h * w * channels);
    for (let y = 0; y < h; y++) {
      if (raw[y * stride] !== 0) return null; // a filter other than 0
      out.set(raw.subarray(y * stride + 1, (y + 1) * stride), y * w * channels);
    }
    return { values: out, width: w, height: h };
  }

  let decodeCanvas = null;
  async function decodeSheet(blob, channels) {
    // the PNG's 8-bit values: one byte a pixel (grey: an index coloured per frame) or three (RGB)
    if (typeof DecompressionStream === "function") {
      const sheet = await inflateSheet(blob, channels).catch(() => null);
      if (sheet) return sheet;
    }
    const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    if (!decodeCanvas) decodeCanvas = document.createElement("canvas");
    const c = decodeCanvas; c.width = bitmap.width; c.height = bitmap.height;
    const g = c.getContext("2d", { willReadFrequently: true }); g.drawImage(bitmap, 0, 0);
    const px = g.getImageData(0, 0, c.width, c.height).data, n = c.width * c.height, out = new Uint8Array(n * channels);
    if (channels === 1) for (let k = 0; k < n; k++) out[k] = px[4 * k];
    else for (let k = 0; k < n; k++) { out[3 * k] = px[4 * k]; out[3 * k + 1] = px[4 * k + 1]; out[3 * k + 2] = px[4 * k + 2]; }
    const size = { width: c.width, height: c.height };
    bitmap.close(); c.width = 1; c.height = 1; // free the canvas' pixels
    return { values: out, width: size.width, height: size.height };
  }

  async function fetchChunk(track, name, mine) {
    // a chunk's payload and JSON, asked for again (every second at most) until the server's background thread has
    // written them, for as long as these frames are the ones shown (mine: their generation; null once they are not).
    // No attempt limit: a large trace's first full draw (its findings and failing steps read every row) can hold that
    // thread back for minutes, and giving up would leave every later chunk unloaded.
    const ext = track.kind === "points" ? ".bin" : ".png";
    for (let attempt = 0; mine === generation; attempt++) {
      const at = (e) => new URL(track.frames + name + e + (attempt ? "?try=" + attempt : ""), window.location.href);
      const opts = { cache: attempt ? "no-store" : "default" }; // a 404 (not written yet) must not be cached
      try {
        // both files at once; the JSON is written after its payload, so a JSON found with its payload missing only
        // means the payload was asked for first: the retry finds both
        const [r, body] = await Promise.all([fetch(at(".json"), opts), fetch(at(ext), opts)]);
        if (!r.ok) throw new Error(String(r.status));
        if (!body.ok) throw new Error(String(body.status));
        const [doc, raw] = await Promise.all([r.json(), track.kind === "points" ? body.arrayBuffer() : body.blob()]);
        return { raw: raw, doc: doc };
      } catch (e) {
        await new Promise((ok) => setTimeout(ok, Math.min(100 * (attempt + 1), 1000))); // not written yet
      }
    }
    return null;
  }

  async function loadAll(mine) { // mine: the generation of frames it loads (a new set of frames stops it)
    // every track's chunks: those of the position shown first, then the rest in order, tracks interleaved; a track
    // whose compressed chunks fill KEPT_BYTES stops there, its other chunks fetched when the position needs them
    const queues = tracks.map((tr) => {
      const names = [];
      for (let k = 0; k < tr.spec.chunks; k++) names.push(k);
      const first = tr.store.chunkOf(stepOf(tr, index));
      if (first !== "final" && tr.spec.kind !== "points") names.sort((a, b) => (a === first ? -1 : b === first ? 1 : a - b));
      if (tr.spec.final) names.push("final");
      return names;
    });
    for (let round = 0; queues.some((q) => q.length); round++) {
      for (let k = 0; k < tracks.length; k++) {
        if (tracks[k].store.full()) { queues[k].length = 0; continue; }
        const c = queues[k].shift();
        if (c === undefined) continue;
        const got = await tracks[k].store.load(c);
        if (mine !== generation || !got) return;
        stats.chunksLoaded += 1;
        $("loaded").textContent = stats.chunksLoaded < stats.chunksTotal ? `frames ${stats.chunksLoaded}/${stats.chunksTotal} chunks loaded` : "";
      }
    }
    stats.prefetched = true; $("loaded").textContent = "";
  }

  // ---- positions -> each track's step ---------------------------------------------------------------------------
  function stepOf(tr, p) { return tr.spec.steps ? tr.spec.steps[p] : p; }
  function needed(tr, p) {
    // the chunks a track needs to draw position p (a 2-D trajectory needs every chunk up to the step's)
    const c = tr.store.chunkOf(stepOf(tr, p));
    if (tr.spec.kind !== "points" || !tr.spec.trails) return [c];
    const list = [...Array((c === "final" ? tr.spec.chunks - 1 : c) + 1).keys()];
    if (c === "final") list.push("final");
    return list;
  }
  function ready(p) { return tracks.every((tr) => needed(tr, p).every((c) => tr.store.ready(c))); }
  function prepare(p) {
    // start decoding what position p needs; resolves when all of it is decoded (undefined: a chunk not fetched yet)
    const all = [];
    for (const tr of tracks) for (const c of needed(tr, p)) { const d = tr.store.decode(c); if (d === undefined) return undefined; all.push(d); }
    return Promise.all(all);
  }

  // ---- image panels ---------------------------------------------------------------------------------------------
  function ImageView(tr, box) {
    this.tr = tr; this.canvases = []; this.notes = []; this.rowCanvas = null;
    const s = tr.spec, L = s.layout, avail = Math.max(200, (document.body.clientWidth || 900) - 20);
    // as many panels across as keep a tile at 3 screen pixels a trace pixel or more (readable on a 1,024-pixel screen)
    let across = Math.min(4, tracks.length > 1 ? tracks.length : s.panels.length);
    const fit = (a) => Math.floor((avail / a - 14) / L.width);
    while (across > 1 && fit(across) < 3) across -= 1;
    this.scale = Math.max(1, Math.min(SCALE, fit(across)));
    s.panels.forEach((p, k) => {
      const div = document.createElement("div"); div.className = "panel";
      const title = document.createElement("div"); title.className = "title";
      const range = s.channels === 3 ? " RGB, each channel" : "";
      title.innerHTML = (s.title ? `<b>${s.title}</b> ` : "") + p.title +
        ` <span class="range">[${fmt(p.low)}, ${fmt(p.high)}]${p.scale === "grey" ? range + " data range, beyond saturates" : range + " symmetric"}</span>`;
      const c = document.createElement("canvas"); c.className = "img"; c.width = L.width * this.scale; c.height = L.height * this.scale;
      c.setAttribute("role", "img"); c.setAttribute("aria-label", `${p.name}, one tile a sample`);
      c.addEventListener("mousemove", (e) => this.hover(e, k)); c.addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
      const bar = document.createElement("div"); bar.className = "bar";
      const cb = document.createElement("canvas"); cb.width = 120; cb.height = 10; const g = cb.getContext("2d");
      const lut = s.channels === 3 ? spec.luts.grey : spec.luts[p.scale];
      for (let x = 0; x < 120; x++) { const rgb = lut[Math.round(x / 119 * 254)]; g.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`; g.fillRect(x, 0, 1, 10); }
      const note = document.createElement("span");
      bar.append(fmt(p.low), cb, fmt(p.high), note);
      div.append(title, c, bar); box.append(div); this.canvases.push(c); this.notes.push(note);
    });
  }
  ImageView.prototype.colourRow = function (sheet, j) {
    // step j of a sheet, coloured through each panel's lookup table (or as RGB), onto one small canvas
    const s = this.tr.spec, L = s.layout, w = sheet.width, h = L.height;
    if (!this.rowCanvas || this.rowCanvas.width !== w) {
      this.rowCanvas = document.createElement("canvas"); this.rowCanvas.width = w; this.rowCanvas.height = h;
      this.rowImage = new ImageData(w, h); this.panelOf = new Uint8Array(w);
      for (let x = 0; x < w; x++) this.panelOf[x] = Math.min(Math.floor(x / (L.width + 1)), s.panels.length - 1);
    }
    const px = this.rowImage.data, src = sheet.values, base = j * h * w;
    if (s.channels === 3) {
      for (let k = 0; k < h * w; k++) {
        const q = 3 * (base + k), gap = src[q] === 255 && src[q + 1] === 255 && src[q + 2] === 255;
        px[4 * k] = src[q]; px[4 * k + 1] = src[q + 1]; px[4 * k + 2] = src[q + 2]; px[4 * k + 3] = gap ? 0 : 255;
      }
    } else {
      const luts = s.panels.map((p) => spec.luts[p.scale]);
      for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
        const k = y * w + x, rgb = luts[this.panelOf[x]][src[base + k]];
        px[4 * k] = rgb[0]; px[4 * k + 1] = rgb[1]; px[4 * k + 2] = rgb[2]; px[4 * k + 3] = 255;
      }
    }
    this.rowCanvas.getContext("2d").putImageData(this.rowImage, 0, 0);
    return this.rowCanvas;
  };
  ImageView.prototype.draw = function (p) {
    const tr = this.tr, s = tr.spec, L = s.layout, step = stepOf(tr, p), c = tr.store.chunkOf(step), j = tr.store.rowOf(step);
    const sheet = tr.store.get(c), sat = tr.store.docs[c].saturated[j], row = this.colourRow(sheet, j), final = step >= s.rows;
    s.panels.forEach((panel, k) => {
      const muted = !final && Boolean(s.muted[panel.name] && s.muted[panel.name].includes(step));
      const empty = (final && panel.scale !== "grey") || muted; // no noise after the last step; z unused where sigma = 0
      const g = this.canvases[k].getContext("2d"); g.imageSmoothingEnabled = false;
      g.drawImage(row, panel.x, 0, L.width, L.height, 0, 0, L.width * this.scale, L.height * this.scale);
      this.canvases[k].classList.toggle("empty", Boolean(empty)); // (an undefined force would flip the class)
      this.notes[k].textContent = panel.scale === "grey" ? ` saturated ${(100 * sat[k]).toFixed(1)}%`
        : final ? " (none after the last step)" : muted ? " not used at this step: σ = 0, so σ·z adds nothing" : "";
    });
  };
  ImageView.prototype.hover = function (e, k) {
    const tr = this.tr, s = tr.spec, L = s.layout, r = e.target.getBoundingClientRect(), tip = $("tip");
    const x = Math.floor((e.clientX - r.left - e.target.clientLeft) / this.scale), y = Math.floor((e.clientY - r.top - e.target.clientTop) / this.scale);
    const col = Math.floor(x / (L.tile_w + 1)), row = Math.floor(y / (L.tile_h + 1));
    const px = x - col * (L.tile_w + 1), py = y - row * (L.tile_h + 1), tile = row * L.columns + col;
    const step = stepOf(tr, index), c = tr.store.chunkOf(step);
    if (px >= L.tile_w || py >= L.tile_h || tile >= s.samples.length || !tr.store.ready(c)) { tip.style.display = "none"; return; }
    const sheet = tr.store.get(c), j = tr.store.rowOf(step), p = s.panels[k], at = (j * L.height + y) * sheet.width + p.x + x;
    const value = (v) => v === 255 ? "—" : fmt(p.low + v / 254 * (p.high - p.low)) + (v === 0 || v === 254 ? " (at the end of the scale)" : "");
    const shown = s.channels === 3 ? "(" + [0, 1, 2].map((m) => value(sheet.values[3 * at + m])).join(", ") + ")" : value(sheet.values[at]);
    const label = s.labels[tile] >= 0 ? ` (class ${s.labels[tile]})` : "";
    tip.textContent = `${s.title ? s.title + " · " : ""}sample #${s.samples[tile]}${label} · pixel (${py}, ${px}) · ${p.name} ≈ ${shown}`;
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; tip.style.display = "block";
  };

  // ---- 2-D point clouds -----------------------------------------------------------------------------------------
  const POINT = "#1f77b4", PRED = "#ff7f0e", TRAIL = "rgba(31,119,180,0.25)";
  function PointsView(tr, box) {
    this.tr = tr;
    const s = tr.spec, avail = Math.max(220, (document.body.clientWidth || 900) - 20);
    const across = Math.min(tracks.length, 3), side = Math.max(200, Math.min(460, Math.floor(avail / across - 14)));
    const [x0, x1, y0, y1] = s.bounds, aspect = (y1 - y0) / Math.max(x1 - x0, 1e-12);
    this.w = side; this.h = Math.max(120, Math.min(side * 1.4, Math.round(side * aspect)));
    const div = document.createElement("div"); div.className = "panel";
    const title = document.createElement("div"); title.className = "title";
    const pred = s.series.length > 1 && s.x0_mode !== "none" ? ` · <span style="color:${PRED}">${s.titles[1]}</span> as ${s.x0_mode === "arrows" ? "arrows from each point" : "ghost points"}` : "";
    title.innerHTML = (s.title ? `<b>${s.title}</b> ` : "") + `<span style="color:${POINT}">${s.titles[0]}</span>` + (s.trails ? " and its trajectory so far" : "") + pred;
    const c = document.createElement("canvas"); c.className = "img pts"; c.width = this.w; c.height = this.h;
    c.setAttribute("role", "img"); c.setAttribute("aria-label", `${s.series[0]} as points`);
    c.addEventListener("mousemove", (e) => this.hover(e)); c.addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
    const axes = document.createElement("div"); axes.className = "bar";
    axes.textContent = `x from ${fmt(x0)} to ${fmt(x1)}, y from ${fmt(y0)} to ${fmt(y1)} (fixed for the whole trace)`;
    div.append(title, c, axes); box.append(div); this.canvas = c;
    this.trail = document.createElement("canvas"); this.trail.width = this.w; this.trail.height = this.h; this.trailUpTo = -1;
  }
  PointsView.prototype.xy = function (q, k) {
    // point k of a decoded [S, N, 2] frame at offset q: canvas pixels (null if missing)
    const [x0, x1, y0, y1] = this.tr.spec.bounds, a = q[2 * k], b = q[2 * k + 1];
    if (a === MISSING || b === MISSING) return null;
    return [a / POINT_LEVELS * this.w, this.h - b / POINT_LEVELS * this.h];
  };
  PointsView.prototype.frame = function (step, series) {
    // the Uint16Array slice of one step's series (0: x_t, 1: x0_pred), or null
    const tr = this.tr, s = tr.spec, c = tr.store.chunkOf(step), all = tr.store.get(c);
    if (!all || series >= s.series.length) return null;
    const per = s.series.length * s.n * 2, j = tr.store.rowOf(step);
    return all.subarray(j * per + series * s.n * 2, j * per + (series + 1) * s.n * 2);
  };
  PointsView.prototype.extendTrail = function (upTo) {
    // the trajectories of x_t from step 0 to upTo, kept on their own canvas and extended as play goes forward
    const g = this.trail.getContext("2d"), s = this.tr.spec;
    if (upTo < this.trailUpTo || this.trailUpTo < 0) { g.clearRect(0, 0, this.w, this.h); this.trailUpTo = 0; }
    const stride = Math.max(1, Math.floor((upTo - this.trailUpTo) / 200)); // a long jump: at most ~200 segments a path
    g.strokeStyle = TRAIL; g.lineWidth = 1; g.beginPath();
    for (let a = this.trailUpTo; a < upTo; a += stride) {
      const b = Math.min(a + stride, upTo), fa = this.frame(a, 0), fb = this.frame(b, 0);
      for (let k = 0; k < s.n; k++) {
        const p = this.xy(fa, k), q = this.xy(fb, k);
        if (p && q) { g.moveTo(p[0], p[1]); g.lineTo(q[0], q[1]); }
      }
    }
    g.stroke(); this.trailUpTo = upTo;
  };
  PointsView.prototype.draw = function (p) {
    const s = this.tr.spec, step = stepOf(this.tr, p), final = step >= s.rows, g = this.canvas.getContext("2d");
    g.fillStyle = "#fff"; g.fillRect(0, 0, this.w, this.h);
    g.strokeStyle = "#eee"; g.strokeRect(0.5, 0.5, this.w - 1, this.h - 1);
    if (s.trails) { this.extendTrail(Math.min(step, s.rows - 1)); g.drawImage(this.trail, 0, 0); }
    const xt = this.frame(step, 0), x0 = final ? null : this.frame(step, 1);
    if (x0 && s.x0_mode !== "none") {
      g.strokeStyle = PRED; g.fillStyle = PRED; g.globalAlpha = s.x0_mode === "ghost" ? 0.35 : 0.8; g.lineWidth = 1;
      for (let k = 0; k < s.n; k++) {
        const a = this.xy(xt, k), b = this.xy(x0, k);
        if (!b) continue;
        if (s.x0_mode === "ghost" || !a) { g.beginPath(); g.arc(b[0], b[1], 2.5, 0, 2 * Math.PI); g.fill(); continue; }
        g.beginPath(); g.moveTo(a[0], a[1]); g.lineTo(b[0], b[1]); g.stroke();
        const ang = Math.atan2(b[1] - a[1], b[0] - a[0]); // the arrow's head at x0_pred
        g.beginPath(); g.moveTo(b[0], b[1]); g.lineTo(b[0] - 5 * Math.cos(ang - 0.4), b[1] - 5 * Math.sin(ang - 0.4));
        g.lineTo(b[0] - 5 * Math.cos(ang + 0.4), b[1] - 5 * Math.sin(ang + 0.4)); g.closePath(); g.fill();
      }
      g.globalAlpha = 1;
    }
    g.fillStyle = POINT;
    for (let k = 0; k < s.n; k++) { const a = this.xy(xt, k); if (a) g.fillRect(a[0] - 2, a[1] - 2, 4, 4); }
  };
  PointsView.prototype.hover = function (e) {
    const s = this.tr.spec, r = this.canvas.getBoundingClientRect(), tip = $("tip"), step = stepOf(this.tr, index);
    const mx = (e.clientX - r.left) * this.w / r.width, my = (e.clientY - r.top) * this.h / r.height, xt = this.frame(step, 0);
    if (!xt) { tip.style.display = "none"; return; }
    let best = -1, dist = 64; // within 8 px
    for (let k = 0; k < s.n; k++) { const a = this.xy(xt, k); if (a) { const d = (a[0] - mx) ** 2 + (a[1] - my) ** 2; if (d < dist) { dist = d; best = k; } } }
    if (best < 0) { tip.style.display = "none"; return; }
    const [bx0, bx1, by0, by1] = s.bounds, val = (f, k) => `(${fmt(bx0 + f[2 * k] / POINT_LEVELS * (bx1 - bx0))}, ${fmt(by0 + f[2 * k + 1] / POINT_LEVELS * (by1 - by0))})`;
    const x0 = step >= s.rows ? null : this.frame(step, 1), label = s.labels[best] >= 0 ? ` (class ${s.labels[best]})` : "";
    tip.textContent = `${s.title ? s.title + " · " : ""}sample #${best}${label} · ${s.series[0]} ≈ ${val(xt, best)}` + (x0 ? ` · ${s.series[1]} ≈ ${val(x0, best)}` : "");
    tip.style.left = (e.clientX + 12) + "px"; tip.style.top = (e.clientY + 12) + "px"; tip.style.display = "block";
  };

  // ---- the timeline ---------------------------------------------------------------------------------------------
  function moveCursor(p) {
    // the Streamlit page's scalar plots (plotly, same origin): move their cursor lines to position p without a rerun
    if (!spec.cursor) return;
    try {
      const gd = window.parent.document.querySelector(`.st-key-${spec.cursor.container} .js-plotly-plot`);
      const fl = gd && gd._fullLayout;
      if (!fl || !fl.shapes) return;
      const paths = gd.querySelectorAll(".layer-above .shapelayer path"), x = spec.cursor.x[p];
      fl.shapes.forEach((shape, k) => {
        const ax = fl[shape.xref.replace(/^x/, "xaxis")], path = paths[k];
        if (!ax || !path || typeof ax.l2p !== "function") return;
        const px = ax._offset + ax.l2p(ax.d2l ? ax.d2l(x) : x);
        path.setAttribute("d", path.getAttribute("d").replace(/M[-\d.e]+,([-\d.e]+)L[-\d.e]+,([-\d.e]+)/, `M${px},$1L${px},$2`));
      });
      gd.querySelectorAll(".scatterlayer .trace").forEach((t, k) => { if (k % 2 === 1) t.style.opacity = playing ? "0" : ""; }); // the 'now' dots
    } catch (e) { /* another origin, or plotly changed: the cursor follows on pause */ }
  }

  function show(p) {
    // draw position p if every track has it decoded; else start decoding and keep the frames drawn (never a blank grid)
    $("label").textContent = spec.labels[p] || "";
    $("slider").value = String(p);
    if (!ready(p)) {
      const work = prepare(p);
      if (work === undefined) { stats.unloaded += 1; return false; }
      work.then(() => { if (index === p && !playing) show(p); });
      return false;
    }
    for (const tr of tracks) tr.view.draw(p);
    moveCursor(p);
    const now = performance.now();
    if (stats.firstPaint === null) { stats.firstPaint = now; sendStep(); } // the page draws its charts and equations once this frame is up
    stats.shown.push([p, now]);
    if (stats.shown.length > 5000) stats.shown.splice(0, 1000);
    if (stats.lastScrub !== null) { stats.scrubLatencies.push(now - stats.lastScrub); stats.lastScrub = null; }
    return true;
  }

  function go(i, tell) {
    index = Math.max(0, Math.min(count - 1, i));
    stats.lastScrub = performance.now();
    show(index);
    if (tell) sendStep();
  }

  function setPlaying(on) {
    if (on && index >= count - 1) index = 0;
    playing = on; $("play").innerHTML = on ? '<span aria-hidden="true">❚❚</span> Pause' : '<span aria-hidden="true">▶</span> Play';
    owed = 0; lastTick = performance.now();
    if (!on) { show(index); sendStep(); }
  }

  function tick(now) {
    if (playing) {
      owed += (now - lastTick) * speed / 1000; lastTick = now;
      if (owed >= 1) {
        const next = index + every;
        if (next >= count) { index = count - 1; setPlaying(false); }
        else if (ready(next)) { owed = Math.min(owed - 1, 1); index = next; show(index); }
        else { owed = 1; stats.stalls += 1; prepare(next); } // not decoded (or not arrived) yet: wait on the frame shown
        const ahead = Math.min(count - 1, index + every * 12); // decode ahead of the play
        if (!ready(ahead)) prepare(ahead);
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

  function build() {
    const box = $("panels"); box.innerHTML = "";
    box.classList.toggle("compare", tracks.length > 1);
    for (const tr of tracks) tr.view = tr.spec.kind === "points" ? new PointsView(tr, box) : new ImageView(tr, box);
  }

  function setup() {
    SPEEDS.forEach((s) => $("speed").append(new Option(String(s), String(s), s === 10, s === 10)));
    EVERY.forEach((s) => $("every").append(new Option(s === 1 ? "1st" : s === 2 ? "2nd" : `${s}th`, String(s), s === 1, s === 1)));
    stats.requested = speed;
    $("speed").addEventListener("change", (e) => { speed = Number(e.target.value); stats.requested = speed; });
    $("every").addEventListener("change", (e) => { every = Number(e.target.value); });
    $("play").addEventListener("click", () => setPlaying(!playing));
    $("first").addEventListener("click", () => { if (playing) setPlaying(false); go(0, true); });
    $("last").addEventListener("click", () => { if (playing) setPlaying(false); go(count - 1, true); });
    $("back").addEventListener("click", () => { if (playing) setPlaying(false); go(index - every, true); });
    $("next").addEventListener("click", () => { if (playing) setPlaying(false); go(index + every, true); });
    let pending = null;
    $("slider").addEventListener("input", (e) => {
      if (playing) { playing = false; $("play").innerHTML = '<span aria-hidden="true">▶</span> Play'; }
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
      setSpeed: (s) => { speed = s; stats.requested = s; }, setEvery: (k) => { every = k; }, state: () => ({ index, playing, speed, every, count }),
      setKeptBytes: (n) => { keptBytes = n; for (const tr of tracks) tr.store.trim(null); }, kept: () => tracks.map((tr) => tr.store.bytes) };
    requestAnimationFrame(tick);
  }

  const sameFrames = (a, b) => a.tracks.length === b.tracks.length && a.tracks.every((t, k) => t.frames === b.tracks[k].frames);
  window.addEventListener("message", (event) => {
    const d = event.data;
    if (!d || d.type !== "streamlit:render") return;
    const next = d.args.spec, first = !started;
    started = true;
    if (spec && sameFrames(spec, next)) {
      // same frames: keep playing where we are; display settings (2-D arrows, trails) and the cursor may have changed, and
      // the timeline (Compare lined up by another noise level measure: other positions, labels and steps of each track)
      const redraw = JSON.stringify(next.tracks.map((t) => [t.x0_mode, t.trails, t.title])) !== JSON.stringify(spec.tracks.map((t) => [t.x0_mode, t.trails, t.title]));
      const timeline = JSON.stringify([next.positions, next.labels, next.tracks.map((t) => t.steps)])
        !== JSON.stringify([spec.positions, spec.labels, spec.tracks.map((t) => t.steps)]);
      next.tracks.forEach((t, k) => { tracks[k].spec = t; tracks[k].store.track = t; });
      spec = next;
      if (timeline) { count = spec.positions; $("slider").max = String(count - 1); index = Math.min(spec.step, count - 1); }
      if (redraw) build();
      if (redraw || timeline) { show(index); setHeight(); }
      return;
    }
    spec = next; count = spec.positions;
    tracks = spec.tracks.map((t) => ({ spec: t, store: new Store(t), view: null }));
    stats.chunksLoaded = 0; stats.prefetched = false; stats.chunksTotal = tracks.reduce((n, t) => n + t.spec.chunks + (t.spec.final ? 1 : 0), 0);
    if (first || index >= count) index = Math.min(spec.step, count - 1);
    $("slider").max = String(count - 1);
    generation += 1; // before the first show: the chunks it fetches belong to these frames
    build(); show(index); setHeight();
    loadAll(generation);
  });
  setup();
  send("streamlit:componentReady", { apiVersion: 1 });
  window.addEventListener("resize", () => { if (spec) { build(); show(index); setHeight(); } });
})();
