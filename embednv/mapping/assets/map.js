/* embednv map.html: the corpus map drawn on a 2-D canvas. Offline: it loads and fetches nothing.
 * Data come from the JSON block #map-data (written by embednv/mapping/render_html.py). Strings
 * from it (ids, labels, terms, note text) reach the page only through textContent or canvas text,
 * never as markup. window.embednvMap is the scripting API (the browser tests drive it). */
(function () {
  "use strict";
  const t0 = performance.now();
  const D = JSON.parse(document.getElementById("map-data").textContent);
  const $ = (id) => document.getElementById(id);
  const TYPES = { uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array, float32: Float32Array };

  function decode(a) {  // base64 little-endian -> typed array
    const bin = atob(a.b64), bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return new TYPES[a.dtype](bytes.buffer);
  }

  const n = D.n, xy = decode(D.xy), cluster = decode(D.cluster), ids = D.ids, texts = D.texts;
  const clusters = D.clusters, L = D.labels, CG = D.groups;  // CG: the coarse level, groups of clusters
  // Above the point budget only a sample is drawn: N notes on the map, n drawn; U: the others' ids and clusters.
  const N = D.n_total || n, U = D.undrawn, undrawnCluster = U ? decode(U.cluster) : null;
  const labelCode = L ? decode(L.codes) : null;
  const FADED = [214, 214, 214], OUTLINE = [40, 40, 40];

  // ---- view: data (x, y) <-> CSS pixels of the plot; y grows upwards -----------------------
  const plot = $("plot"), canvas = $("points"), overlay = $("overlay"), tooltip = $("tooltip");
  const ctx = canvas.getContext("2d"), octx = overlay.getContext("2d");
  let W = 1, H = 1, dpr = 1, image = null;
  const view = { cx: 0, cy: 0, scale: 1 };
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i], y = xy[2 * i + 1];
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  if (!(x1 >= x0)) { x0 = y0 = -1; x1 = y1 = 1; }
  const toScreen = (x, y) => [(x - view.cx) * view.scale + W / 2, H / 2 - (y - view.cy) * view.scale];
  const toData = (sx, sy) => [view.cx + (sx - W / 2) / view.scale, view.cy - (sy - H / 2) / view.scale];

  function resetView() {
    view.cx = (x0 + x1) / 2; view.cy = (y0 + y1) / 2;
    view.scale = 0.94 * Math.min(W / Math.max(x1 - x0, 1e-9), H / Math.max(y1 - y0, 1e-9));
    schedule();
  }

  // ---- a uniform grid over the data, for hover and click hit tests -------------------------
  const G = Math.max(1, Math.min(1024, Math.ceil(Math.sqrt(n / 4))));
  const gw = (x1 - x0) / G || 1, gh = (y1 - y0) / G || 1;
  const cellStart = new Uint32Array(G * G + 1), cellPoints = new Uint32Array(n);
  (function buildGrid() {
    const cell = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const cx = Math.min(G - 1, Math.floor((xy[2 * i] - x0) / gw)), cy = Math.min(G - 1, Math.floor((xy[2 * i + 1] - y0) / gh));
      cell[i] = cy * G + cx; cellStart[cell[i] + 1]++;
    }
    for (let c = 0; c < G * G; c++) cellStart[c + 1] += cellStart[c];
    const fill = cellStart.slice(0, G * G);
    for (let i = 0; i < n; i++) cellPoints[fill[cell[i]]++] = i;
  })();

  function nearest(sx, sy, radiusPx) {  // the visible point nearest (sx, sy) within radiusPx, or -1
    const [x, y] = toData(sx, sy), r = radiusPx / view.scale;
    const ca = Math.max(0, Math.floor((x - r - x0) / gw)), cb = Math.min(G - 1, Math.floor((x + r - x0) / gw));
    const ra = Math.max(0, Math.floor((y - r - y0) / gh)), rb = Math.min(G - 1, Math.floor((y + r - y0) / gh));
    let best = -1, bestD = r * r;
    for (let row = ra; row <= rb; row++) {
      for (let c = row * G + ca, end = row * G + cb; c <= end; c++) {
        for (let j = cellStart[c]; j < cellStart[c + 1]; j++) {
          const i = cellPoints[j];
          if (hidden[group[i]]) continue;
          const dx = xy[2 * i] - x, dy = xy[2 * i + 1] - y, d = dx * dx + dy * dy;
          if (d <= bestD) { bestD = d; best = i; }
        }
      }
    }
    return best;
  }

  // ---- colour groups: clusters or known labels ---------------------------------------------
  let colourBy = "cluster", groups = [], group = cluster, rgb = [], hidden = new Uint8Array(0);
  const hexRgb = (h) => [1, 3, 5].map((k) => parseInt(h.slice(k, k + 2), 16));

  function setColourBy(mode) {
    if (mode !== "cluster" && !(mode === "label" && L) && !(mode === "group" && CG)) throw new Error("cannot colour by " + mode);
    colourBy = mode;
    if (mode === "cluster") {
      groups = clusters; group = cluster;
    } else if (mode === "group") {
      groups = CG; group = new Uint16Array(n);
      for (let i = 0; i < n; i++) group[i] = clusters[cluster[i]].group;
    } else {
      groups = L.groups; group = new Uint16Array(n);
      for (let i = 0; i < n; i++) group[i] = L.group_of_value[labelCode[i]];
    }
    rgb = groups.map((g) => hexRgb(g.colour));
    hidden = new Uint8Array(groups.length);
    $("colour-by").value = mode;
    $("legend-title").textContent = mode === "cluster" ? "clusters" : mode === "group" ? "groups of clusters" : "labels";
    buildLegend(); schedule();
  }

  function buildLegend() {
    const ul = $("legend");
    ul.replaceChildren();
    groups.forEach((g, k) => {
      const li = document.createElement("li"), box = document.createElement("input");
      const swatch = document.createElement("span"), name = document.createElement("button");
      const count = document.createElement("span");
      li.dataset.group = String(k);
      box.type = "checkbox"; box.checked = !hidden[k]; box.title = "show or hide";
      box.addEventListener("change", () => { hidden[k] = box.checked ? 0 : 1; schedule(); });
      swatch.className = "swatch"; swatch.style.background = g.colour;
      name.type = "button"; name.className = "name"; name.textContent = g.name;
      name.title = colourBy === "cluster" ? "show this cluster's panel"
        : colourBy === "group" ? "show the panel of this group's largest cluster" : "find the notes with this label";
      name.addEventListener("click", () => {
        if (colourBy === "cluster") openCluster(k);
        else if (colourBy === "group") openCluster(g.clusters[0]);
        else if (g.value != null) setSearch(g.value);
      });
      count.className = "count"; count.textContent = g.size.toLocaleString("en-US");
      li.append(box, swatch, name, count);
      ul.append(li);
    });
    markOpen();
  }

  // ---- drawing: points stamped into an ImageData buffer, cluster names on top ---------------
  function disc(d) {  // pixel offsets of a dot d device pixels wide
    const off = [], r = d / 2, c = (d - 1) / 2;
    for (let dy = 0; dy < d; dy++) for (let dx = 0; dx < d; dx++) {
      if (d <= 3 || (dx - c) ** 2 + (dy - c) ** 2 <= r * r + 0.25) off.push(dx - Math.floor(d / 2), dy - Math.floor(d / 2));
    }
    return Int32Array.from(off);
  }

  function stamp(px, sx, sy, off, col, a) {  // alpha a in 0..256
    const r = col[0], g = col[1], b = col[2];
    for (let j = 0; j < off.length; j += 2) {
      const x = sx + off[j], y = sy + off[j + 1];
      if (x < 0 || y < 0 || x >= image.width || y >= image.height) continue;
      const o = (y * image.width + x) * 4;
      px[o] += ((r - px[o]) * a) >> 8; px[o + 1] += ((g - px[o + 1]) * a) >> 8; px[o + 2] += ((b - px[o + 2]) * a) >> 8;
    }
  }

  let pending = false;
  function schedule() { if (!pending) { pending = true; requestAnimationFrame(() => { pending = false; draw(); }); } }

  function draw() {
    const cw = canvas.width, ch = canvas.height;
    if (!image || image.width !== cw || image.height !== ch) image = ctx.createImageData(cw, ch);
    const px = image.data;
    px.fill(255);
    const filtered = match !== null || selected !== null;
    const s = view.scale * dpr, ox = cw / 2 - view.cx * s, oy = ch / 2 + view.cy * s;
    const size = Math.max(1, Math.round(D.point_size * dpr)), dot = disc(size), ring = disc(size + Math.round(3 * dpr));
    const front = [];
    for (let i = 0; i < n; i++) {
      const k = group[i];
      if (hidden[k]) continue;
      const sx = Math.round(xy[2 * i] * s + ox), sy = Math.round(oy - xy[2 * i + 1] * s);
      if (sx < -size || sy < -size || sx > cw + size || sy > ch + size) continue;
      if (!filtered) { stamp(px, sx, sy, dot, rgb[k], 192); continue; }
      if ((match === null || match[i]) && (selected === null || selected[i])) front.push(i);
      else stamp(px, sx, sy, dot, FADED, 160);
    }
    for (const i of front) {  // the emphasised points last, opaque, with a dark rim
      const sx = Math.round(xy[2 * i] * s + ox), sy = Math.round(oy - xy[2 * i + 1] * s);
      stamp(px, sx, sy, ring, OUTLINE, 256);
      stamp(px, sx, sy, dot, rgb[group[i]], 256);
    }
    ctx.putImageData(image, 0, 0);
    if (colourBy === "group") {  // coarse regions named in large type; the clusters' names follow
      ctx.font = `bold ${Math.round(15 * dpr)}px system-ui, sans-serif`;
      ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.lineJoin = "round";
      ctx.lineWidth = 4 * dpr; ctx.strokeStyle = "rgba(255,255,255,0.9)"; ctx.fillStyle = "#000";
      CG.forEach((g, k) => {
        if (!g.median || hidden[k]) return;
        const sx = g.median[0] * s + ox, sy = oy - g.median[1] * s - 14 * dpr;
        ctx.strokeText(g.name, sx, sy); ctx.fillText(g.name, sx, sy);
      });
    }
    if (colourBy === "cluster" || colourBy === "group") {
      ctx.font = `${Math.round(11 * dpr)}px system-ui, sans-serif`;
      ctx.textAlign = "center"; ctx.textBaseline = "middle"; ctx.lineJoin = "round";
      ctx.lineWidth = 3 * dpr; ctx.strokeStyle = "rgba(255,255,255,0.85)"; ctx.fillStyle = "#111";
      clusters.forEach((c, k) => {
        if (!c.median || hidden[colourBy === "group" ? c.group : k]) return;
        const sx = c.median[0] * s + ox, sy = oy - c.median[1] * s;
        ctx.strokeText(c.name, sx, sy); ctx.fillText(c.name, sx, sy);
      });
    }
    drawOverlay();
  }

  function resize() {
    const r = plot.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1; W = Math.max(1, r.width); H = Math.max(1, r.height);
    for (const c of [canvas, overlay]) { c.width = Math.round(W * dpr); c.height = Math.round(H * dpr); }
  }

  // ---- hover and the overlay (hovered point, box or lasso being drawn) ----------------------
  let hover = -1, shape = null;  // shape: {kind: "box"|"lasso", pts: [[sx, sy], ...]} in CSS pixels
  function drawOverlay() {
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, W, H);
    if (hover >= 0) {
      const [sx, sy] = toScreen(xy[2 * hover], xy[2 * hover + 1]);
      octx.beginPath(); octx.arc(sx, sy, D.point_size / 2 + 4, 0, 2 * Math.PI);
      octx.lineWidth = 2; octx.strokeStyle = "#111"; octx.stroke();
    }
    if (shape && shape.pts.length > 1) {
      octx.beginPath();
      const p = shape.pts;
      if (shape.kind === "box") octx.rect(p[0][0], p[0][1], p[p.length - 1][0] - p[0][0], p[p.length - 1][1] - p[0][1]);
      else { octx.moveTo(p[0][0], p[0][1]); for (const q of p) octx.lineTo(q[0], q[1]); octx.closePath(); }
      octx.fillStyle = "rgba(42,111,219,0.08)"; octx.fill();
      octx.setLineDash([5, 4]); octx.lineWidth = 1.5; octx.strokeStyle = "#2a6fdb"; octx.stroke(); octx.setLineDash([]);
    }
  }

  function line(parent, text, cls) {
    const div = document.createElement("div");
    div.textContent = text;
    if (cls) div.className = cls;
    parent.append(div);
  }

  function showTooltip(i, sx, sy) {
    hover = i;
    if (i < 0) { tooltip.hidden = true; drawOverlay(); return; }
    tooltip.replaceChildren();
    line(tooltip, "id " + ids[i]);
    line(tooltip, "cluster " + clusters[cluster[i]].name);
    if (L) line(tooltip, "label " + (labelCode[i] < L.values.length ? L.values[labelCode[i]] : "(none)"));
    if (texts && texts[i]) line(tooltip, texts[i], "text");
    tooltip.hidden = false;
    const left = sx + 14 + tooltip.offsetWidth > W ? sx - 14 - tooltip.offsetWidth : sx + 14;
    tooltip.style.left = Math.max(0, left) + "px";
    tooltip.style.top = Math.max(0, Math.min(sy + 14, H - tooltip.offsetHeight)) + "px";
    drawOverlay();
  }

  // ---- the cluster panel ---------------------------------------------------------------------
  let openK = -1;
  function openCluster(k) {
    const c = clusters[k];
    if (!c) throw new Error("no cluster " + k);
    openK = k;
    $("panel-title").textContent = c.name;
    $("panel-group").hidden = !(CG && c.group != null);
    $("panel-group").textContent = CG && c.group != null ? `in ${CG[c.group].name}` : "";
    $("panel-size").textContent = c.size.toLocaleString("en-US");
    $("panel-share").textContent = (100 * c.size / Math.max(N, 1)).toFixed(1) + "%";
    $("panel-terms").textContent = c.terms.length ? c.terms.join(", ") : "(no note text given)";
    const ol = $("panel-exemplars");
    ol.replaceChildren();
    for (const id of c.exemplars) {
      const li = document.createElement("li"), b = document.createElement("button");
      b.type = "button"; b.textContent = id; b.title = "find this note on the map";
      b.addEventListener("click", () => setSearch(id));
      li.append(b); ol.append(li);
    }
    const ul = $("panel-labels");
    ul.replaceChildren();
    $("panel-labels-box").hidden = !c.labels;
    for (const [label, count] of c.labels || []) {
      const li = document.createElement("li");
      li.textContent = `${label}: ${count.toLocaleString("en-US")} (${(100 * count / Math.max(c.size, 1)).toFixed(0)}%)`;
      ul.append(li);
    }
    $("panel").hidden = false;
    markOpen();
  }
  function closePanel() { openK = -1; $("panel").hidden = true; markOpen(); }
  function markOpen() {
    for (const li of $("legend").children) li.classList.toggle("open", colourBy === "cluster" && Number(li.dataset.group) === openK);
  }

  // ---- search: an id (exact), a cluster's top term or a known label (substring) --------------
  let match = null, matchInfo = null;
  let idIndex = null, undrawnIndex = null;
  function findUndrawn(q) {  // a note that is on the map but not drawn: its position in U, or -1
    if (!U) return -1;
    if (!undrawnIndex) { undrawnIndex = new Map(); U.ids.forEach((id, j) => { const key = id.toLowerCase(); if (!undrawnIndex.has(key)) undrawnIndex.set(key, j); }); }
    const j = undrawnIndex.get(q);
    return j === undefined ? -1 : j;
  }
  function search(query) {
    const q = String(query).trim().toLowerCase();
    if (!q) { match = null; matchInfo = null; $("match-count").textContent = ""; schedule(); return null; }
    if (!idIndex) { idIndex = new Map(); ids.forEach((id, i) => { const key = id.toLowerCase(); if (!idIndex.has(key)) idIndex.set(key, []); idIndex.get(key).push(i); }); }
    const m = new Uint8Array(n);
    const byId = idIndex.get(q) || [];
    const u = byId.length ? -1 : findUndrawn(q);
    for (const i of byId) m[i] = 1;
    const termClusters = new Uint8Array(clusters.length);
    clusters.forEach((c, k) => { if (c.terms.some((t) => t.toLowerCase().includes(q))) termClusters[k] = 1; });
    const labelHit = L ? new Uint8Array(L.values.length + 1) : null;
    if (L) L.values.forEach((v, j) => { if (v.toLowerCase().includes(q)) labelHit[j] = 1; });
    let count = 0, byLabel = 0;
    for (let i = 0; i < n; i++) {
      if (termClusters[cluster[i]]) m[i] = 1;
      if (labelHit && labelHit[labelCode[i]]) { m[i] = 1; byLabel++; }
      count += m[i];
    }
    match = m;
    matchInfo = {
      query: q, count: count, ids: byId.length,
      clusters: Array.from(termClusters.keys()).filter((k) => termClusters[k]),
      labels: L ? L.values.filter((v, j) => labelHit[j]) : [], labelled: byLabel,
      undrawn: u >= 0 ? { id: U.ids[u], cluster: undrawnCluster[u] } : null,
    };
    const parts = [];
    if (byId.length) parts.push(`id ${byId.length}`);
    if (u >= 0) parts.push(`id ${U.ids[u]}: not drawn; in cluster ${clusters[undrawnCluster[u]].name}`);
    if (matchInfo.clusters.length) parts.push(`term: ${matchInfo.clusters.length} cluster${matchInfo.clusters.length === 1 ? "" : "s"}`);
    if (matchInfo.labels.length) parts.push(`label: ${matchInfo.labels.length} label${matchInfo.labels.length === 1 ? "" : "s"}`);
    $("match-count").textContent = `${count.toLocaleString("en-US")} match${count === 1 ? "" : "es"}` + (parts.length ? ` (${parts.join("; ")})` : "");
    if (u >= 0) openCluster(undrawnCluster[u]);
    schedule();
    return matchInfo;
  }
  function setSearch(q) { $("search").value = q; return search(q); }
  let searchTimer = 0;
  $("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(() => search($("search").value), 120); });
  $("search").addEventListener("keydown", (e) => { if (e.key === "Enter") { clearTimeout(searchTimer); search($("search").value); } });

  // ---- selection: box, lasso or a list of points; CSV export -------------------------------
  let selected = null, selectedCount = 0, lastShape = null;
  function setSelection(mask, how) {
    selected = mask; selectedCount = 0;
    if (mask) for (let i = 0; i < n; i++) selectedCount += mask[i];
    lastShape = mask ? how : null;
    $("selection").hidden = !mask;
    $("export-region").hidden = !(mask && (how.kind === "box" || how.kind === "lasso"));
    const of = N > n ? " of the drawn points (the region JSON covers every note)" : "";
    $("selection-count").textContent = mask ? `${selectedCount.toLocaleString("en-US")} selected${of}` : "";
    schedule();
    return selectedCount;
  }
  function selectWhere(inside, how) {
    const m = new Uint8Array(n);
    for (let i = 0; i < n; i++) if (!hidden[group[i]] && inside(xy[2 * i], xy[2 * i + 1])) m[i] = 1;
    return setSelection(m, how);
  }
  function selectBox(ax, ay, bx, by) {  // data coordinates, any two opposite corners
    const xa = Math.min(ax, bx), xb = Math.max(ax, bx), ya = Math.min(ay, by), yb = Math.max(ay, by);
    return selectWhere((x, y) => x >= xa && x <= xb && y >= ya && y <= yb, { kind: "box", rect: [xa, ya, xb, yb] });
  }
  function selectLasso(poly) {  // data coordinates [[x, y], ...]; even-odd rule
    let xa = Infinity, xb = -Infinity, ya = Infinity, yb = -Infinity;
    for (const [x, y] of poly) { xa = Math.min(xa, x); xb = Math.max(xb, x); ya = Math.min(ya, y); yb = Math.max(yb, y); }
    const inside = (x, y) => {
      if (x < xa || x > xb || y < ya || y > yb) return false;
      let hit = false;
      for (let a = 0, b = poly.length - 1; a < poly.length; b = a++) {
        const [xi, yi] = poly[a], [xj, yj] = poly[b];
        if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) hit = !hit;
      }
      return hit;
    };
    return selectWhere(inside, { kind: "lasso", polygon: poly });
  }
  function selectIndices(list) {
    const m = new Uint8Array(n);
    for (const i of list) m[i] = 1;
    return setSelection(m, { kind: "indices" });
  }
  const selectedIndices = () => { const out = []; if (selected) for (let i = 0; i < n; i++) if (selected[i]) out.push(i); return out; };

  // Quote every field; a text field a spreadsheet would run as a formula gets a leading ' so it
  // shows as text: one starting with tab or CR, or whose first visible character, NFKC-normalised
  // (full-width ＝ is =), is = + - @, leading spaces and invisible characters skipped as
  // spreadsheets skip them (the rule of embednv/text_safety.py). Plain numbers (-5) stay as they are.
  function formulaLike(s) {
    if (/^[\t\r]/.test(s)) return true;
    const rest = s.replace(/^[\s\p{Cc}\p{Cf}]+/u, "");
    if (!rest) return false;
    return /^[=+\-@]/.test(String.fromCodePoint(rest.codePointAt(0)).normalize("NFKC"));
  }
  function csvField(value) {
    let s = String(value);
    if (formulaLike(s) && !/^[+-]?\d+(\.\d+)?$/.test(s)) s = "'" + s;
    return '"' + s.replace(/"/g, '""') + '"';
  }
  function selectionCsv() {
    const head = ["id", "cluster"].concat(L ? ["label"] : []);
    const rows = [head.map(csvField).join(",")];
    for (const i of selectedIndices()) {
      const row = [ids[i], cluster[i]];
      if (L) row.push(labelCode[i] < L.values.length ? L.values[labelCode[i]] : "");
      rows.push(row.map(csvField).join(","));
    }
    return rows.join("\r\n") + "\r\n";
  }
  // The selected region in map coordinates, for `embednv cohort MAP_DIR --region region.json`: every
  // note inside it, drawn or not (a box keeps its edges, as here; a lasso is read with the same even-odd rule).
  function regionJson() {
    if (!lastShape || (lastShape.kind !== "box" && lastShape.kind !== "lasso")) return null;
    const r = lastShape.rect, poly = lastShape.kind === "box" ? [[r[0], r[1]], [r[2], r[1]], [r[2], r[3]], [r[0], r[3]]] : lastShape.polygon;
    return JSON.stringify({ embednv_region: 1, shape: lastShape.kind, polygon: poly, drawn_selected: selectedCount, drawn: n, notes: N }) + "\n";
  }
  function download(text, type, name) {
    const url = URL.createObjectURL(new Blob([text], { type: type }));
    const a = document.createElement("a");
    a.href = url; a.download = name;
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }
  $("export-csv").addEventListener("click", () => download(selectionCsv(), "text/csv;charset=utf-8", "selected-ids.csv"));
  $("export-region").addEventListener("click", () => download(regionJson(), "application/json", "region.json"));
  $("clear-selection").addEventListener("click", () => setSelection(null));

  // ---- pointer: pan, zoom, click, box and lasso --------------------------------------------
  let mode = "pan", drag = null;
  function setMode(m) {
    mode = m;
    for (const k of ["pan", "box", "lasso"]) $("mode-" + k).classList.toggle("on", k === m);
    overlay.classList.toggle("select", m !== "pan");
  }
  for (const k of ["pan", "box", "lasso"]) $("mode-" + k).addEventListener("click", () => setMode(k));
  $("reset-view").addEventListener("click", resetView);
  overlay.addEventListener("dblclick", resetView);
  const local = (e) => { const r = overlay.getBoundingClientRect(); return [e.clientX - r.left, e.clientY - r.top]; };

  overlay.addEventListener("pointerdown", (e) => {
    if (e.button !== 0) return;
    overlay.setPointerCapture(e.pointerId);
    const p = local(e);
    drag = { start: p, last: p, moved: false, cx: view.cx, cy: view.cy };
    if (mode !== "pan") shape = { kind: mode, pts: [p] };
    showTooltip(-1);
  });
  overlay.addEventListener("pointermove", (e) => {
    const p = local(e);
    if (!drag) { showTooltip(nearest(p[0], p[1], Math.max(D.point_size, 8)), p[0], p[1]); return; }
    if (Math.hypot(p[0] - drag.start[0], p[1] - drag.start[1]) > 3) drag.moved = true;
    if (mode === "pan") {
      view.cx = drag.cx - (p[0] - drag.start[0]) / view.scale; view.cy = drag.cy + (p[1] - drag.start[1]) / view.scale;
      schedule();
    } else if (mode === "box") { shape.pts = [drag.start, p]; drawOverlay(); }
    else if (Math.hypot(p[0] - drag.last[0], p[1] - drag.last[1]) >= 2) { shape.pts.push(p); drawOverlay(); }
    drag.last = p;
  });
  overlay.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const p = local(e), moved = drag.moved;
    drag = null;
    if (!moved) {  // a click: a point opens its cluster's panel
      shape = null;
      const i = nearest(p[0], p[1], Math.max(D.point_size, 8));
      if (i >= 0) openCluster(cluster[i]);
      drawOverlay();
      return;
    }
    if (mode === "box") {
      const [ax, ay] = toData(...shape.pts[0]), [bx, by] = toData(...p);
      selectBox(ax, ay, bx, by);
    } else if (mode === "lasso" && shape.pts.length >= 3) {
      selectLasso(shape.pts.map((q) => toData(q[0], q[1])));
    }
    shape = null; drawOverlay();
  });
  overlay.addEventListener("pointerleave", () => { if (!drag) showTooltip(-1); });
  overlay.addEventListener("wheel", (e) => {
    e.preventDefault();
    const p = local(e), [x, y] = toData(p[0], p[1]);
    view.scale *= Math.exp(-e.deltaY * (e.deltaMode === 1 ? 0.05 : 0.0015));
    view.cx = x - (p[0] - W / 2) / view.scale; view.cy = y + (p[1] - H / 2) / view.scale;
    schedule();
  }, { passive: false });
  $("panel-close").addEventListener("click", closePanel);
  $("colour-by").addEventListener("change", () => setColourBy($("colour-by").value));

  // ---- start -----------------------------------------------------------------------------------
  $("title").textContent = D.title;
  if (N > n) {
    $("drawn-note").hidden = false;
    $("drawn-note").textContent = `drawn: ${n.toLocaleString("en-US")} of ${N.toLocaleString("en-US")} notes (each cluster's share, every exemplar)`;
  }
  if (CG) {
    const opt = document.createElement("option");
    opt.value = "group"; opt.textContent = "group of clusters";
    $("colour-by").append(opt);
  }
  if (L) {
    const opt = document.createElement("option");
    opt.value = "label"; opt.textContent = "known label";
    $("colour-by").append(opt);
  }
  if (!CG && !L) $("colour-label").hidden = true;
  resize();
  setColourBy("cluster");
  resetView();
  new ResizeObserver(() => { const s = view.scale, w = W; resize(); view.scale = s * (W / w || 1); draw(); }).observe(plot);
  draw();

  window.embednvMap = {
    n: n,
    loadMs: performance.now() - t0,  // parse, decode and first draw, after the page was read
    ready: true,
    toScreen: (x, y) => { const r = overlay.getBoundingClientRect(), [sx, sy] = toScreen(x, y); return [r.left + sx, r.top + sy]; },
    toData: (cx, cy) => { const r = overlay.getBoundingClientRect(); return toData(cx - r.left, cy - r.top); },
    search: setSearch,
    matches: () => { const out = []; if (match) for (let i = 0; i < n; i++) if (match[i]) out.push(i); return out; },
    matchInfo: () => matchInfo,
    openCluster: openCluster,
    closePanel: closePanel,
    selectBox: selectBox,
    selectLasso: selectLasso,
    selectIndices: selectIndices,
    clearSelection: () => setSelection(null),
    selected: selectedIndices,
    selection: () => lastShape,
    selectionCsv: selectionCsv,
    regionJson: regionJson,
    nTotal: N,
    setColourBy: setColourBy,
    colourBy: () => colourBy,
    setMode: setMode,
    redraw: draw,
  };
  document.body.dataset.ready = "1";
})();
