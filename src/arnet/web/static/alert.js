// One alert: the peak frame, the score curve with the alert shaded, and acknowledgement with
// a note (kept in the store with its time).
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
    clear(box).append(
      el("div", { class: "alert-view" },
        el("div", {}, image, facts(a)),
        el("div", {}, curve(a),
          el("h2", {}, "Acknowledgements"), acknowledgements(a), ackForm(a),
          el("h2", {}, "Verdict"), verdicts(a), verdictForm(a))));
  }

  load();
})();
