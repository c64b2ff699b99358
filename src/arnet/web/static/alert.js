// One alert: its clip with the score curve under it (when recorded), the peak frame, the score
// curve with the alert shaded, and acknowledgement with a note (kept in the store with its time).
"use strict";

(() => {
  const { el, clear, time, num } = arnet;
  arnet.nav("alerts");
  const id = Number(location.pathname.split("/").pop());
  const box = document.getElementById("alert");
  const title = document.getElementById("title");

  function facts(a) {
    const rows = [
      ["camera", a.camera],
      ["state", el("span", { class: "badge " + a.state }, a.state)],
      ["started", time(a.start_time)],
      ["ended", a.state === "open" ? "still open" : time(a.end_time)],
      ["segments", a.start_segment + "–" + a.end_segment],
      ["frames", a.start_frame + "–" + a.end_frame],
      ["peak score", num(a.peak_score) + " at frame " + a.peak_frame + " (" + time(a.peak_time) + ")"],
      ["threshold", num(a.threshold, 2)],
      ["detector", a.detector ? a.detector.run + (a.detector.version ? " · version " + a.detector.version : "") : "not recorded"],
      ["verdict", a.verdict ? el("span", { class: "badge verdict-" + a.verdict, id: "verdict" }, a.verdict) : el("span", { id: "verdict", class: "muted" }, "none yet")],
    ];
    return el("table", { class: "facts-table" },
      rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", { class: "text" }, v))));
  }

  function curve(a) {
    const rows = a.context && a.context.length ? a.context : a.segments;
    const xs = rows.map((r) => r.segment);
    const ys = rows.map((r) => r.score);
    const end = xs.length ? xs[xs.length - 1] + 1 : a.end_segment + 1;
    const threshold = a.threshold !== null ? a.threshold : a.camera_threshold;
    return charts.line(Object.assign({
      width: 720,
      height: 240,
      xmin: xs.length ? xs[0] : a.start_segment,
      xmax: end,
      series: [{ xs, ys, step: true, end, name: "score" }],
      bands: [{ x0: a.start_segment, x1: a.end_segment + 1, cls: "alert-span" }],
      hlines: [{ y: threshold, cls: "threshold", label: "threshold " + num(threshold, 2) }],
      xlabel: "segment",
      ylabel: "anomaly score",
      title: "score around the alert (shaded)",
    }, charts.scoreRange(ys, [threshold])));
  }

  function acknowledgements(a) {
    const list = el("div", { id: "acknowledgements" });
    if (!a.acknowledgements.length) list.append(el("p", { class: "muted" }, "not acknowledged yet"));
    else {
      list.append(el("ul", {}, a.acknowledgements.map((k) =>
        el("li", { class: "ack" }, time(k.time) + (k.by ? " by " + k.by : "") + ": ",
          el("span", { class: "note" }, k.note || "(no note)")))));
    }
    return list;
  }

  function ackForm(a) {
    const note = el("textarea", { name: "note", id: "note", maxlength: 2000, placeholder: "what it was, what was done" });
    const by = el("input", { name: "by", id: "by", maxlength: 200, placeholder: "your name (optional)" });
    const button = el("button", { type: "submit", id: "acknowledge" }, "Acknowledge");
    const message = el("p", { class: "status" });
    const form = el("form", { id: "ack-form" }, el("label", {}, "note", note), el("p", {}, by, " ", button), message);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      try {
        await arnet.postJSON("/api/alerts/" + a.id + "/acknowledge", { note: note.value, by: by.value || null });
        await load();
      } catch (err) {
        message.textContent = String(err.message || err);
        button.disabled = false;
      }
    });
    return form;
  }

  // The clip (when the watcher recorded one) with the score curve under it, in frames, and a
  // line that follows the video's position; the camera's mask drawn over the video.
  function clipView(a, c, mask) {
    const video = el("video", {
      id: "clip-video", src: c.url, controls: true, muted: true, playsinline: true,
      preload: "auto", width: c.width, height: c.height,
    });
    const box = el("div", { class: "clip-box" }, video);
    if (mask) box.append(maskOverlay(mask, c.width, c.height));
    const rows = (a.context && a.context.length ? a.context : a.segments)
      .filter((r) => r.end_frame >= c.start_frame && r.start_frame <= c.end_frame);
    const xs = rows.map((r) => Math.max(r.start_frame, c.start_frame));
    const ys = rows.map((r) => r.score);
    const threshold = a.threshold !== null ? a.threshold : a.camera_threshold;
    const chart = charts.line(Object.assign({
      width: 720, height: 200, xmin: c.start_frame, xmax: c.end_frame + 1,
      series: [{ xs, ys, step: true, end: c.end_frame + 1, name: "clip-score" }],
      bands: [{ x0: a.start_frame, x1: a.end_frame + 1, cls: "alert-span" }],
      hlines: [{ y: threshold, cls: "threshold", label: "threshold " + num(threshold, 2) }],
      xlabel: "frame", ylabel: "anomaly score", title: "score over the clip (alert shaded)",
    }, charts.scoreRange(ys, [threshold])));
    chart.id = "clip-chart";
    const cursor = document.createElementNS("http://www.w3.org/2000/svg", "line");
    cursor.setAttribute("class", "clip-cursor");
    cursor.setAttribute("y1", chart.plotTop);
    cursor.setAttribute("y2", chart.plotBottom);
    chart.append(cursor);
    const place = () => {
      const frame = Math.min(c.end_frame, c.start_frame + Math.floor(video.currentTime * c.fps));
      const x = chart.px(frame).toFixed(1);
      cursor.setAttribute("x1", x);
      cursor.setAttribute("x2", x);
      cursor.setAttribute("data-frame", String(frame));
    };
    place();
    video.addEventListener("timeupdate", place);
    video.addEventListener("seeked", place);
    return el("figure", { class: "clip" }, box, chart,
      el("figcaption", { class: "muted" },
        "Frames " + c.start_frame + "–" + c.end_frame + " (" + num(c.fps, 2) + " fps), from " +
        time(c.start_time) + ". The line on the curve follows the video." +
        (mask ? " Shaded over the video: the camera's mask (counted for nothing)." : "")));
  }

  function maskOverlay(mask, width, height) {
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("class", "mask-overlay");
    svg.setAttribute("id", "mask-overlay");
    svg.setAttribute("preserveAspectRatio", "none");
    if (mask.kind === "cells") {
      const [x0, y0, x1, y1] = mask.region || [0, 0, 1, 1];
      svg.setAttribute("viewBox", "0 0 1 1");
      const w = (x1 - x0) / mask.cols;
      const h = (y1 - y0) / mask.rows;
      for (const [r, col] of mask.cells) {
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", x0 + col * w);
        rect.setAttribute("y", y0 + r * h);
        rect.setAttribute("width", w);
        rect.setAttribute("height", h);
        rect.setAttribute("class", "masked");
        svg.append(rect);
      }
    } else if (mask.kind === "pixels" && mask.png) {
      svg.setAttribute("viewBox", "0 0 " + width + " " + height);
      const image = document.createElementNS(ns, "image");
      image.setAttribute("href", "data:image/png;base64," + mask.png);
      image.setAttribute("width", width);
      image.setAttribute("height", height);
      image.setAttribute("preserveAspectRatio", "none");
      image.setAttribute("class", "masked");
      svg.append(image);
    }
    return svg;
  }

  async function optional(url) {
    try {
      return await arnet.getJSON(url);
    } catch (err) {
      return null; // no clip or no mask (404), or a store of an earlier arnet
    }
  }

  function verdicts(a) {
    const list = el("div", { id: "verdicts" });
    const history = a.verdicts || [];
    if (!history.length) list.append(el("p", { class: "muted" }, "no verdict yet"));
    else {
      list.append(el("ul", {}, history.map((v) =>
        el("li", { class: "verdict" }, time(v.time) + (v.by ? " by " + v.by : "") + ": ",
          el("strong", {}, v.verdict), v.note ? " · " : "", el("span", { class: "note" }, v.note || "")))));
    }
    return list;
  }

  // A false alarm's segments join a nearest-normal detector's normal examples (a new version of
  // its run, taken up by the watcher); a real alert is kept as an anomalous example.
  function verdictForm(a) {
    const note = el("input", { name: "verdict-note", id: "verdict-note", maxlength: 2000, placeholder: "why (optional)" });
    const by = el("input", { name: "verdict-by", id: "verdict-by", maxlength: 200, placeholder: "your name (optional)" });
    const message = el("p", { class: "status", id: "verdict-status" });
    const buttons = ["false-alarm", "real"].map((v) =>
      el("button", { type: "button", id: "verdict-" + v, "data-verdict": v },
        v === "false-alarm" ? "False alarm" : "Real"));
    buttons.forEach((button) => button.addEventListener("click", async () => {
      buttons.forEach((b) => { b.disabled = true; });
      try {
        const body = { verdict: button.dataset.verdict, note: note.value, by: by.value || null };
        if (a.detector) Object.assign(body, { run: a.detector.run, version: a.detector.version });
        await arnet.postJSON("/api/alerts/" + a.id + "/verdict", body);
        await load();
      } catch (err) {
        message.textContent = String(err.message || err);
        buttons.forEach((b) => { b.disabled = false; });
      }
    }));
    return el("div", { id: "verdict-form" }, el("p", {}, note, " ", by), el("p", {}, ...buttons), message);
  }

  async function load() {
    let a;
    try {
      a = await arnet.getJSON("/api/alerts/" + id);
    } catch (err) {
      // A failed refresh keeps what the page showed, with the reason above it.
      arnet.error(box.firstChild ? box.insertBefore(arnet.el("div"), box.firstChild) : box, err);
      return;
    }
    title.textContent = "Alert #" + a.id + " · " + a.camera;
    document.title = "arnet · alert " + a.id;
    const image = a.has_image
      ? el("figure", { class: "peak" },
        el("img", { src: "/api/alerts/" + a.id + "/image", alt: "peak frame of alert " + a.id, id: "peak-image" }),
        el("figcaption", { class: "muted" },
          "The peak segment's first frame. With a model that says where (a cell model, or " +
          "nearest-normal on grid features) the same frame follows on the right under the heat " +
          "map of the segment's cells: red where it is most anomalous."))
      : el("p", { class: "muted" }, "no image of the peak frame was stored");
    const [clip, mask] = await Promise.all([
      optional("/api/alerts/" + a.id + "/clip/info"),
      optional(arnet.url("/api/cameras/mask", { camera: a.camera })),
    ]);
    const media = clip && clip.available ? clipView(a, clip, mask) : null;
    clear(box).append(
      el("div", { class: "alert-view" },
        el("div", {}, media, image, facts(a)),
        el("div", {}, curve(a),
          el("h2", {}, "Acknowledgements"), acknowledgements(a), ackForm(a),
          el("h2", {}, "Verdict"), verdicts(a), verdictForm(a))));
  }

  load();
})();
