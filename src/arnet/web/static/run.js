// One run, or several side by side (/runs/view?run=A&run=B): metrics, training curves and
// per-video score plots with the anomalous frames shaded. Each section is one row with a
// column per run, so the same video lines up across runs.
"use strict";

(() => {
  const { el, clear, num, percent } = arnet;
  arnet.nav("runs");
  const names = new URLSearchParams(location.search).getAll("run").slice(0, 4);
  const box = document.getElementById("run");
  const title = document.getElementById("title");
  const SHOWN = 6; // video plots drawn at first; the rest on demand
  const METRICS = [
    ["auc", "frame AUC (all videos)", num],
    ["auc_anomalous", "frame AUC (anomalous videos)", num],
    ["ap", "average precision", num],
    ["far_all", "false alarms (all videos)", percent],
    ["far_normal", "false alarms (normal videos)", percent],
    ["far_anomalous", "false alarms (anomalous videos)", percent],
  ];

  const fileUrl = (run, file) => "/files/" + run.split("/").map(encodeURIComponent).join("/") + "/" + file;

  function row(cls, cells) {
    return el("div", { class: "side-by-side n" + Math.min(cells.length, 2) + " " + cls },
      cells.map((c) => el("div", { class: "column" }, c)));
  }

  function metricsTable(runs) {
    const head = el("tr", {}, el("th", {}, "metric"), runs.map((r) => el("th", { class: "text" }, r.name)));
    const rows = METRICS.map(([key, label, fmt]) =>
      el("tr", { "data-metric": key }, el("td", {}, label),
        runs.map((r) => el("td", {}, fmt((r.latest || {})[key])))));
    rows.push(el("tr", {}, el("td", {}, "iteration"), runs.map((r) => el("td", {}, r.iteration === null ? "–" : r.iteration))));
    rows.push(el("tr", {}, el("td", {}, "model"), runs.map((r) => el("td", {}, r.model || "?"))));
    return el("table", { id: "metrics-table" }, head, rows);
  }

  function header(r) {
    const parts = [el("h2", {}, r.name)];
    parts.push(el("p", { class: "muted" }, "data: " + (r.data || "?")));
    if (r.report) parts.push(el("p", {}, el("a", { href: fileUrl(r.name, "report.html") }, "static report.html")));
    return parts;
  }

  function curves(r) {
    const losses = r.losses || [];
    const evals = r.evaluations || [];
    const out = [];
    if (losses.length) {
      out.push(charts.line({
        width: 520, height: 180, title: "training loss",
        series: [{ xs: losses.map((x) => x.iteration), ys: losses.map((x) => x.loss), name: "loss" }],
        xlabel: "iteration",
      }));
    }
    if (evals.length) {
      out.push(charts.line({
        width: 520, height: 180, title: "test frame AUC (blue) and AP (orange)", ymin: 0, ymax: 1,
        series: [
          { xs: evals.map((x) => x.iteration), ys: evals.map((x) => x.auc), name: "auc" },
          { xs: evals.map((x) => x.iteration), ys: evals.map((x) => x.ap), cls: "second", name: "ap" },
        ],
        xlabel: "iteration",
      }));
    }
    if (!out.length) out.push(el("p", { class: "muted" }, "no training log"));
    return el("div", { class: "chart-grid" }, out);
  }

  async function videoPlot(run, video) {
    const holder = el("div", { class: "video-plot", "data-video": video });
    try {
      const v = await arnet.getJSON(arnet.url("/api/run/video", { name: run, video }));
      const f = v.frames_per_segment;
      const frames = v.scores.length * f;
      holder.append(charts.line(Object.assign({
        width: 520, height: 170, title: video, xmin: 0, xmax: Math.max(frames, 1),
        series: [{ xs: v.scores.map((_, i) => i * f), ys: v.scores, step: true, end: frames, name: "score" }],
        bands: (v.anomalous_spans || []).map(([a, b]) => ({ x0: a, x1: b, cls: "truth" })),
        hlines: [{ y: v.threshold, cls: "threshold", label: "threshold " + num(v.threshold, 2) }],
        xlabel: "frame",
      }, charts.scoreRange(v.scores, [v.threshold]))));
      if (v.ground_truth_error) holder.append(el("p", { class: "muted" }, v.ground_truth_error));
    } catch (err) {
      holder.append(el("p", { class: "muted" }, video + ": " + (err.message || err)));
    }
    return holder;
  }

  async function showVideos(runs, videos, target) {
    clear(target);
    for (const video of videos) {
      const cells = await Promise.all(runs.map((r) => videoPlot(r.name, video)));
      target.append(row("video-row", cells));
    }
  }

  function videoTable(r) {
    const list = r.videos || [];
    if (!list.length) return el("p", { class: "muted" }, "no per-video results");
    const head = ["video", "label", "segments", "max score", "mean score", "AUC", "false alarms"];
    return el("table", { class: "videos-table" }, el("tr", {}, head.map((h) => el("th", {}, h))),
      list.map((v) => el("tr", {},
        el("td", {}, v.name), el("td", {}, v.label), el("td", {}, v.segments),
        el("td", {}, num(v.max_score)), el("td", {}, num(v.mean_score)),
        el("td", {}, num(v.auc)), el("td", {}, percent(v.false_alarm_rate)))));
  }

  async function load() {
    if (!names.length) {
      box.append(el("p", {}, "no run chosen: pick one on ", el("a", { href: "/runs" }, "the runs page")));
      return;
    }
    let runs;
    try {
      runs = await Promise.all(names.map((n) => arnet.getJSON(arnet.url("/api/run", { name: n }))));
    } catch (err) {
      arnet.error(box, err);
      return;
    }
    title.textContent = runs.length > 1 ? "Runs side by side" : "Run " + runs[0].name;
    document.title = "arnet · " + names.join(" vs ");
    // Videos every run scored, anomalous ones first (their plots say the most).
    const labels = new Map();
    for (const r of runs) for (const v of r.videos || []) labels.set(v.name, v.label);
    const common = runs[0].scored.filter((v) => runs.every((r) => r.scored.includes(v)));
    common.sort((a, b) => (labels.get(b) || 0) - (labels.get(a) || 0) || a.localeCompare(b));
    // One run: its video plots side by side, as many as the screen holds.
    const plots = el("div", { id: "video-plots", class: runs.length > 1 ? null : "chart-grid" });
    const picker = el("div", { class: "videos" });
    const buttons = common.map((video) => {
      const b = el("button", { type: "button", "data-video": video }, video);
      b.addEventListener("click", () => {
        for (const other of buttons) other.classList.toggle("active", other === b);
        showVideos(runs, [video], plots);
      });
      return b;
    });
    arnet.append(picker, buttons);
    clear(box).append(
      row("run-header", runs.map(header)),
      el("h2", {}, "Metrics (latest evaluation)"), metricsTable(runs),
      el("h2", {}, "Training"), row("curves", runs.map(curves)),
      el("h2", {}, "Per-video scores"),
      el("p", { class: "muted" }, "Scores over frames; anomalous frames shaded; the dashed line is the threshold. Choose a video:"),
      picker, plots,
      el("h2", {}, "Per-video results"), row("video-tables", runs.map(videoTable)));
    await showVideos(runs, common.slice(0, SHOWN), plots);
    box.setAttribute("data-ready", "true");
  }

  load();
})();
