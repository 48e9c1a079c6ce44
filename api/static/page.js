// rerankq's page: forms, live progress and the threshold slider, over the JSON API.
// Plain script, no library: each piece is a few lines of fetch and DOM, and owning them here keeps
// the API key (sessionStorage) on every request the page makes.
"use strict";

const KEY = "rerankq-key";
const ACTIVE = ["queued", "running"];

// The API key: kept in this tab's sessionStorage and sent as a bearer token, and mirrored in a
// session cookie so that what the browser fetches itself (pages, downloads: reads only, the API
// takes no cookie for a write) carries it too; a new tab finds it in the cookie.
function cookieKey() {
  const found = document.cookie.split("; ").find((part) => part.startsWith("rerankq_key="));
  return found ? decodeURIComponent(found.slice("rerankq_key=".length)) : "";
}

function currentKey() {
  return sessionStorage.getItem(KEY) || cookieKey();
}

function apiHeaders(extra) {
  const key = currentKey();
  return Object.assign({}, extra, key ? { Authorization: `Bearer ${key}` } : {});
}

async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, { ...init, headers: apiHeaders(init.headers) });
  } catch (error) {
    return { ok: false, status: 0, body: { error: `the API did not answer (${error.message})` } };
  }
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  return { ok: response.ok, status: response.status, body };
}

function setupKey() {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  input.value = currentKey();
  if (document.querySelector("[data-needs-key]")) form.closest("details").open = true;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (key) sessionStorage.setItem(KEY, key);
    else sessionStorage.removeItem(KEY);
    document.cookie = `rerankq_key=${encodeURIComponent(key)}; path=/; SameSite=Strict` + (key ? "" : "; max-age=0");
    location.reload(); // the page itself is read with the key
  });
}

// ---- errors beside the field the API names ----

function fieldFor(form, name) {
  // The field whose data-fields holds the longest prefix of the API's field path.
  let best = null;
  let length = -1;
  for (const field of form.querySelectorAll("[data-fields]")) {
    if (field.hidden) continue;
    for (const prefix of field.dataset.fields.split(" ")) {
      if ((name === prefix || name.startsWith(prefix + ".")) && prefix.length > length) {
        best = field;
        length = prefix.length;
      }
    }
  }
  return best;
}

function clearErrors(form) {
  for (const error of form.querySelectorAll(".error")) error.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

function showError(form, body) {
  const field = body.field ? fieldFor(form, body.field) : null;
  const where = field ? field.querySelector(".error") : form.querySelector("#form-error");
  where.textContent = body.error || "The request failed.";
  const input = field && field.querySelector("input, textarea, select");
  if (input) {
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
}

// ---- threshold presets and sliders ----

function setupThreshold(slider, output, onChange) {
  const presets = slider.closest(".threshold-field").querySelectorAll(".preset");
  const update = () => {
    const value = Number(slider.value);
    output.textContent = value.toFixed(2);
    for (const preset of presets) preset.setAttribute("aria-pressed", String(Number(preset.dataset.threshold) === value));
    onChange(value);
  };
  for (const preset of presets) {
    preset.addEventListener("click", () => {
      slider.value = preset.dataset.threshold;
      update();
    });
  }
  slider.addEventListener("input", update);
  update();
}

// ---- submit ----

function passages(text) {
  const separator = /\n\s*\n/.test(text.trim()) ? /\n\s*\n/ : /\n/;
  return text.split(separator).map((passage) => passage.trim()).filter(Boolean);
}

function jobOptions(form) {
  const options = {
    threshold: Number(form.threshold.value),
    chunking: { enabled: form.chunking.checked },
    clean_html: form.clean_html.checked,
  };
  if (form.top_k.value) options.top_k = Number(form.top_k.value);
  if (form.max_length.value) options.max_length = Number(form.max_length.value);
  return options;
}

function submitRequest(form) {
  const source = form.source.value;
  const options = jobOptions(form);
  const priority = form.priority.value || undefined;
  if (source === "file") {
    const file = form.file.files[0];
    if (!file) return { error: { field: "body", error: "choose a job file" } };
    const params = new URLSearchParams({ options: JSON.stringify(options) });
    if (priority) params.set("priority", priority);
    return { path: `/v1/jobs?${params}`, init: { method: "POST", body: file, headers: { "Content-Type": "application/x-ndjson" } } };
  }
  const query = { id: "q1", text: form.query.value };
  const body = { queries: [query], options, priority };
  if (source === "collection") body.collection = form.collection.value.trim();
  else query.documents = passages(form.documents.value).map((text, i) => ({ id: `d${i + 1}`, text }));
  return { path: "/v1/jobs", init: { method: "POST", body: JSON.stringify(body), headers: { "Content-Type": "application/json" } } };
}

function showSource(form) {
  for (const field of form.querySelectorAll("[data-source]")) {
    field.hidden = !field.dataset.source.split(" ").includes(form.source.value);
  }
}

function setupSubmit(form) {
  for (const radio of form.source) radio.addEventListener("change", () => showSource(form));
  const wanted = new URLSearchParams(location.search).get("collection");
  if (wanted) {
    form.source.value = "collection";
    form.collection.value = wanted;
  }
  showSource(form);
  setupThreshold(form.threshold, document.getElementById("threshold-value"), () => {});
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const request = submitRequest(form);
    if (request.error) return showError(form, request.error);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    const { ok, body } = await api(request.path, request.init);
    button.disabled = false;
    if (ok) location.assign(`/jobs/${body.id}`);
    else showError(form, body);
  });
}

// ---- collections ----

function setupCollections(form) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const file = form.file.files[0];
    if (!file) return showError(form, { field: "file", error: "choose a JSONL file" });
    const data = new FormData();
    data.append("file", file);
    const name = form.name.value.trim();
    const { ok, body } = await api(`/v1/collections${name ? `?name=${encodeURIComponent(name)}` : ""}`, { method: "POST", body: data });
    if (!ok) return showError(form, body);
    location.assign(`/collections/${body.id}`);
  });
}

// ---- progress ----

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function paintProgress(element, job) {
  const p = job.progress;
  const percent = p.total ? (100 * (p.done + p.failed)) / p.total : job.status === "completed" ? 100 : 0;
  element.dataset.status = job.status;
  element.querySelector(".fill").style.width = `${percent.toFixed(1)}%`;
  element.querySelector(".fill").className = `fill status-${job.status}`;
  element.querySelector("[role=progressbar]").setAttribute("aria-valuenow", String(Math.round(percent)));
  element.querySelector(".percent").textContent = `${Math.floor(percent)} %`;
  const failed = p.failed ? `, ${p.failed.toLocaleString("en")} failed` : "";
  element.querySelector(".pairs").textContent = `${p.done.toLocaleString("en")} / ${p.total.toLocaleString("en")} pairs${failed}`;
  const rate = p.pairs_per_second;
  const digits = rate !== null && rate < 10 ? 1 : 0;
  element.querySelector(".rate").textContent = rate === null ? "" : `${rate.toLocaleString("en", { maximumFractionDigits: digits })} pairs/s`;
  element.querySelector(".eta").textContent = ACTIVE.includes(job.status) ? `ETA ${duration(p.eta_seconds)}` : "";
  for (const badge of document.querySelectorAll(`[data-status-of="${job.id}"]`)) {
    badge.textContent = job.status;
    badge.className = `badge status-${job.status}`;
  }
}

function setupProgress() {
  const bars = [...document.querySelectorAll(".progress[data-job]")];
  for (const bar of bars) paintProgress(bar, JSON.parse(bar.dataset.jobJson));
  const onJobPage = Boolean(document.querySelector(".job-summary"));
  const tick = async () => {
    const active = bars.filter((bar) => ACTIVE.includes(bar.dataset.status));
    if (!active.length) return;
    for (const bar of active) {
      const { ok, body } = await api(`/v1/jobs/${bar.dataset.job}`);
      if (!ok) continue;
      paintProgress(bar, body);
      if (onJobPage && !ACTIVE.includes(body.status)) return location.reload(); // results are ready
    }
    setTimeout(tick, 1000);
  };
  setTimeout(tick, 1000);
  for (const button of document.querySelectorAll("[data-cancel]")) {
    button.addEventListener("click", async () => {
      button.disabled = true;
      await api(`/v1/jobs/${button.dataset.cancel}/cancel`, { method: "POST" });
      location.reload();
    });
  }
}

// ---- results ----

const BANDS = {
  relevant: "Relevant",
  borderline: "Borderline (within 0.1 below)",
  below: "Not relevant",
};

function band(probability, threshold) {
  if (probability > threshold) return "relevant";
  return probability > threshold - 0.1 ? "borderline" : "below";
}

function recolour(threshold) {
  let relevant = 0;
  for (const result of document.querySelectorAll(".result[data-probability]")) {
    const which = band(Number(result.dataset.probability), threshold);
    result.dataset.band = which;
    const label = result.querySelector(".band-label");
    if (label) label.textContent = BANDS[which];
    if (which === "relevant") relevant += 1;
  }
  document.getElementById("relevant-count").textContent = String(relevant);
}

function setupResults() {
  const slider = document.getElementById("page-threshold");
  if (slider) setupThreshold(slider, document.getElementById("page-threshold-value"), recolour);
  for (const whole of document.querySelectorAll("details.whole")) {
    // Opened, the whole text scrolls to its winning window.
    whole.addEventListener("toggle", () => {
      const text = whole.querySelector(".passage");
      const best = whole.querySelector(".window");
      if (whole.open) text.scrollTop = best.offsetTop - 24;
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setupKey();
  const submit = document.getElementById("submit-form");
  if (submit) setupSubmit(submit);
  const upload = document.getElementById("collection-form");
  if (upload) setupCollections(upload);
  setupProgress();
  setupResults();
});
