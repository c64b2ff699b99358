// The API page: every endpoint of /openapi.json with its parameters, as the pages use them.
"use strict";

(() => {
  const { el } = arnet;
  arnet.nav("api");
  const box = document.getElementById("endpoints");

  // The field names of a JSON request body, its schema's $ref followed.
  function fields(spec, requestBody) {
    let schema = ((requestBody.content || {})["application/json"] || {}).schema || {};
    if (schema.$ref) schema = spec.components.schemas[schema.$ref.split("/").pop()] || {};
    return Object.keys(schema.properties || {}).map((name) => el("code", {}, name + " "));
  }

  async function load() {
    let spec;
    try {
      spec = await arnet.getJSON("/openapi.json");
    } catch (err) {
      arnet.error(box, err);
      return;
    }
    for (const [path, methods] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        const params = (op.parameters || []).map((p) =>
          el("li", {}, el("code", {}, p.name), " (" + p.in + (p.required ? ", required" : "") + ")",
            p.description ? ": " + p.description : ""));
        const body = op.requestBody ? el("li", {}, "JSON body: ", fields(spec, op.requestBody)) : null;
        box.append(el("div", { class: "endpoint" },
          el("span", { class: "method" }, method.toUpperCase()), " ", el("code", {}, path),
          el("p", {}, op.summary || ""),
          params.length || body ? el("ul", {}, params, body) : null));
      }
    }
  }

  load();
})();
