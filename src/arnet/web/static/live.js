// Live view: one card per camera with its newest scores as a scrolling chart, kept current by
// the server-sent events of /api/events (no reloading).
"use strict";

(() => {
  const { el, clear, time, num } = arnet;
  const WINDOW = 300; // segments a chart shows
  const cameras = new Map(); // name -> camera record
  const scores = new Map(); // name -> [score records], oldest first
  const cards = new Map(); // name -> {root, facts, chart, alerts}
  let openAlerts = [];
  let openTotal = 0;

  arnet.nav("live");
  const status = document.getElementById("status");
  const grid = document.getElementById("cameras");
  const alertList = document.getElementById("open-alerts");

  function card(name) {
    if (cards.has(name)) return cards.get(name);
    const parts = {
      title: el("h2", {}, name),
      facts: el("div", { class: "facts" }),
      chart: el("div", { class: "chart-box" }),
      alerts: el("div", { class: "camera-alerts" }),
    };
    parts.root = el("article", { class: "card camera", "data-camera": name },
      parts.title, parts.facts, parts.chart, parts.alerts);
    // Cards in name order, as the server lists cameras.
    const after = [...cards.keys()].sort().find((other) => other > name);
    grid.insertBefore(parts.root, after ? cards.get(after).root : null);
    cards.set(name, parts);
    return parts;
  }

  function fact(label, value) {
    return el("span", {}, label + " ", el("b", {}, value));
  }

  function renderCamera(name) {
    const camera = cameras.get(name);
    const parts = card(name);
    const mine = openAlerts.filter((a) => a.camera === name);
    // Red while an alert is open that nobody has acknowledged yet; an acknowledged one that is
    // still open is said in the card, without the alarm.
    const open = camera.open_alert_id !== null && camera.open_alert_id !== undefined;
    parts.root.classList.toggle("alerting", open && !camera.open_alert_acknowledged);
    clear(parts.facts).append(
      el("span", { class: "badge state " + camera.state }, camera.state),
      fact("threshold", num(camera.start_threshold, 2)),
      fact("score", num(camera.last_score)),
      fact("seen", time(camera.last_seen)),
      fact("source", camera.source),
    );
    if (camera.state_detail) parts.facts.append(el("span", { class: "detail" }, camera.state_detail));
    const rows = scores.get(name) || [];
    const xs = rows.map((r) => r.segment);
    const last = xs.length ? xs[xs.length - 1] + 1 : 1;
    const first = Math.max(0, last - WINDOW);
    const ys = rows.map((r) => r.score);
    const hlines = [{ y: camera.start_threshold, cls: "threshold", label: "threshold " + num(camera.start_threshold, 2) }];
    if (camera.stop_threshold !== null && camera.stop_threshold !== camera.start_threshold) {
      hlines.push({ y: camera.stop_threshold, cls: "stop-threshold", label: "stop " + num(camera.stop_threshold, 2) });
    }
    const chart = charts.line(Object.assign({
      width: 640,
      height: 170,
      xmin: first,
      xmax: Math.max(last, first + 10),
      series: [{ xs, ys, step: true, end: last, name: "score" }],
      bands: mine.map((a) => ({ x0: a.start_segment, x1: a.end_segment + 1, cls: "alert-span" })),
      hlines,
      xlabel: "segment",
    }, charts.scoreRange(ys, hlines.map((h) => h.y))));
    chart.setAttribute("data-last-segment", xs.length ? String(xs[xs.length - 1]) : "");
    clear(parts.chart).append(chart);
    clear(parts.alerts);
    if (open && camera.open_alert_acknowledged) {
      parts.alerts.append(el("p", { class: "acknowledged-open" },
        el("span", { class: "badge open" }, "open"), " ",
        el("a", { href: "/alerts/" + camera.open_alert_id }, "alert " + camera.open_alert_id),
        " acknowledged, still going on"));
    }
    if (mine.length) {
      parts.alerts.append(
        el("ul", {}, mine.slice(0, 5).map((a) =>
          el("li", {},
            el("span", { class: "badge " + a.state }, a.state), " ",
            el("a", { href: "/alerts/" + a.id }, "alert " + a.id),
            " at " + time(a.start_time) + ", peak " + num(a.peak_score)))));
    }
  }

  function renderAlerts() {
    clear(alertList);
    if (!openAlerts.length) {
      alertList.append(el("p", { class: "muted" }, "none"));
      return;
    }
    const table = el("table", { id: "open-alerts-table" },
      el("tr", {}, ["alert", "camera", "state", "start", "end", "peak score"].map((h) => el("th", {}, h))));
    for (const a of openAlerts) {
      table.append(el("tr", { "data-alert": a.id },
        el("td", {}, el("a", { href: "/alerts/" + a.id }, "#" + a.id)),
        el("td", { class: "text" }, a.camera),
        el("td", { class: "text" }, el("span", { class: "badge " + a.state }, a.state)),
        el("td", {}, time(a.start_time)),
        el("td", {}, a.state === "open" ? "–" : time(a.end_time)),
        el("td", {}, num(a.peak_score))));
    }
    alertList.append(table);
    if (openTotal > openAlerts.length) {
      alertList.append(el("p", {}, el("a", { href: "/alerts?acknowledged=false" },
        "all " + openTotal + " unacknowledged alerts")));
    }
  }

  const source = new EventSource("/api/events");
  source.onopen = () => { status.textContent = "live"; };
  source.onerror = () => { status.textContent = "connection lost, reconnecting…"; };
  source.addEventListener("cameras", (event) => {
    const list = JSON.parse(event.data);
    for (const camera of list) cameras.set(camera.name, camera);
    if (!list.length) status.textContent = "live: no camera yet (start arnet watch … --db STORE)";
    else status.textContent = "live: " + list.length + " camera" + (list.length > 1 ? "s" : "");
    for (const camera of list) renderCamera(camera.name);
  });
  source.addEventListener("scores", (event) => {
    const data = JSON.parse(event.data);
    const known = scores.get(data.camera) || [];
    // A reconnected stream starts with the newest window again: keep each segment once.
    const newest = known.length ? known[known.length - 1].segment : -1;
    const rows = known.concat(data.scores.filter((r) => r.segment > newest));
    scores.set(data.camera, rows.slice(-WINDOW));
    if (cameras.has(data.camera)) renderCamera(data.camera);
  });
  source.addEventListener("alerts", (event) => {
    const data = JSON.parse(event.data);
    openAlerts = data.alerts;
    openTotal = data.total;
    renderAlerts();
    for (const name of cameras.keys()) renderCamera(name);
  });
})();
