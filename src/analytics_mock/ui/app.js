// The analytics-mock dashboard: reads and drives the control API under /_mock/.
// Every datum goes into the page as text (textContent), never as markup.
"use strict";

const TOKEN_KEY = "analytics-mock-control-token";
const POLL_MS = 1000;
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(typeof child === "string" ? document.createTextNode(child) : child);
    }
  }
  return node;
}

class Unauthorized extends Error {}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = "Bearer " + token;
  const init = { method, headers, credentials: "omit", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  const response = await fetch("/_mock/" + path, init);
  if (response.status === 401) throw new Unauthorized();
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = text; }
  if (!response.ok) {
    const message = data && data.message ? data.message : response.status + " " + response.statusText;
    throw new Error(message);
  }
  return data;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function askToken() {
  const form = $("token-form");
  if (form.hidden) {
    form.hidden = false;
    $("token").focus();
  }
  $("live").textContent = "Waiting for the control token.";
}

async function act(method, path, body) {
  try {
    const result = await api(method, path, body);
    showError("");
    await refresh();
    return result;
  } catch (error) {
    if (error instanceof Unauthorized) askToken();
    else showError(error.message);
    return undefined;
  }
}

function pretty(text) {
  if (text === null || text === undefined || text === "") return "(no body)";
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (_) { return text; }
}

function keyValues(object, skip) {
  const list = el("dl", { class: "kv" });
  for (const [key, value] of Object.entries(object)) {
    if (skip && skip.test(key)) continue;
    list.append(el("dt", { text: key }),
      el("dd", { text: typeof value === "string" ? value : JSON.stringify(value) }));
  }
  return list;
}

// Keyed lists: entries already shown keep their node (and whether they are expanded).
function syncList(list, items, key, render) {
  const old = new Map([...list.children].map((node) => [node.dataset.key, node]));
  const nodes = items.map((item) => {
    const id = String(key(item));
    const node = old.get(id) || render(item);
    node.dataset.key = id;
    return node;
  });
  const same = nodes.length === list.children.length && nodes.every((n, i) => list.children[i] === n);
  if (!same) list.replaceChildren(...nodes);
}

function journalEntry(entry) {
  const query = entry.query ? "?" + entry.query : "";
  const summary = el("summary", {},
    el("span", { class: "status s" + String(entry.status).charAt(0), text: String(entry.status) }), " ",
    el("span", { class: "method", text: entry.method }), " ",
    el("span", { class: "path", text: entry.path + query }), " ",
    el("span", { class: "meta", text: entry.time + " · " + entry.durationMs + " ms" }));
  return el("li", {}, el("details", {}, summary,
    el("h3", { text: "Headers" }), keyValues(entry.headers),
    el("h3", { text: "Body" }), el("pre", { class: "body", text: pretty(entry.body) })));
}

function splitMail(content) {
  const at = content.search(/\r?\n\r?\n/);
  const head = at < 0 ? content : content.slice(0, at);
  const body = at < 0 ? "" : content.slice(at).replace(/^\r?\n\r?\n/, "");
  const headers = [];
  for (const line of head.split(/\r?\n/)) {
    if (/^[ \t]/.test(line) && headers.length) headers[headers.length - 1][1] += " " + line.trim();
    else if (line.includes(":")) headers.push([line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()]);
  }
  return { headers, body };
}

function mailEntry(mail) {
  const { headers, body } = splitMail(mail.content || "");
  const heads = el("dl", { class: "kv" });
  for (const [name, value] of headers) heads.append(el("dt", { text: name }), el("dd", { text: value }));
  const outcome = mail.state === "success" ? "delivered" : "failed";
  return el("li", { class: "mail" },
    el("h3", {}, el("span", { class: "badge " + mail.state, text: outcome }), " ",
      el("span", { text: (headers.find(([n]) => n.toLowerCase() === "subject") || ["", "(no subject)"])[1] })),
    keyValues({
      recipients: mail.destinationAddresses.join(", "),
      sender: mail.senderAddress,
      server: mail.hostname + ":" + mail.portNumber + " (" + mail.secureConnection + ")",
      mode: mail.mode,
      outcome: mail.state,
      "failure kind": mail.failureKind || "none",
      detail: mail.detail,
      job: mail.jobId,
      completed: mail.completed,
    }),
    el("details", {}, el("summary", { text: "Message headers" }), heads),
    el("pre", { class: "body", text: body || "(empty body)" }));
}

const shown = {};
function changed(name, value) {
  const text = JSON.stringify(value);
  if (shown[name] === text) return false;
  shown[name] = text;
  return true;
}

function renderFaults(faults) {
  if (!changed("faults", faults)) return;
  const rows = faults.map((fault) => {
    const rule = { ...fault };
    delete rule.id; delete rule.remaining;
    const parts = Object.entries(rule).filter(([, v]) => v !== null && v !== false && v !== 0)
      .map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v)));
    const remove = el("button", { type: "button", text: "Remove", "aria-label": "Remove fault " + fault.id });
    remove.addEventListener("click", () => act("DELETE", "faults/" + fault.id));
    return el("tr", {}, el("td", { text: String(fault.id) }), el("td", { text: parts.join(", ") }),
      el("td", { text: fault.remaining === null ? "until removed" : String(fault.remaining) }),
      el("td", {}, remove));
  });
  $("faults").tBodies[0].replaceChildren(...rows);
}

function renderState(state) {
  const maintenance = $("maintenance");
  if (document.activeElement !== maintenance) maintenance.checked = state.maintenance;
  if (changed("settings", state.settings)) {
    $("settings").replaceChildren(...state.settings.map((setting) =>
      el("div", { class: "setting" }, el("h3", { text: setting.instanceID || "settings" }),
        keyValues(setting, /password/i))));
  }
  if (changed("users", state.users)) {
    $("users").tBodies[0].replaceChildren(...state.users.map((user) => {
      const cell = el("td", { text: user.locked ? "locked" : "unlocked" });
      if (user.locked || user.failedLogins) {
        const unlock = el("button", { type: "button", text: "Unlock", "aria-label": "Unlock " + user.name });
        unlock.addEventListener("click", () => act("POST", "users/" + encodeURIComponent(user.name) + "/unlock"));
        cell.append(" ", unlock);
      }
      return el("tr", {}, el("td", { text: user.name }), el("td", { text: (user.permissions || []).join(", ") }),
        el("td", { text: String(user.failedLogins) }), cell);
    }));
  }
}

function journalQuery() {
  const params = new URLSearchParams({ limit: "100" });
  if ($("f-method").value) params.set("method", $("f-method").value);
  const status = $("f-status").value;
  if (status !== "" && Number.isInteger(Number(status))) params.set("status", status);
  return "requests?" + params;
}

let busy = false;
async function refresh() {
  if (busy) return;
  busy = true;
  try {
    const [journal, mails, faults, state] = await Promise.all([
      api("GET", journalQuery()), api("GET", "test-mails?limit=50"), api("GET", "faults"), api("GET", "state"),
    ]);
    const needle = $("f-path").value;
    const entries = journal.requests.filter((e) => !needle || (e.path + "?" + e.query).includes(needle));
    syncList($("journal"), entries, (e) => e.id, journalEntry);
    $("journal-count").textContent = entries.length + " of the newest journalled calls shown";
    syncList($("mails"), mails.testMails, (m) => m.jobId + m.completed, mailEntry);
    renderFaults(faults.faults);
    renderState(state);
    if (!formBuilt) await buildFaultForm();
    $("live").textContent = "Live: updated " + new Date().toLocaleTimeString();
  } catch (error) {
    if (error instanceof Unauthorized) askToken();
    else $("live").textContent = "Not updated: " + error.message;
  } finally {
    busy = false;
  }
}

// The fault form follows the control API's own schema of a rule (GET /_mock/fault-schema).
let formBuilt = false;
function branch(schema, defs) {
  let nullable = false;
  let node = schema;
  if (schema.anyOf) {
    nullable = schema.anyOf.some((s) => s.type === "null");
    node = schema.anyOf.find((s) => s.type !== "null") || {};
  }
  if (node.$ref) node = defs[node.$ref.split("/").pop()] || {};
  return { node, nullable };
}

async function buildFaultForm() {
  const schema = await api("GET", "fault-schema");
  const defs = schema.$defs || {};
  const required = new Set(schema.required || []);
  const fields = [];
  for (const [name, property] of Object.entries(schema.properties)) {
    const { node } = branch(property, defs);
    const id = "fault-" + name;
    const label = el("label", { for: id, text: name + (required.has(name) ? " (required)" : "") });
    let input;
    if (node.enum) {
      input = el("select", { id });
      input.append(el("option", { value: "", text: "any" }));
      for (const value of node.enum) input.append(el("option", { value: String(value), text: String(value) }));
    } else if (node.type === "boolean") {
      input = el("input", { id, type: "checkbox" });
      input.checked = property.default === true;
    } else if (node.type === "integer" || node.type === "number") {
      input = el("input", { id, type: "number", step: node.type === "integer" ? "1" : "any" });
      if (node.minimum !== undefined) input.min = node.minimum;
      if (node.maximum !== undefined) input.max = node.maximum;
    } else if (node.type === "string") {
      // Long texts (a fault's body) get a text area.
      input = node.maxLength > 1000 ? el("textarea", { id, rows: "3" }) : el("input", { id, type: "text" });
      if (node.maxLength) input.maxLength = node.maxLength;
    } else {
      input = el("textarea", { id, rows: "2", placeholder: "JSON" });
    }
    input.dataset.field = name;
    const scalar = ["boolean", "integer", "number", "string"].includes(node.type);
    input.dataset.kind = node.enum ? "enum" : scalar ? node.type : "json";
    if (name === "path") input.value = "/Analytics/*";
    const wrap = el("div", { class: node.type === "boolean" ? "field check" : "field" });
    if (node.type === "boolean") wrap.append(input, label); else wrap.append(label, input);
    const help = property.description || node.description;
    if (help) {
      const hint = el("span", { class: "hint", id: id + "-hint", text: help });
      input.setAttribute("aria-describedby", hint.id);
      wrap.append(hint);
    }
    fields.push(wrap);
  }
  $("fault-fields").replaceChildren(...fields);
  formBuilt = true;
}

function faultBody() {
  const body = {};
  for (const input of $("fault-fields").querySelectorAll("[data-field]")) {
    const name = input.dataset.field;
    const kind = input.dataset.kind;
    if (kind === "boolean") {
      if (input.checked) body[name] = true;
    } else if (input.value.trim() !== "") {
      if (kind === "integer" || kind === "number") body[name] = Number(input.value);
      else if (kind === "json") body[name] = JSON.parse(input.value);
      else body[name] = input.value;
    }
  }
  return body;
}

function download() {
  api("GET", "state").then((state) => {
    const blob = new Blob([JSON.stringify(state, null, 2)], { type: "application/json" });
    const link = el("a", { href: URL.createObjectURL(blob), download: "analytics-mock-state.json" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  }).catch((error) => (error instanceof Unauthorized ? askToken() : showError(error.message)));
}

function start() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    $("token").value = "";
    $("token-form").hidden = true;
    refresh();
  });
  $("maintenance").addEventListener("change", (event) =>
    act("PUT", "maintenance", { enabled: event.target.checked }));
  $("reset").addEventListener("click", () => act("POST", "reset"));
  $("clear-journal").addEventListener("click", () => act("DELETE", "requests"));
  $("clear-mails").addEventListener("click", () => act("DELETE", "test-mails"));
  $("clear-faults").addEventListener("click", () => act("DELETE", "faults"));
  $("download").addEventListener("click", download);
  $("upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) await act("PUT", "state", await file.text());
    event.target.value = "";
  });
  $("fault-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    let body;
    try { body = faultBody(); } catch (error) { showError("A JSON field is invalid: " + error.message); return; }
    if (await act("POST", "faults", body)) $("live").textContent = "Fault added.";
  });
  $("journal-filter").addEventListener("submit", (event) => event.preventDefault());
  for (const id of ["f-method", "f-path", "f-status"]) $(id).addEventListener("input", refresh);
  // A hidden page (another tab, a minimised window) asks the server nothing, and catches up
  // as soon as it is shown again.
  let timer = null;
  const poll = () => {
    clearInterval(timer);
    timer = document.hidden ? null : setInterval(refresh, POLL_MS);
    if (!document.hidden) refresh();
  };
  document.addEventListener("visibilitychange", poll);
  poll();
}

document.addEventListener("DOMContentLoaded", start);
