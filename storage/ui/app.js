// wardseal ward screen.
//
// Reads only through this server's FHIR API (/fhir/...) and its live stream
// (/v1/events/stream) with the certificate the browser signed in with: it sees exactly
// what that identity may read, and every read is in the patient's access log. It builds
// the page with DOM calls and SVG (no HTML strings, no inline script or style: the
// Content-Security-Policy forbids both), so text from the server is only ever text.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const FLAG_PRIORITY = "http://hl7.org/fhir/StructureDefinition/flag-priority";
const PRIORITY = {
  PH: { rank: 3, name: "high" },
  PM: { rank: 2, name: "medium" },
  PL: { rank: 1, name: "low" },
  PN: { rank: 0, name: "none" },
};
const WINDOWS = [
  ["15 minutes", 15 * 60],
  ["1 hour", 3600],
  ["6 hours", 6 * 3600],
  ["24 hours", 24 * 3600],
  ["7 days", 7 * 24 * 3600],
];
// A device not heard from for this long is shown as silent (when the server says when
// it last heard it).
const SILENT_AFTER_MS = 5 * 60 * 1000;
const SPARK_POINTS = 30;

const state = {
  session: null,
  // Patient id -> { id, location, devices, flags, history, vitals: code -> [obs] }
  patients: new Map(),
  windowSeconds: 3600,
  stream: null,
  loadError: null,
  // Reading leaf -> interpretation code, from alert events (see onAlert).
  interpretations: new Map(),
  route: { view: "overview" },
};

// ---------------------------------------------------------------------------------------
// DOM helpers

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  setAttributes(node, attributes);
  append(node, children);
  return node;
}

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  setAttributes(node, attributes);
  append(node, children);
  return node;
}

function setAttributes(node, attributes) {
  for (const [key, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

// Replaces `old` by `fresh`, keeping the keyboard focus on the element with the same
// data-key if there was one inside.
function swap(old, fresh) {
  const focused = document.activeElement;
  const key = focused && old.contains(focused) ? focused.getAttribute("data-key") : null;
  old.replaceWith(fresh);
  if (key) {
    const again = fresh.querySelector(`[data-key="${CSS.escape(key)}"]`);
    if (again) again.focus();
  }
}

function clear(node) {
  while (node.firstChild) node.firstChild.remove();
}

function problem(text) {
  const box = document.getElementById("problem");
  if (!text) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.textContent = text;
}

function announce(text) {
  const box = document.getElementById("announce");
  box.textContent = "";
  // A new node, so screen readers read it even if the text repeats.
  window.setTimeout(() => {
    box.textContent = text;
  }, 50);
}

// ---------------------------------------------------------------------------------------
// The API

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function request(path, options) {
  const response = await fetch(path, {
    credentials: "same-origin",
    headers: { accept: "application/fhir+json, application/json" },
    ...options,
  });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (_) {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, errorText(response.status, body));
  }
  return body;
}

function errorText(status, body) {
  if (body && body.resourceType === "OperationOutcome" && Array.isArray(body.issue)) {
    const issue = body.issue[0] || {};
    return `${status}: ${issue.diagnostics || (issue.details && issue.details.text) || issue.code || "refused"}`;
  }
  if (body && body.message) return `${status}: ${body.message}`;
  return `the server answered ${status}`;
}

function fhir(path) {
  return request(`/fhir/${path}`);
}

function resources(bundle, type) {
  return ((bundle && bundle.entry) || [])
    .map((entry) => entry.resource)
    .filter((resource) => resource && (!type || resource.resourceType === type));
}

// Follows a searchset's `next` links, up to `pages` pages.
async function searchAll(path, pages) {
  let bundle = await fhir(path);
  const found = resources(bundle);
  for (let page = 1; page < pages; page += 1) {
    const next = ((bundle && bundle.link) || []).find((link) => link.relation === "next");
    if (!next || !next.url) break;
    const url = new URL(next.url, window.location.href);
    if (url.origin !== window.location.origin) break;
    bundle = await request(url.pathname + url.search);
    found.push(...resources(bundle));
  }
  return found;
}

function query(parameters) {
  return new URLSearchParams(parameters).toString();
}

// ---------------------------------------------------------------------------------------
// Reading FHIR resources

function reference(ref, type) {
  const text = (ref && ref.reference) || "";
  const prefix = `${type}/`;
  return text.startsWith(prefix) ? text.slice(prefix.length) : null;
}

function localCode(observation) {
  const system = state.session.system;
  const codings = (observation.code && observation.code.coding) || [];
  const local = codings.find((coding) => coding.system === system);
  return local ? local.code : null;
}

function vitalOf(code) {
  return state.session.vitals.find((vital) => vital.code === code);
}

function observationTime(observation) {
  return Date.parse(observation.effectiveDateTime || (observation.effectivePeriod || {}).start || "") || 0;
}

// The number a chart plots (systolic for blood pressure), or null.
function plotted(observation) {
  if (observation.valueQuantity) return Number(observation.valueQuantity.value);
  const components = observation.component || [];
  if (components.length && components[0].valueQuantity) return Number(components[0].valueQuantity.value);
  return null;
}

function valueText(observation) {
  if (observation.valueQuantity) return String(observation.valueQuantity.value);
  const components = observation.component || [];
  if (components.length >= 2) {
    return components.map((component) => (component.valueQuantity || {}).value).join("/");
  }
  if (observation.valueSampledData) {
    const samples = String(observation.valueSampledData.data || "").trim().split(/\s+/).filter(Boolean);
    return `waveform, ${samples.length} samples`;
  }
  return "—";
}

function unitText(observation) {
  const quantity = observation.valueQuantity
    || ((observation.component || [])[0] || {}).valueQuantity
    || (observation.valueSampledData || {}).origin
    || {};
  return quantity.unit || quantity.code || "";
}

const INTERPRETATION_TEXT = { L: "low", H: "high", LL: "critically low", HH: "critically high" };

function interpretation(observation) {
  const concept = (observation.interpretation || [])[0];
  if (!concept) {
    const code = state.interpretations.get(observation.id);
    return code ? { code, text: INTERPRETATION_TEXT[code] || code } : null;
  }
  const coding = (concept.coding || [])[0] || {};
  return { code: coding.code || "", text: concept.text || coding.display || coding.code || "" };
}

function leafOf(observation) {
  return observation.id;
}

function flagInfo(flag) {
  const extension = (flag.extension || []).find((item) => item.url === FLAG_PRIORITY);
  const codings = extension && extension.valueCodeableConcept ? extension.valueCodeableConcept.coding || [] : [];
  const code = (codings[0] || {}).code || "PN";
  const priority = PRIORITY[code] || PRIORITY.PN;
  const concept = flag.code || {};
  const coding = (concept.coding || [])[0] || {};
  const text = concept.text || coding.display || coding.code || "alert";
  const acknowledged = acknowledgement(flag);
  return {
    id: flag.id,
    patient: reference(flag.subject, "Patient"),
    priority,
    code: coding.code || "",
    text,
    since: Date.parse((flag.period || {}).start || "") || 0,
    active: flag.status === "active",
    acknowledged,
    resource: flag,
  };
}

// Who acknowledged a flag and when, when its life-cycle state (a wardseal extension)
// says it is acknowledged; else null.
function acknowledgement(flag) {
  const extensions = flag.extension || [];
  const value = (pattern) => {
    const item = extensions.find((extension) => pattern.test(extension.url || ""));
    return item ? item.valueCode || item.valueString || item.valueInstant || item.valueDateTime || null : null;
  };
  const stateName = value(/alert-state$/);
  const who = value(/acknowledged-by$/);
  if (stateName !== "acknowledged" && !who) return null;
  return { who: who || "someone", when: value(/acknowledged-at$/) };
}

function locationOf(encounter) {
  const parts = { ward: null, room: null, bed: null, other: [] };
  for (const item of encounter.location || []) {
    const display = (item.location && item.location.display) || "";
    const type = item.physicalType || (item.location && item.location.physicalType) || {};
    const code = ((type.coding || [])[0] || {}).code;
    if (code === "wa") parts.ward = display;
    else if (code === "ro") parts.room = display;
    else if (code === "bd") parts.bed = display;
    else if (display) parts.other.push(display);
  }
  return parts;
}

// The most precise place named (a bed's display names its ward and room too).
function locationText(location) {
  if (!location) return "not admitted";
  return location.bed || location.room || location.ward || location.other.join(", ") || "admitted";
}

function locationSortKey(location) {
  if (!location) return "~";
  return [location.ward, location.room, location.bed, ...location.other]
    .map((part) => String(part || "").padStart(8, " "))
    .join("|");
}

function deviceInfo(device, flags) {
  const epc = ((device.identifier || []).find((id) => /epc/i.test(id.system || "")) || {}).value || device.id;
  const name = ((device.deviceName || [])[0] || {}).name || (device.type && (device.type.text || ((device.type.coding || [])[0] || {}).display)) || epc.replace(/^urn:epc:id:sgtin:/, "device ");
  let lastHeard = null;
  for (const item of device.extension || []) {
    if (/last|heard|seen/i.test(item.url || "")) lastHeard = Date.parse(item.valueDateTime || item.valueInstant || "") || lastHeard;
  }
  for (const property of device.property || []) {
    const text = JSON.stringify(property.type || {});
    if (/last|heard|seen/i.test(text)) {
      const value = (property.valueQuantity || [])[0];
      if (value && value.value) lastHeard = Number(value.value) * (value.code === "s" ? 1000 : 1);
    }
  }
  let status = "live";
  if (device.status && device.status !== "active") status = "revoked";
  else if (flags.some((flag) => flag.active && flag.code === "device_silent" && reference(flag.resource.author, "Device") === device.id)) status = "silent";
  else if (lastHeard && Date.now() - lastHeard > SILENT_AFTER_MS) status = "silent";
  return { id: device.id, epc, name, status, lastHeard };
}

// ---------------------------------------------------------------------------------------
// Drawing

// The priority's shape: triangle (high), diamond (medium), circle (low), square (none).
function priorityShape(name, size) {
  const s = size || 16;
  const icon = svg("svg", { width: s, height: s, viewBox: "0 0 16 16", "aria-hidden": "true", focusable: "false" });
  if (name === "high") icon.append(svg("polygon", { points: "8,1 15,15 1,15", fill: "currentColor", stroke: "#000000", "stroke-width": "0.8" }), svg("rect", { x: "7.1", y: "5.5", width: "1.8", height: "5", fill: name === "high" ? "#a4001d" : "#ffffff" }));
  else if (name === "medium") icon.append(svg("polygon", { points: "8,1 15,8 8,15 1,8", fill: "currentColor" }));
  else if (name === "low") icon.append(svg("circle", { cx: "8", cy: "8", r: "6", fill: "currentColor" }));
  else icon.append(svg("rect", { x: "2", y: "2", width: "12", height: "12", fill: "none", stroke: "currentColor", "stroke-width": "2" }));
  return icon;
}

function priorityLabel(priority) {
  return el("span", { class: "prio" }, priorityShape(priority.name), `${priority.name} priority`);
}

function sparkline(values) {
  const width = 120;
  const height = 28;
  const box = svg("svg", { class: "spark", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": values.length ? `trend of the last ${values.length} values, from ${values[0]} to ${values[values.length - 1]}` : "no trend yet" });
  if (values.length < 2) return box;
  const low = Math.min(...values);
  const high = Math.max(...values);
  const span = high - low || 1;
  const points = values.map((value, index) => `${((index / (values.length - 1)) * (width - 4) + 2).toFixed(1)},${(height - 3 - ((value - low) / span) * (height - 6)).toFixed(1)}`);
  box.append(svg("polyline", { points: points.join(" "), fill: "none", stroke: "#0b4f6c", "stroke-width": "1.8", "stroke-linejoin": "round" }));
  const [lastX, lastY] = points[points.length - 1].split(",");
  box.append(svg("circle", { cx: lastX, cy: lastY, r: "2.5", fill: "#0b4f6c" }));
  return box;
}

function timeText(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function dateTimeText(ms) {
  if (!ms) return "";
  return new Date(ms).toLocaleString([], { dateStyle: "short", timeStyle: "medium" });
}

function agoText(ms) {
  if (!ms) return "";
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${Math.round(seconds / 3600)} h ago`;
}

// A chart of (time, value) points over [from, to], with its axis labels.
function chart(points, from, to, vital) {
  const width = 520;
  const height = 170;
  const left = 46;
  const right = 10;
  const top = 10;
  const bottom = 26;
  const title = `${vital.display} over the chosen window: ${points.length} readings`;
  const box = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title });
  box.append(svg("rect", { x: left, y: top, width: width - left - right, height: height - top - bottom, fill: "#ffffff", stroke: "#c3ccd5" }));
  if (!points.length) {
    box.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no readings in this window"));
    return box;
  }
  const values = points.map((point) => point[1]);
  let low = Math.min(...values);
  let high = Math.max(...values);
  if (low === high) {
    low -= 1;
    high += 1;
  }
  const x = (time) => left + ((time - from) / Math.max(1, to - from)) * (width - left - right);
  const y = (value) => top + (1 - (value - low) / (high - low)) * (height - top - bottom);
  for (const value of [low, (low + high) / 2, high]) {
    box.append(svg("line", { x1: left, x2: width - right, y1: y(value), y2: y(value), stroke: "#e3e8ed" }));
    box.append(svg("text", { x: left - 4, y: y(value) + 4, "text-anchor": "end" }, formatNumber(value)));
  }
  box.append(svg("text", { x: left, y: height - 8 }, timeText(from)));
  box.append(svg("text", { x: width - right, y: height - 8, "text-anchor": "end" }, timeText(to)));
  const path = points.map((point) => `${x(point[0]).toFixed(1)},${y(point[1]).toFixed(1)}`).join(" ");
  box.append(svg("polyline", { points: path, fill: "none", stroke: "#0b4f6c", "stroke-width": "2", "stroke-linejoin": "round" }));
  for (const point of points.slice(-60)) {
    box.append(svg("circle", { cx: x(point[0]).toFixed(1), cy: y(point[1]).toFixed(1), r: "2", fill: "#0b4f6c" }));
  }
  return box;
}

function formatNumber(value) {
  return Math.abs(value) >= 100 ? value.toFixed(0) : value.toFixed(1);
}

// A waveform strip: the samples of one SampledData block.
function waveform(observation, vital) {
  const width = 520;
  const height = 120;
  const data = observation.valueSampledData || {};
  const factor = Number(data.factor || 1);
  const origin = Number((data.origin || {}).value || 0);
  const samples = String(data.data || "").trim().split(/\s+/).filter(Boolean).map((sample) => origin + Number(sample) * factor).filter(Number.isFinite);
  const period = Number(data.period || 0);
  const seconds = period ? (samples.length * period) / 1000 : 0;
  const box = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${vital.display} strip: ${samples.length} samples${seconds ? ` over ${seconds.toFixed(1)} s` : ""} at ${timeText(observationTime(observation))}` });
  box.append(svg("rect", { x: 0, y: 0, width, height, fill: "#fff7f7", stroke: "#e8c4c4" }));
  for (let gx = 0; gx <= width; gx += 20) box.append(svg("line", { x1: gx, x2: gx, y1: 0, y2: height, stroke: "#f3d9d9" }));
  for (let gy = 0; gy <= height; gy += 20) box.append(svg("line", { x1: 0, x2: width, y1: gy, y2: gy, stroke: "#f3d9d9" }));
  if (samples.length < 2) return box;
  let low = Math.min(...samples);
  let high = Math.max(...samples);
  if (low === high) {
    low -= 1;
    high += 1;
  }
  const path = samples.map((sample, index) => `${((index / (samples.length - 1)) * width).toFixed(1)},${(6 + (1 - (sample - low) / (high - low)) * (height - 12)).toFixed(1)}`).join(" ");
  box.append(svg("polyline", { points: path, fill: "none", stroke: "#14181c", "stroke-width": "1.4" }));
  box.append(svg("text", { x: 6, y: height - 6 }, `${seconds ? `${seconds.toFixed(1)} s, ` : ""}${formatNumber(low)} to ${formatNumber(high)} ${unitText(observation)}`));
  return box;
}

// ---------------------------------------------------------------------------------------
// Loading

function patientRecord(id) {
  if (!state.patients.has(id)) {
    state.patients.set(id, { id, location: null, devices: [], flags: [], history: null, vitals: new Map(), loaded: false });
  }
  return state.patients.get(id);
}

async function loadWard() {
  const [patients, encounters] = await Promise.all([
    searchAll("Patient", 5),
    searchAll(`Encounter?${query({ status: "in-progress" })}`, 5).catch(() => []),
  ]);
  const seen = new Set();
  for (const patient of patients) {
    if (patient.resourceType !== "Patient") continue;
    patientRecord(patient.id);
    seen.add(patient.id);
  }
  for (const encounter of encounters) {
    const id = reference(encounter.subject, "Patient");
    if (id && seen.has(id)) patientRecord(id).location = locationOf(encounter);
  }
  for (const id of [...state.patients.keys()]) {
    if (!seen.has(id)) state.patients.delete(id);
  }
  await Promise.all([...state.patients.values()].map((record) => loadPatientSummary(record)));
}

async function loadFlags(record) {
  const flags = await searchAll(`Flag?${query({ patient: record.id, status: "active" })}`, 3);
  record.flags = flags.filter((flag) => flag.resourceType === "Flag").map(flagInfo);
}

async function loadPatientSummary(record) {
  const vitals = state.session.vitals.filter((vital) => vital.shape !== "waveform");
  const [devices] = await Promise.all([
    searchAll(`Device?${query({ patient: record.id })}`, 2).catch(() => []),
    loadFlags(record),
    ...vitals.map(async (vital) => {
      const found = await fhir(`Observation?${query({ patient: record.id, code: `${state.session.system}|${vital.code}`, _sort: "-date", _count: String(SPARK_POINTS) })}`);
      record.vitals.set(vital.code, resources(found, "Observation"));
    }),
  ]);
  record.devices = devices.filter((device) => device.resourceType === "Device");
  record.loaded = true;
}

// ---------------------------------------------------------------------------------------
// The overview

function allActiveFlags() {
  const flags = [];
  for (const record of state.patients.values()) flags.push(...record.flags.filter((flag) => flag.active));
  return flags.sort((a, b) => b.priority.rank - a.priority.rank || Boolean(a.acknowledged) - Boolean(b.acknowledged) || b.since - a.since);
}

function renderAlerts() {
  const section = document.getElementById("alerts");
  const list = document.getElementById("alert-list");
  const flags = state.route.view === "patient" ? allActiveFlags().filter((flag) => flag.patient === state.route.patient) : allActiveFlags();
  const fresh = el("ol", { id: "alert-list", class: "alert-list" });
  for (const flag of flags) fresh.append(alertItem(flag));
  section.hidden = flags.length === 0;
  swap(list, fresh);
}

function alertItem(flag) {
  const record = state.patients.get(flag.patient);
  const classes = ["alert", `priority-${flag.priority.name}`];
  if (flag.acknowledged) classes.push("acknowledged");
  const canAcknowledge = state.session.role === "staff" && !flag.acknowledged;
  return el("li", { class: classes.join(" "), "data-flag": flag.id, "data-priority": flag.priority.name },
    priorityLabel(flag.priority),
    el("span", { class: "text" },
      el("span", { class: "title" }, flag.text),
      el("span", {},
        flag.patient ? el("a", { href: `#/patient/${encodeURIComponent(flag.patient)}` }, flag.patient) : "ward",
        record ? ` · ${locationText(record.location)}` : "",
        flag.since ? ` · raised ${timeText(flag.since)}` : "",
        flag.acknowledged ? ` · acknowledged by ${flag.acknowledged.who}` : ""),
    ),
    canAcknowledge
      ? el("button", { type: "button", class: "primary", "data-key": `ack-${flag.id}`, "data-action": "acknowledge", onclick: (event) => acknowledge(flag, event.currentTarget) }, "Acknowledge")
      : el("span", { class: "state" }, flag.acknowledged ? "Acknowledged" : ""),
  );
}

async function acknowledge(flag, button) {
  button.disabled = true;
  button.textContent = "Acknowledging…";
  try {
    await request(`/fhir/Flag/${encodeURIComponent(flag.id)}/$acknowledge`, { method: "POST", headers: { accept: "application/fhir+json", "content-type": "application/fhir+json" }, body: "{}" });
    problem(null);
    announce(`Alert acknowledged: ${flag.text}`);
  } catch (error) {
    problem(`The alert could not be acknowledged: ${error.message}`);
    button.disabled = false;
    button.textContent = "Acknowledge";
    return;
  }
  const record = state.patients.get(flag.patient);
  if (record) await refreshFlags(record);
}

function renderOverview() {
  const view = el("div", { id: "view" });
  const records = [...state.patients.values()].sort((a, b) => locationSortKey(a.location).localeCompare(locationSortKey(b.location)) || a.id.localeCompare(b.id));
  view.append(el("h2", {}, "Beds"));
  if (!records.length && !state.loadError) {
    view.append(el("p", { class: "empty", id: "no-patients" }, "No patient is assigned to you. Patients appear here when you are made responsible for them."));
  }
  const beds = el("div", { class: "beds" });
  for (const record of records) beds.append(bedCard(record));
  view.append(beds);
  swap(document.getElementById("view"), view);
}

function bedCard(record) {
  const alarmed = record.flags.some((flag) => flag.active && !flag.acknowledged && flag.priority.rank >= 3);
  const card = el("article", { class: alarmed ? "bed alarm" : "bed", "data-patient": record.id, "aria-labelledby": `bed-${record.id}` },
    el("header", {},
      el("h3", { id: `bed-${record.id}` }, el("a", { href: `#/patient/${encodeURIComponent(record.id)}`, "data-key": `open-${record.id}` }, record.id)),
      el("p", { class: "where" }, locationText(record.location))),
    statusChips(record),
    vitalsTable(record),
  );
  return card;
}

function statusChips(record) {
  const list = el("ul", { class: "chips", "aria-label": "Card and devices" });
  const cardAbsent = record.flags.some((flag) => flag.active && flag.code === "card_absent");
  list.append(el("li", { class: cardAbsent ? "chip bad" : "chip good", "data-card": cardAbsent ? "absent" : "present" }, cardAbsent ? "✕ card absent" : "✓ card present"));
  const devices = record.devices.map((device) => deviceInfo(device, record.flags));
  if (!devices.length) list.append(el("li", { class: "chip" }, "no device listed"));
  for (const device of devices) {
    const mark = { live: "●", silent: "◌", revoked: "✕" }[device.status];
    list.append(el("li", { class: device.status === "live" ? "chip good" : "chip bad", "data-device": device.id, "data-state": device.status, title: device.epc }, `${mark} ${device.name}: ${device.status}`));
  }
  return list;
}

function vitalsTable(record) {
  const table = el("table", { class: "vitals" });
  const body = el("tbody");
  for (const vital of state.session.vitals) {
    if (vital.shape === "waveform") continue;
    const readings = record.vitals.get(vital.code) || [];
    if (!readings.length) continue;
    body.append(vitalRow(record, vital, readings));
  }
  if (!body.childElementCount) {
    body.append(el("tr", {}, el("td", { class: "empty", colspan: "3" }, "no readings yet")));
  }
  table.append(el("caption", { class: "visually-hidden" }, `Latest vital signs of ${record.id}`), body);
  return table;
}

function vitalRow(record, vital, readings) {
  const latest = readings[0];
  const flag = interpretation(latest);
  const values = readings.map(plotted).filter((value) => value !== null && Number.isFinite(value)).reverse();
  return el("tr", { "data-vital": vital.code, "data-leaf": leafOf(latest) },
    el("th", { scope: "row" }, vital.display),
    el("td", {},
      el("span", { class: "value" }, valueText(latest)), " ",
      el("span", { class: "unit" }, unitText(latest)),
      flag ? el("span", { class: "interp", title: flag.text }, ` ${flag.code} (${flag.text})`) : "",
      el("br"),
      el("span", { class: "ago" }, timeText(observationTime(latest)))),
    el("td", {}, sparkline(values.slice(-SPARK_POINTS))));
}

// ---------------------------------------------------------------------------------------
// The patient view

async function renderPatient(id) {
  const record = patientRecord(id);
  const view = el("div", { id: "view", "data-patient-view": id });
  view.append(el("p", { class: "empty" }, `Loading ${id}…`));
  swap(document.getElementById("view"), view);
  try {
    if (!record.loaded) await loadPatientSummary(record);
    const [history, recent] = await Promise.all([
      searchAll(`Flag?${query({ patient: id })}`, 3),
      fhir(`Observation?${query({ patient: id, _sort: "-date", _count: "12" })}`),
    ]);
    record.history = history.filter((flag) => flag.resourceType === "Flag").map(flagInfo);
    record.recent = resources(recent, "Observation");
  } catch (error) {
    const failed = el("div", { id: "view" }, el("p", { class: "problem" }, `${id}: ${error.message}`));
    swap(document.getElementById("view"), failed);
    return;
  }
  const page = el("div", { id: "view", "data-patient-view": id });
  page.append(
    el("div", { class: "patient-head" },
      el("h2", {}, id),
      el("p", { class: "where" }, locationText(record.location)),
      statusChips(record)),
    el("div", { class: "controls" },
      el("label", { for: "window" }, "Window "),
      windowSelect(id)),
    el("div", { class: "charts", id: "charts" }),
    el("section", { class: "panel", "aria-labelledby": "recent-title" },
      el("h3", { id: "recent-title" }, "Recent readings and their proofs"),
      recentTable(record)),
    el("section", { class: "panel", "aria-labelledby": "history-title" },
      el("h3", { id: "history-title" }, "Alert history"),
      historyTable(record)),
  );
  if (state.session.role === "patient" && state.session.subject === id) {
    page.append(el("section", { class: "panel", "aria-labelledby": "log-title", id: "access-log" },
      el("h3", { id: "log-title" }, "Who read your record"),
      el("p", { class: "empty" }, "Loading the access log…")));
  }
  swap(document.getElementById("view"), page);
  renderAlerts();
  await loadCharts(record);
  if (state.session.role === "patient" && state.session.subject === id) await loadAccessLog(id);
}

function windowSelect(id) {
  const select = el("select", { id: "window", "data-key": "window", onchange: (event) => {
    state.windowSeconds = Number(event.currentTarget.value);
    loadCharts(patientRecord(id));
  } });
  for (const [label, seconds] of WINDOWS) {
    const option = el("option", { value: seconds }, label);
    if (seconds === state.windowSeconds) option.selected = true;
    select.append(option);
  }
  return select;
}

async function loadCharts(record) {
  const charts = document.getElementById("charts");
  if (!charts) return;
  const to = Date.now();
  const from = to - state.windowSeconds * 1000;
  const since = new Date(from).toISOString();
  const panels = await Promise.all(state.session.vitals.map(async (vital) => {
    try {
      if (vital.shape === "waveform") {
        const latest = resources(await fhir(`Observation?${query({ patient: record.id, code: `${state.session.system}|${vital.code}`, date: `ge${since}`, _sort: "-date", _count: "1" })}`), "Observation");
        if (!latest.length) return null;
        return el("section", { class: "panel", "data-chart": vital.code, "aria-label": vital.display },
          el("h3", {}, `${vital.display} (latest strip, ${timeText(observationTime(latest[0]))})`),
          waveform(latest[0], vital));
      }
      const found = await searchAll(`Observation?${query({ patient: record.id, code: `${state.session.system}|${vital.code}`, date: `ge${since}`, _sort: "date", _count: "500" })}`, 4);
      const points = found.filter((observation) => observation.resourceType === "Observation")
        .map((observation) => [observationTime(observation), plotted(observation)])
        .filter((point) => point[1] !== null && Number.isFinite(point[1]));
      if (!points.length) return null;
      return el("section", { class: "panel", "data-chart": vital.code, "aria-label": vital.display },
        el("h3", {}, `${vital.display} (${vital.unit})`),
        chart(points, from, to, vital));
    } catch (error) {
      return el("section", { class: "panel" }, el("h3", {}, vital.display), el("p", { class: "problem" }, error.message));
    }
  }));
  const fresh = el("div", { class: "charts", id: "charts" });
  const shown = panels.filter(Boolean);
  if (!shown.length) fresh.append(el("p", { class: "empty" }, "No readings in this window."));
  fresh.append(...shown);
  const current = document.getElementById("charts");
  if (current) swap(current, fresh);
}

function recentTable(record) {
  const table = el("table", { class: "table", id: "recent" });
  table.append(el("thead", {}, el("tr", {}, ["Time", "Vital", "Value", "Proof"].map((name) => el("th", { scope: "col" }, name)))));
  const body = el("tbody");
  for (const observation of record.recent || []) body.append(recentRow(observation));
  if (!body.childElementCount) body.append(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "no readings yet")));
  table.append(body);
  return table;
}

function recentRow(observation) {
  const code = localCode(observation);
  const vital = vitalOf(code) || { display: code || "reading" };
  const flag = interpretation(observation);
  const leaf = leafOf(observation);
  const proofCell = el("td", { class: "proof" },
    el("button", { type: "button", "data-key": `verify-${leaf}`, "data-action": "verify", onclick: (event) => verify(leaf, event.currentTarget.parentElement) }, "Check proof"));
  return el("tr", { "data-leaf": leaf },
    el("td", {}, timeText(observationTime(observation))),
    el("td", {}, vital.display),
    el("td", {}, `${valueText(observation)} ${unitText(observation)}`, flag ? el("strong", { class: "interp" }, ` ${flag.code}`) : ""),
    proofCell);
}

const STEP_NAMES = {
  certificate: "Patient certificate chains to the hospital CA",
  card_signature: "The patient's card signed the batch",
  inclusion: "The reading is in the signed batch",
  anchor_inclusion: "The batch is in the anchored batch log",
  on_chain: "The anchor is on the chain",
};
const STEP_MARKS = { passed: "✓ passed", failed: "✕ failed", pending: "… pending", not_run: "– not run" };

async function verify(leaf, cell) {
  const button = cell.querySelector("button");
  if (button) {
    button.disabled = true;
    button.textContent = "Checking…";
  }
  let result;
  try {
    result = await request(`/v1/readings/${encodeURIComponent(leaf)}/verify`);
  } catch (error) {
    const failed = el("td", { class: "proof" }, el("span", { class: "badge failed" }, `✕ ${error.message}`));
    swap(cell, failed);
    return;
  }
  const pending = result.checks.some((step) => step.outcome === "pending");
  const failedStep = result.checks.find((step) => step.outcome === "failed");
  let badge;
  if (result.verified) badge = el("span", { class: "badge verified", "data-proof": "verified" }, `✓ Signed by the patient's card, batch ${result.batch}, anchored in block ${result.block}`);
  else if (failedStep) badge = el("span", { class: "badge failed", "data-proof": "failed" }, `✕ Proof failed: ${STEP_NAMES[failedStep.check] || failedStep.check}`);
  else if (pending) badge = el("span", { class: "badge pending", "data-proof": "pending" }, `… Signed by the patient's card, batch ${result.batch}; anchoring pending`);
  else badge = el("span", { class: "badge failed", "data-proof": "unknown" }, "? Not verified");
  const steps = el("ol", { class: "steps" });
  for (const step of result.checks) {
    steps.append(el("li", { class: `step-${step.outcome}`, "data-step": step.check, "data-outcome": step.outcome },
      el("span", { class: "step-mark" }, STEP_MARKS[step.outcome] || step.outcome),
      `${STEP_NAMES[step.check] || step.check}: `,
      el("span", { class: "detail" }, step.detail)));
  }
  const details = el("details", { open: true }, el("summary", { "data-key": `steps-${leaf}` }, badge), steps);
  swap(cell, el("td", { class: "proof" }, details));
  const summary = details.querySelector("summary");
  if (summary) summary.focus();
}

function historyTable(record) {
  const table = el("table", { class: "table", id: "history" });
  table.append(el("thead", {}, el("tr", {}, ["Raised", "Priority", "Alert", "State"].map((name) => el("th", { scope: "col" }, name)))));
  const body = el("tbody");
  const flags = [...(record.history || [])].sort((a, b) => b.since - a.since);
  for (const flag of flags) {
    const stateText = flag.acknowledged ? `acknowledged by ${flag.acknowledged.who}${flag.acknowledged.when ? ` at ${dateTimeText(Date.parse(flag.acknowledged.when))}` : ""}` : flag.active ? "active" : "ended";
    body.append(el("tr", { "data-flag": flag.id },
      el("td", {}, dateTimeText(flag.since)),
      el("td", {}, priorityLabel(flag.priority)),
      el("td", {}, flag.text),
      el("td", {}, stateText)));
  }
  if (!body.childElementCount) body.append(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "no alerts")));
  table.append(body);
  return table;
}

// The patient's access log as rows: FHIR AuditEvents, or (from a server without them)
// the patient's own /v1/access-log.
async function accessLogRows(id) {
  try {
    const events = await searchAll(`AuditEvent?${query({ patient: id })}`, 5);
    return events.filter((event) => event.resourceType === "AuditEvent").map((event) => ({
      id: event.id,
      at: Date.parse(event.recorded || ""),
      who: (event.agent || []).map((agent) => (agent.who && (agent.who.display || (agent.who.identifier || {}).value || agent.who.reference)) || agent.name || "").filter(Boolean).join(", "),
      what: event.outcomeDesc || (event.entity || []).map((entity) => entity.description || (entity.what && entity.what.display) || "").filter(Boolean).join("; ") || ((event.subtype || [])[0] || {}).display || (event.type || {}).display || event.action || "",
      allowed: event.outcome === undefined || event.outcome === "0",
    }));
  } catch (error) {
    if (error.status !== 404) throw error;
  }
  const entries = await request("/v1/access-log");
  return (entries || []).map((entry) => ({
    id: String(entry.entry),
    at: Math.floor(Number(entry.at) / 1000),
    who: `${entry.who} (${entry.role})`,
    what: entry.what,
    allowed: Boolean(entry.allowed),
  }));
}

async function loadAccessLog(id) {
  const section = document.getElementById("access-log");
  if (!section) return;
  let rows;
  try {
    rows = await accessLogRows(id);
  } catch (error) {
    section.append(el("p", { class: "problem" }, error.message));
    return;
  }
  const table = el("table", { class: "table", id: "access-log-table" });
  table.append(el("thead", {}, el("tr", {}, ["When", "Who", "What", "Decision"].map((name) => el("th", { scope: "col" }, name)))));
  const body = el("tbody");
  rows.sort((a, b) => b.at - a.at);
  for (const row of rows) {
    body.append(el("tr", { "data-audit": row.id },
      el("td", {}, dateTimeText(row.at)),
      el("td", {}, row.who),
      el("td", {}, row.what),
      el("td", { class: row.allowed ? "" : "refused" }, row.allowed ? "✓ allowed" : "✕ refused")));
  }
  if (!body.childElementCount) body.append(el("tr", {}, el("td", { colspan: "4", class: "empty" }, "nobody has read your record")));
  table.append(body);
  const paragraph = section.querySelector("p");
  if (paragraph) paragraph.remove();
  section.append(table);
}

// ---------------------------------------------------------------------------------------
// Live

function connectStream() {
  const live = document.getElementById("live");
  const text = document.getElementById("live-text");
  const stream = new EventSource("/v1/events/stream");
  state.stream = stream;
  stream.onopen = () => {
    live.className = "live on";
    text.textContent = "Live";
  };
  stream.onerror = () => {
    // EventSource reconnects by itself; say so meanwhile.
    live.className = "live off";
    text.textContent = "Reconnecting…";
  };
  stream.addEventListener("observation", (event) => onObservation(JSON.parse(event.data)));
  for (const name of ["raised", "escalated", "acknowledged", "resolved"]) {
    stream.addEventListener(name, (event) => onAlert(name, JSON.parse(event.data)));
  }
}

function onObservation(observation) {
  const patient = reference(observation.subject, "Patient");
  const code = localCode(observation);
  if (!patient || !code || !state.patients.has(patient)) return;
  const record = state.patients.get(patient);
  const vital = vitalOf(code);
  if (!vital) return;
  if (vital.shape !== "waveform") {
    const readings = record.vitals.get(code) || [];
    if (readings.some((known) => known.id === observation.id)) return;
    readings.unshift(observation);
    readings.sort((a, b) => observationTime(b) - observationTime(a));
    record.vitals.set(code, readings.slice(0, SPARK_POINTS));
    const card = document.querySelector(`[data-patient="${CSS.escape(patient)}"]`);
    if (card) {
      const row = card.querySelector(`[data-vital="${CSS.escape(code)}"]`);
      const fresh = vitalRow(record, vital, record.vitals.get(code));
      if (row) swap(row, fresh);
      else swap(card, bedCard(record));
    }
  }
  if (state.route.view === "patient" && state.route.patient === patient) {
    record.recent = [observation, ...(record.recent || [])].slice(0, 12);
    const body = document.querySelector("#recent tbody");
    if (body) {
      const placeholder = body.querySelector(".empty");
      if (placeholder) placeholder.parentElement.remove();
      body.prepend(recentRow(observation));
      while (body.childElementCount > 12) body.lastElementChild.remove();
    }
    scheduleCharts(record);
  }
}

let chartTimer = null;
function scheduleCharts(record) {
  if (chartTimer) return;
  chartTimer = window.setTimeout(() => {
    chartTimer = null;
    loadCharts(record);
  }, 1000);
}

async function onAlert(name, event) {
  const alert = event.alert || {};
  const patient = alert.patient;
  if (!patient || !state.patients.has(patient)) return;
  if (name === "raised" || name === "escalated") {
    announce(`${name === "escalated" ? "Escalated" : "New"} ${alert.priority || ""} priority alert for ${patient}: ${alert.message || ""}`);
  }
  if (alert.reading && alert.interpretation) {
    // The collector raises the alert before the batch holding the reading is stored:
    // the reading's live event may come without its interpretation, so keep it here.
    state.interpretations.set(alert.reading, alert.interpretation);
    const record = state.patients.get(patient);
    const code = alert.data_type;
    const row = document.querySelector(`[data-patient="${CSS.escape(patient)}"] [data-vital="${CSS.escape(code || "")}"]`);
    const vital = vitalOf(code);
    if (row && vital && row.getAttribute("data-leaf") === alert.reading) swap(row, vitalRow(record, vital, record.vitals.get(code) || []));
  }
  await refreshFlags(state.patients.get(patient));
}

async function refreshFlags(record) {
  try {
    await loadFlags(record);
  } catch (error) {
    problem(`Alerts of ${record.id} could not be read: ${error.message}`);
    return;
  }
  renderAlerts();
  const card = document.querySelector(`[data-patient="${CSS.escape(record.id)}"]`);
  if (card) swap(card, bedCard(record));
  if (state.route.view === "patient" && state.route.patient === record.id) {
    try {
      const history = await searchAll(`Flag?${query({ patient: record.id })}`, 3);
      record.history = history.filter((flag) => flag.resourceType === "Flag").map(flagInfo);
      const table = document.getElementById("history");
      if (table) swap(table, historyTable(record));
    } catch (error) {
      problem(error.message);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Routing and start

function parseRoute() {
  const hash = window.location.hash.replace(/^#\/?/, "");
  const parts = hash.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts[0] === "patient" && parts[1]) return { view: "patient", patient: parts[1] };
  if (state.session && state.session.role === "patient") return { view: "patient", patient: state.session.subject };
  return { view: "overview" };
}

function renderNav() {
  const nav = document.getElementById("nav");
  clear(nav);
  if (state.session.role === "patient") {
    nav.append(el("a", { href: `#/patient/${encodeURIComponent(state.session.subject)}`, "aria-current": "page" }, "My record"));
    return;
  }
  nav.append(el("a", { href: "#/", "aria-current": state.route.view === "overview" ? "page" : false }, "Ward overview"));
  if (state.route.view === "patient") nav.append(el("a", { href: window.location.hash, "aria-current": "page" }, state.route.patient));
}

async function show() {
  state.route = parseRoute();
  renderNav();
  if (state.route.view === "patient") {
    await renderPatient(state.route.patient);
  } else {
    renderOverview();
    renderAlerts();
  }
  document.body.setAttribute("data-ready", state.route.view);
}

async function start() {
  try {
    state.session = await request("/ui/session");
  } catch (error) {
    problem(`Signing in failed: ${error.message}. Present a staff or patient certificate of this hospital.`);
    return;
  }
  const who = document.getElementById("who");
  who.textContent = `Signed in as ${state.session.subject} (${state.session.role})`;
  if (state.session.role === "admin") {
    problem("Administrators read no patient data here: sign in with a staff or patient certificate.");
  }
  try {
    await loadWard();
  } catch (error) {
    state.loadError = error;
    problem(`The ward could not be read: ${error.message}`);
  }
  connectStream();
  window.addEventListener("hashchange", () => {
    show().then(() => document.getElementById("main").focus());
  });
  await show();
}

start();
