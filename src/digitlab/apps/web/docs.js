/* Offline API reference: renders this server's /openapi.json without any CDN asset. */
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  // Text with `code` spans (as in the route docstrings) as DOM nodes; never innerHTML.
  function prose(text) {
    const p = document.createElement("p");
    String(text).split("`").forEach((part, i) => {
      p.append(i % 2 ? el("code", {}, part) : document.createTextNode(part));
    });
    return p;
  }

  function typeOf(schema) {
    if (!schema) return "";
    if (schema.$ref) return schema.$ref.split("/").pop();
    if (schema.anyOf) return schema.anyOf.map(typeOf).join(" | ");
    if (schema.type === "array") return `${typeOf(schema.items)}[]`;
    if (schema.format === "binary") return "file";
    return schema.type || "object";
  }

  function schemaTable(schema) {
    const props = schema.properties || {};
    const required = new Set(schema.required || []);
    const table = el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "field"), el("th", {}, "type"), el("th", {}, "description"))));
    const body = el("tbody");
    for (const [name, prop] of Object.entries(props)) {
      body.append(
        el("tr", {},
          el("td", {}, el("code", {}, name + (required.has(name) ? "" : "?"))),
          el("td", {}, el("code", {}, typeOf(prop))),
          el("td", {}, prop.description || prop.title || "")),
      );
    }
    table.append(body);
    return table;
  }

  function endpoint(path, method, op) {
    const card = el("section", { class: "card", id: `${method}-${path}` });
    card.append(
      el("div", { class: "endpoint-head" },
        el("span", { class: `method ${method}` }, method.toUpperCase()),
        el("span", { class: "path" }, path),
        el("span", { class: "summary" }, op.summary || "")),
    );
    if (op.description) card.append(prose(op.description));
    if (op.parameters && op.parameters.length) {
      card.append(el("h3", {}, "Query parameters"));
      const t = el("table");
      for (const p of op.parameters) {
        t.append(el("tr", {},
          el("td", {}, el("code", {}, p.name)),
          el("td", {}, el("code", {}, typeOf(p.schema))),
          el("td", {}, p.description || (p.schema && p.schema.description) || "")));
      }
      card.append(t);
    }
    if (op.requestBody) {
      card.append(el("h3", {}, "Request body"));
      for (const [ctype, media] of Object.entries(op.requestBody.content || {})) {
        card.append(el("p", {}, el("code", {}, ctype)));
        card.append(schemaTable(media.schema || {}));
      }
    }
    card.append(el("h3", {}, "Responses"));
    const t = el("table");
    for (const [code, resp] of Object.entries(op.responses || {})) {
      const media = resp.content && resp.content["application/json"];
      t.append(el("tr", {},
        el("td", {}, el("span", { class: "status-code" }, code)),
        el("td", {}, el("code", {}, media ? typeOf(media.schema) : "")),
        el("td", {}, resp.description || "")));
    }
    card.append(t);
    return card;
  }

  async function main() {
    const host = window.location.host;
    $("quickstart").textContent = $("quickstart").textContent.replaceAll("HOST", host);
    let spec;
    try {
      const response = await fetch("/openapi.json");
      spec = await response.json();
    } catch (err) {
      $("api-summary").textContent = `Could not load /openapi.json: ${err.message}`;
      return;
    }
    $("api-title").textContent = `${spec.info.title} ${spec.info.version} — REST API`;
    $("api-summary").textContent = spec.info.summary || spec.info.description || "";
    const list = $("endpoints");
    for (const [path, ops] of Object.entries(spec.paths)) {
      for (const [method, op] of Object.entries(ops)) list.append(endpoint(path, method, op));
    }
    const schemas = (spec.components && spec.components.schemas) || {};
    const box = $("schemas");
    for (const [name, schema] of Object.entries(schemas)) {
      box.append(el("h3", { id: `schema-${name}` }, name));
      if (schema.description) box.append(el("p", {}, schema.description));
      box.append(schemaTable(schema));
    }
    $("schemas-card").hidden = Object.keys(schemas).length === 0;
  }

  main();
})();
