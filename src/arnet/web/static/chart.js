// Small SVG charts drawn by the page itself (no library, nothing from the network): score
// curves over segments or frames, with shaded spans (ground truth, an alert) and a threshold.
"use strict";

const charts = (() => {
  const NS = "http://www.w3.org/2000/svg";

  function svg(tag, attrs) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    return node;
  }

  // About `count` round tick values between lo and hi.
  function ticks(lo, hi, count) {
    if (!(hi > lo)) return [lo];
    const raw = (hi - lo) / count;
    const power = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
      out.push(Number(v.toPrecision(12)));
    }
    return out;
  }

  function label(value) {
    return Math.abs(value) >= 1e4 ? value.toExponential(1) : String(Number(value.toPrecision(4)));
  }

  // The score axis of a chart: the range of the scores and of the lines drawn across them
  // (thresholds), with a margin, in steps of 0.05 within [0, 1]. Scores that stay between 0.46
  // and 0.76 then fill the chart, and a camera hovering just above its threshold shows it,
  // instead of a flat line across a 0-1 axis.
  function scoreRange(values, marks) {
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of values.concat(marks || [])) {
      if (v === null || v === undefined || !Number.isFinite(v)) continue;
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    if (!(hi >= lo)) return { ymin: 0, ymax: 1 };
    const pad = Math.max(0.1 * (hi - lo), 0.02);
    let ymin = Math.max(0, Math.floor((lo - pad) * 20) / 20);
    let ymax = Math.min(1, Math.ceil((hi + pad) * 20) / 20);
    if (ymax - ymin < 0.1) { // never narrower than 0.1: noise must not look like a signal
      ymin = Math.max(0, Math.min(ymin, ymax - 0.1));
      ymax = Math.min(1, ymin + 0.1);
    }
    return { ymin: Number(ymin.toFixed(2)), ymax: Number(ymax.toFixed(2)) };
  }

  // opts: {width, height, xmin, xmax, ymin, ymax, series: [{xs, ys, cls, step, name}],
  //        bands: [{x0, x1, cls}], hlines: [{y, cls, label}], xlabel, ylabel, title}
  // `step`: ys[i] holds from xs[i] to xs[i + 1] (the last to `xmax`), as segment scores do.
  // The chart is drawn `width` x `height` and shown at most that wide (narrower on a narrow
  // screen), so that its text keeps its size.
  function line(opts) {
    const W = opts.width || 640;
    const H = opts.height || 200;
    const series = opts.series || [];
    const allX = series.flatMap((s) => s.xs);
    const allY = series.flatMap((s) => s.ys).filter((y) => y !== null && Number.isFinite(y));
    const xmin = opts.xmin !== undefined ? opts.xmin : Math.min(...allX, 0);
    let xmax = opts.xmax !== undefined ? opts.xmax : Math.max(...allX, 1);
    if (!(xmax > xmin)) xmax = xmin + 1;
    const ymin = opts.ymin !== undefined ? opts.ymin : Math.min(...allY, 0);
    let ymax = opts.ymax !== undefined ? opts.ymax : Math.max(...allY, 1);
    if (!(ymax > ymin)) ymax = ymin + 1;
    const xticks = ticks(xmin, xmax, 6);
    const xtext = (x) => (opts.xformat ? opts.xformat(x) : label(x));
    // Room on the right for half the last x label, which is centred on its tick ("1200").
    const lastText = xticks.length ? xtext(xticks[xticks.length - 1]) : "";
    const right = Math.max(10, Math.ceil(3.6 * lastText.length) + 4);
    const m = { left: 46, right, top: opts.title ? 22 : 10, bottom: opts.xlabel ? 36 : 24 };
    const px = (x) => m.left + ((x - xmin) / (xmax - xmin)) * (W - m.left - m.right);
    const py = (y) => H - m.bottom - ((y - ymin) / (ymax - ymin)) * (H - m.top - m.bottom);

    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
    root.style.maxWidth = W + "px"; // (CSSOM, which the page's content policy allows)
    if (opts.title) {
      const t = svg("text", { x: m.left, y: 15, class: "chart-title" });
      t.textContent = opts.title;
      root.append(t);
    }
    for (const band of opts.bands || []) {
      const x0 = px(Math.max(band.x0, xmin));
      const x1 = px(Math.min(band.x1, xmax));
      if (x1 <= x0) continue;
      root.append(svg("rect", {
        x: x0, y: m.top, width: x1 - x0, height: H - m.top - m.bottom, class: band.cls || "band",
      }));
    }
    for (const y of ticks(ymin, ymax, 4)) {
      root.append(svg("line", { x1: m.left, x2: W - m.right, y1: py(y), y2: py(y), class: "grid" }));
      const t = svg("text", { x: m.left - 4, y: py(y) + 4, class: "tick", "text-anchor": "end" });
      t.textContent = label(y);
      root.append(t);
    }
    for (const x of xticks) {
      root.append(svg("line", { x1: px(x), x2: px(x), y1: m.top, y2: H - m.bottom, class: "grid" }));
      const t = svg("text", { x: px(x), y: H - m.bottom + 14, class: "tick", "text-anchor": "middle" });
      t.textContent = xtext(x);
      root.append(t);
    }
    root.append(svg("rect", {
      x: m.left, y: m.top, width: W - m.left - m.right, height: H - m.top - m.bottom, class: "frame",
    }));
    const labels = []; // drawn over the curves
    for (const [i, h] of (opts.hlines || []).entries()) {
      if (h.y === null || h.y === undefined || !(h.y >= ymin && h.y <= ymax)) continue;
      root.append(svg("line", { x1: m.left, x2: W - m.right, y1: py(h.y), y2: py(h.y), class: h.cls || "threshold" }));
      if (h.label) { // the first line's name above it, the next ones' below theirs
        const t = svg("text", {
          x: W - m.right - 3, y: py(h.y) + (i === 0 ? -3 : 11), class: "line-label " + (h.cls || "threshold") + "-label",
          "text-anchor": "end",
        });
        t.textContent = h.label;
        labels.push(t);
      }
    }
    for (const s of series) {
      const d = [];
      for (let i = 0; i < s.xs.length; i++) {
        const y = s.ys[i];
        if (y === null || !Number.isFinite(y)) continue;
        const x = px(s.xs[i]);
        d.push((d.length ? "L" : "M") + x.toFixed(1) + " " + py(y).toFixed(1));
        if (s.step) {
          const next = i + 1 < s.xs.length ? s.xs[i + 1] : (s.end !== undefined ? s.end : xmax);
          d.push("L" + px(next).toFixed(1) + " " + py(y).toFixed(1));
        }
      }
      const path = svg("path", { d: d.join(""), class: "series " + (s.cls || "") });
      if (s.name) path.setAttribute("data-name", s.name);
      root.append(path);
      // A few points (an evaluation every N iterations) are marked, so one point still shows.
      if (!s.step && s.xs.length <= 60) {
        s.xs.forEach((x, i) => {
          if (s.ys[i] === null || !Number.isFinite(s.ys[i])) return;
          root.append(svg("circle", { cx: px(x), cy: py(s.ys[i]), r: 2.5, class: "marker " + (s.cls || "") }));
        });
      }
    }
    root.append(...labels);
    if (opts.xlabel) {
      const t = svg("text", { x: (m.left + W - m.right) / 2, y: H - 4, class: "axis-label", "text-anchor": "middle" });
      t.textContent = opts.xlabel;
      root.append(t);
    }
    if (opts.ylabel) {
      const t = svg("text", {
        x: 10, y: (m.top + H - m.bottom) / 2, class: "axis-label", "text-anchor": "middle",
        transform: `rotate(-90 10 ${(m.top + H - m.bottom) / 2})`,
      });
      t.textContent = opts.ylabel;
      root.append(t);
    }
    root.setAttribute("data-points", String(series.reduce((n, s) => n + s.xs.length, 0)));
    // For marks drawn later (the clip's playing position): x -> pixels, and the plot's height.
    root.px = px;
    root.plotTop = m.top;
    root.plotBottom = H - m.bottom;
    root.setAttribute("data-xmax", String(xmax));
    root.setAttribute("data-ymin", String(ymin));
    root.setAttribute("data-ymax", String(ymax));
    return root;
  }

  return { line, ticks, scoreRange };
})();
