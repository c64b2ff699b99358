// Alerts table: filtered by camera, time, state and acknowledgement, newest first, paged. The
// filters live in the page's address, so a filtered page can be bookmarked or shared.
"use strict";

(() => {
  const { el, clear, time, num } = arnet;
  arnet.nav("alerts");
  const form = document.getElementById("filters");
  const table = document.getElementById("table");
  const pagers = [document.getElementById("pager-top"), document.getElementById("pager")];
  const FIELDS = ["camera", "since", "until", "state", "acknowledged", "limit"];

  const pad = (n) => String(n).padStart(2, "0");
  // Epoch seconds <-> the value of a datetime-local input (the viewer's time zone).
  function toInput(seconds) {
    const d = new Date(seconds * 1000);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + "T" +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  const fromInput = (value) => (value ? String(new Date(value).getTime() / 1000) : "");

  function query() {
    const params = new URLSearchParams(location.search);
    const out = {};
    for (const key of FIELDS.concat(["offset"])) out[key] = params.get(key) || "";
    return out;
  }

  function fillForm(q) {
    for (const key of FIELDS) {
      const input = form.elements[key];
      if (!q[key]) continue;
      input.value = key === "since" || key === "until" ? toInput(Number(q[key])) : q[key];
    }
  }

  async function cameraChoices(selected) {
    const select = form.elements.camera;
    try {
      for (const camera of await arnet.getJSON("/api/cameras")) {
        select.append(el("option", { value: camera.name }, camera.name));
      }
      select.value = selected || "";
    } catch (err) {
      arnet.error(table, err);
    }
  }

  function go(q) {
    history.pushState(null, "", arnet.url("/alerts", q));
    load();
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = {};
    for (const key of FIELDS) {
      const value = form.elements[key].value;
      q[key] = key === "since" || key === "until" ? fromInput(value) : value;
    }
    q.offset = 0;
    go(q);
  });
  window.addEventListener("popstate", load);

  function pager(q, total, shown) {
    const offset = Number(q.offset || 0);
    const limit = Number(q.limit || 50);
    for (const box of pagers) {
      clear(box);
      const prev = el("button", { type: "button", disabled: offset <= 0 }, "‹ newer");
      const next = el("button", { type: "button", disabled: offset + limit >= total }, "older ›");
      prev.addEventListener("click", () => go(Object.assign({}, q, { offset: Math.max(0, offset - limit) })));
      next.addEventListener("click", () => go(Object.assign({}, q, { offset: offset + limit })));
      const range = total ? (offset + 1) + "–" + (offset + shown) + " of " + total : "no alert matches";
      box.append(prev, el("span", { class: "range" }, range), next);
    }
  }

  async function load() {
    const q = query();
    fillForm(q);
    let page;
    try {
      page = await arnet.getJSON(arnet.url("/api/alerts", q));
    } catch (err) {
      clear(table);
      arnet.error(table, err);
      return;
    }
    const head = ["alert", "camera", "state", "acknowledged", "start", "end", "segments", "peak score", "threshold"];
    const rows = page.alerts.map((a) => {
      const row = el("tr", { class: "link", "data-alert": a.id },
        el("td", {}, el("a", { href: "/alerts/" + a.id }, "#" + a.id)),
        el("td", { class: "text" }, a.camera),
        el("td", { class: "text" }, el("span", { class: "badge " + a.state }, a.state)),
        el("td", { class: "text" }, a.acknowledged ? el("span", { class: "badge acknowledged" }, "yes") : "no"),
        el("td", {}, time(a.start_time)),
        el("td", {}, a.state === "open" ? "–" : time(a.end_time)),
        el("td", {}, a.start_segment + "–" + a.end_segment),
        el("td", {}, num(a.peak_score)),
        el("td", {}, num(a.threshold, 2)));
      row.addEventListener("click", (event) => {
        if (event.target.tagName !== "A") location.href = "/alerts/" + a.id;
      });
      return row;
    });
    clear(table).append(el("table", { id: "alerts-table" },
      el("tr", {}, head.map((h) => el("th", {}, h))), rows));
    pager(q, page.total, page.alerts.length);
  }

  cameraChoices(query().camera).then(load);
})();
