// Training runs under --runs, newest first; tick two to compare them side by side.
"use strict";

(() => {
  const { el, clear, time, num, percent } = arnet;
  arnet.nav("runs");
  const box = document.getElementById("runs");
  const compare = document.getElementById("compare");
  const chosen = new Set();

  compare.addEventListener("click", () => {
    location.href = arnet.url("/runs/view", { run: [...chosen] });
  });

  async function load() {
    let runs;
    try {
      runs = await arnet.getJSON("/api/runs");
    } catch (err) {
      arnet.error(box, err);
      return;
    }
    if (!runs.length) {
      box.append(el("p", { class: "muted" }, "no run here (arnet serve --runs DIR; arnet train writes runs)"));
      return;
    }
    const head = ["", "run", "model", "iteration", "AUC", "AUC anomalous", "AP", "false alarms normal", "modified", "report"];
    const rows = runs.map((r) => {
      const m = r.metrics || {};
      const tick = el("input", { type: "checkbox", value: r.name, "aria-label": "compare " + r.name });
      tick.addEventListener("change", () => {
        if (tick.checked) chosen.add(r.name);
        else chosen.delete(r.name);
        compare.disabled = chosen.size < 1;
        compare.textContent = chosen.size > 1 ? "Compare selected (" + chosen.size + ")" : "Show selected";
      });
      return el("tr", { "data-run": r.name },
        el("td", {}, tick),
        el("td", { class: "text" }, el("a", { href: arnet.url("/runs/view", { run: r.name }) }, r.name)),
        el("td", { class: "text" }, r.model || "?"),
        el("td", {}, r.iteration === null ? "–" : r.iteration),
        el("td", {}, num(m.auc, 4)),
        el("td", {}, num(m.auc_anomalous, 4)),
        el("td", {}, num(m.ap, 4)),
        el("td", {}, percent(m.far_normal)),
        el("td", {}, time(r.modified)),
        el("td", { class: "text" }, r.report ? el("a", { href: "/files/" + r.name.split("/").map(encodeURIComponent).join("/") + "/report.html" }, "report.html") : "–"));
    });
    clear(box).append(el("table", { id: "runs-table" }, el("tr", {}, head.map((h) => el("th", {}, h))), rows));
  }

  load();
})();
