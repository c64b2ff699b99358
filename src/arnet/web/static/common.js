// Shared helpers of the dashboard's pages. Every text that comes from the server goes into
// the page as a text node (textContent), never as HTML: a camera or video name is shown, not run.
"use strict";

const arnet = (() => {
  // el("a", {href: "/x", class: "c"}, "text", otherNode): an element with attributes and children.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(key, value === true ? "" : String(value));
    }
    append(node, children);
    return node;
  }

  function append(node, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  async function request(url, options) {
    const response = await fetch(url, Object.assign({ credentials: "same-origin" }, options));
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = text;
    }
    if (!response.ok) {
      const detail = body && body.detail !== undefined ? body.detail : body;
      throw new Error(response.status + ": " + (typeof detail === "string" ? detail : JSON.stringify(detail)));
    }
    return body;
  }

  const getJSON = (url) => request(url);
  const postJSON = (url, data) =>
    request(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(data),
    });

  // "/api/alerts" + {camera: "a b", state: null} -> "/api/alerts?camera=a+b" (empty values left out).
  function url(path, params) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params || {})) {
      if (value === null || value === undefined || value === "") continue;
      for (const v of Array.isArray(value) ? value : [value]) query.append(key, String(v));
    }
    const text = query.toString();
    return text ? path + "?" + text : path;
  }

  const pad = (n) => String(n).padStart(2, "0");

  // Epoch seconds -> "2026-12-01 05:10:03" in the viewer's time zone.
  function time(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const d = new Date(seconds * 1000);
    return (
      d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds())
    );
  }

  function num(value, digits) {
    if (value === null || value === undefined || Number.isNaN(value)) return "n/a";
    return Number(value).toFixed(digits === undefined ? 3 : digits);
  }

  function percent(value) {
    if (value === null || value === undefined) return "n/a";
    return (100 * value).toFixed(2) + "%";
  }

  function error(container, err) {
    container.append(el("p", { class: "error" }, String(err && err.message ? err.message : err)));
  }

  // The navigation bar, with the current page marked.
  function nav(active) {
    const links = [
      ["live", "/", "Live"],
      ["alerts", "/alerts", "Alerts"],
      ["runs", "/runs", "Runs"],
      ["api", "/api", "API"],
    ];
    const bar = document.getElementById("nav");
    clear(bar);
    bar.append(el("span", { class: "brand" }, "arnet"));
    for (const [key, href, label] of links) {
      bar.append(el("a", { href: href, class: key === active ? "active" : null }, label));
    }
  }

  return { el, append, clear, getJSON, postJSON, url, time, num, percent, error, nav };
})();
