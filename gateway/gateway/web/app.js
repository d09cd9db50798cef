// mp3converter web page: log in, upload with progress, follow the jobs, download, delete.
// Plain JavaScript, no build step. Everything the server or the user supplied (file names, errors, option
// descriptions) is inserted with textContent, never as HTML; the page's Content-Security-Policy (Trusted Types)
// makes the browser refuse HTML-string sinks anyway.
"use strict";

(() => {
  const TOKEN_KEY = "mp3converter.token";
  const EMAIL_KEY = "mp3converter.email";
  const POLL_BUSY_MS = 1000;   // while a job is queued or converting
  const POLL_IDLE_MS = 10000;  // otherwise: jobs only change when the user acts (or one expires)
  const PAGE = 50;             // jobs shown (the API allows up to 100 per page)
  const IN_FLIGHT = new Set(["queued", "converting"]);

  const $ = (id) => document.getElementById(id);

  class SessionEnded extends Error {}

  // ------------------------------------------------------------------ the token: session storage only

  const session = {
    token: () => sessionStorage.getItem(TOKEN_KEY),
    email: () => sessionStorage.getItem(EMAIL_KEY) || "",
    save(token, email) {
      sessionStorage.setItem(TOKEN_KEY, token);
      sessionStorage.setItem(EMAIL_KEY, email);
    },
    forget() {
      sessionStorage.removeItem(TOKEN_KEY);
      sessionStorage.removeItem(EMAIL_KEY);
    },
  };

  // ------------------------------------------------------------------ errors in words

  function show(element, text) {
    element.textContent = text || "";
    element.hidden = !text;
  }

  // One sentence for a refused request: the API's JSON {"error", "field"}, else the status (a proxy's HTML page).
  function describe(status, statusText, contentType, bodyText, retryAfter) {
    let message = null;
    let field = null;
    if ((contentType || "").toLowerCase().includes("json")) {
      try {
        const body = JSON.parse(bodyText);
        if (body && typeof body.error === "string" && body.error) message = body.error;
        if (body && typeof body.field === "string" && body.field) field = body.field;
      } catch (_) {
        // not JSON after all: fall back to the status
      }
    }
    if (status === 0) return "the connection to the server broke off";
    let text = message || `the server answered ${status}${statusText ? " " + statusText : ""}`;
    if (field && !text.includes(field)) text += ` (field: ${field})`;
    if (retryAfter && /^[0-9]+$/.test(retryAfter)) text += `; try again in ${retryAfter} s`;
    return text;
  }

  async function errorText(response) {
    let body = "";
    try {
      body = await response.text();
    } catch (_) {
      // the body broke off: the status still says something
    }
    return describe(response.status, response.statusText, response.headers.get("Content-Type"), body,
      response.headers.get("Retry-After"));
  }

  // ------------------------------------------------------------------ views

  function toLogin(notice) {
    session.forget();
    stopPolling();
    jobRows.clear();
    $("jobs-body").replaceChildren();
    $("app-view").hidden = true;
    $("whoami").hidden = true;
    $("login-view").hidden = false;
    show($("notice"), notice);
    $("login-password").value = "";
    $("login-email").focus();
  }

  function toApp() {
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("whoami").hidden = false;
    $("user-email").textContent = session.email();
    show($("login-error"), "");
    startPolling();
  }

  // ------------------------------------------------------------------ API calls with the token

  async function api(path, init = {}) {
    const token = session.token();
    if (!token) {
      toLogin("Please log in.");
      throw new SessionEnded();
    }
    const headers = new Headers(init.headers || {});
    headers.set("Authorization", `Bearer ${token}`);
    let response;
    try {
      response = await fetch(path, { ...init, headers, cache: "no-store", credentials: "omit" });
    } catch (error) {
      throw new Error(`the server could not be reached (${error.message})`);
    }
    if (response.status === 401) {
      sessionEnded(await errorText(response));
      throw new SessionEnded();
    }
    return response;
  }

  function sessionEnded(why) {
    toLogin(`Your session has ended (${why}). Please log in again.`);
  }

  // ------------------------------------------------------------------ log in and out

  function basicAuth(email, password) {
    // btoa takes Latin-1 only: encode the UTF-8 bytes of "email:password" ourselves.
    const bytes = new TextEncoder().encode(`${email}:${password}`);
    let binary = "";
    for (const byte of bytes) binary += String.fromCharCode(byte);
    return `Basic ${btoa(binary)}`;
  }

  async function login(event) {
    event.preventDefault();
    const email = $("login-email").value.trim();
    const password = $("login-password").value;
    const error = $("login-error");
    if (!email || !password) {
      show(error, "Enter your e-mail address and your password.");
      return;
    }
    const button = $("login-submit");
    button.disabled = true;
    show(error, "");
    try {
      // credentials "omit": a 401 must come back to this page, never open the browser's own login dialog.
      const response = await fetch("/login", {
        method: "POST",
        headers: { Authorization: basicAuth(email, password) },
        cache: "no-store",
        credentials: "omit",
      });
      if (!response.ok) {
        show(error, `Login failed: ${await errorText(response)}.`);
        return;
      }
      const token = (await response.text()).trim();
      session.save(token, email);
      $("login-password").value = "";
      show($("notice"), "");
      toApp();
    } catch (err) {
      show(error, `Login failed: the server could not be reached (${err.message}).`);
    } finally {
      button.disabled = false;
    }
  }

  function logout() {
    if (currentUpload) currentUpload.abort();
    toLogin("You are logged out.");
  }

  // ------------------------------------------------------------------ options, from the OpenAPI document

  function resolve(doc, schema) {
    // Local references only ("#/components/schemas/UploadForm"); a few hops at most.
    for (let hops = 0; schema && typeof schema.$ref === "string" && hops < 10; hops += 1) {
      let target = doc;
      for (const part of schema.$ref.replace(/^#\//, "").split("/")) target = target ? target[part] : undefined;
      schema = target;
    }
    return schema || {};
  }

  function schemaType(schema) {
    return Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  }

  function choices(schema, type) {
    if (Array.isArray(schema.enum)) return schema.enum.filter((v) => v !== null);
    const { minimum: low, maximum: high } = schema;
    if (type === "integer" && Number.isInteger(low) && Number.isInteger(high) && high - low <= 20) {
      return Array.from({ length: high - low + 1 }, (_, i) => low + i);
    }
    return null;
  }

  function optionControl(name, schema) {
    const type = schemaType(schema);
    const wrap = document.createElement("div");
    wrap.className = "option";
    const label = document.createElement("label");
    const title = document.createElement("span");
    title.textContent = schema.title || name.replace(/_/g, " ");
    let input;
    const values = choices(schema, type);
    if (type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
      input.checked = schema.default === true;
      const line = document.createElement("span");
      line.className = "flag-line";
      line.append(input, title);
      label.append(line);
    } else if (values) {
      input = document.createElement("select");
      if (schema.default === undefined) input.append(new Option("default", ""));
      for (const value of values) {
        const text = value === schema.default ? `${value} (default)` : String(value);
        input.append(new Option(text, String(value), value === schema.default, value === schema.default));
      }
      label.append(title, input);
    } else {
      input = document.createElement("input");
      input.type = "text";
      if (type === "integer" || type === "number") input.inputMode = "decimal";
      input.placeholder = schema.default === undefined ? "default" : String(schema.default);
      input.autocomplete = "off";
      label.append(title, input);
    }
    input.id = `option-${name}`;
    input.name = name;
    input.dataset.option = name;
    input.dataset.default = schema.default === undefined ? "" : String(schema.default);
    wrap.append(label);
    if (schema.description) {
      const help = document.createElement("span");
      help.className = "help";
      help.textContent = schema.description;
      label.append(help);
    }
    return wrap;
  }

  async function loadOptions() {
    const status = $("options-status");
    let doc;
    try {
      const response = await fetch("/openapi.json", { cache: "no-cache", credentials: "omit" });
      if (!response.ok) throw new Error(await errorText(response));
      doc = await response.json();
    } catch (error) {
      show(status, `The options could not be loaded (${error.message}); uploads use the defaults.`);
      return;
    }
    const upload = ((doc.paths || {})["/upload"] || {}).post || {};
    const content = ((upload.requestBody || {}).content || {})["multipart/form-data"] || {};
    const form = resolve(doc, content.schema);
    const controls = [];
    for (const [name, raw] of Object.entries(form.properties || {})) {
      const schema = resolve(doc, raw);
      if (name === "file" || schema.format === "binary") continue;
      controls.push(optionControl(name, schema));
    }
    $("options").append(...controls);
    show(status, form.description || (controls.length ? "" : "This server has no options."));
  }

  function optionFields() {
    // Only what differs from the default is sent, so a job says which options the user chose.
    const fields = [];
    for (const input of $("options").querySelectorAll("[data-option]")) {
      const name = input.dataset.option;
      if (input.type === "checkbox") {
        if (input.checked !== (input.dataset.default === "true")) fields.push([name, String(input.checked)]);
      } else {
        const value = input.value.trim();
        if (value !== "" && value !== input.dataset.default) fields.push([name, value]);
      }
    }
    return fields;
  }

  // ------------------------------------------------------------------ upload with a real progress bar

  let currentUpload = null;

  function setUploadProgress(percent, text) {
    $("upload-progress-box").hidden = false;
    $("upload-progress").value = percent;
    $("upload-progress-text").textContent = text;
  }

  function upload(event) {
    event.preventDefault();
    const file = $("upload-file").files[0];
    show($("upload-error"), "");
    show($("upload-ok"), "");
    if (!file) {
      show($("upload-error"), "Choose a file to upload first.");
      return;
    }
    const token = session.token();
    if (!token) {
      toLogin("Please log in.");
      return;
    }
    const form = new FormData();
    // The options before the file: the gateway checks them before it stores a byte of the video.
    for (const [name, value] of optionFields()) form.append(name, value);
    form.append("file", file, file.name);

    const xhr = new XMLHttpRequest();
    currentUpload = xhr;
    const finish = () => {
      currentUpload = null;
      $("upload-submit").disabled = false;
      $("upload-cancel").hidden = true;
    };
    xhr.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      const percent = Math.floor((e.loaded / e.total) * 100);
      setUploadProgress(percent, `${percent}% of ${formatBytes(e.total)} sent`);
    });
    xhr.upload.addEventListener("load", () => setUploadProgress(100, "sent; waiting for the server…"));
    xhr.addEventListener("load", () => {
      finish();
      if (xhr.status === 401) {
        sessionEnded(describe(xhr.status, xhr.statusText, xhr.getResponseHeader("Content-Type"), xhr.responseText));
        return;
      }
      if (xhr.status !== 202) {
        $("upload-progress-box").hidden = true;
        show($("upload-error"), `Upload of ${file.name} refused: ${describe(xhr.status, xhr.statusText,
          xhr.getResponseHeader("Content-Type"), xhr.responseText, xhr.getResponseHeader("Retry-After"))}.`);
        return;
      }
      setUploadProgress(100, "uploaded");
      show($("upload-ok"), `${file.name} uploaded: the job is queued.`);
      $("upload-file").value = "";
      refreshJobs();
    });
    xhr.addEventListener("error", () => {
      finish();
      $("upload-progress-box").hidden = true;
      show($("upload-error"), `Upload of ${file.name} failed: the connection broke off before the server answered.`);
    });
    xhr.addEventListener("abort", () => {
      finish();
      $("upload-progress-box").hidden = true;
      show($("upload-error"), `Upload of ${file.name} cancelled.`);
    });
    xhr.open("POST", "/upload");
    xhr.setRequestHeader("Authorization", `Bearer ${token}`);
    $("upload-submit").disabled = true;
    $("upload-cancel").hidden = false;
    setUploadProgress(0, "starting…");
    xhr.send(form);
  }

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    if (n < 1024 * 1024 * 1024) return `${(n / 1024 / 1024).toFixed(1)} MiB`;
    return `${(n / 1024 / 1024 / 1024).toFixed(2)} GiB`;
  }

  // ------------------------------------------------------------------ the jobs, polled

  const jobRows = new Map(); // job_id -> {row, cells, job}
  let pollTimer = null;
  let pollGeneration = 0;

  function startPolling() {
    stopPolling();
    refreshJobs();
  }

  function stopPolling() {
    pollGeneration += 1;
    clearTimeout(pollTimer);
    pollTimer = null;
  }

  async function refreshJobs() {
    clearTimeout(pollTimer);
    const generation = ++pollGeneration;
    let busy = false;
    try {
      const response = await api(`/jobs?limit=${PAGE}`);
      if (generation !== pollGeneration) return; // logged out, or a newer refresh started meanwhile
      if (response.ok) {
        const page = await response.json();
        renderJobs(page);
        show($("jobs-error"), "");
        busy = page.jobs.some((job) => IN_FLIGHT.has(job.status));
      } else {
        show($("jobs-error"), `Your jobs could not be listed: ${await errorText(response)}.`);
      }
    } catch (error) {
      if (error instanceof SessionEnded) return;
      show($("jobs-error"), `Your jobs could not be listed: ${error.message}.`);
    }
    if (generation === pollGeneration && session.token()) {
      pollTimer = setTimeout(refreshJobs, busy ? POLL_BUSY_MS : POLL_IDLE_MS);
    }
  }

  function renderJobs(page) {
    const seen = new Set();
    const body = $("jobs-body");
    for (const job of page.jobs) {
      seen.add(job.job_id);
      let entry = jobRows.get(job.job_id);
      if (!entry) {
        entry = newRow(job);
        jobRows.set(job.job_id, entry);
      }
      entry.job = job;
      updateRow(entry);
      body.append(entry.row); // moves an existing row: the order is the API's, newest first
    }
    for (const [id, entry] of jobRows) {
      if (!seen.has(id)) {
        entry.row.remove();
        jobRows.delete(id);
      }
    }
    $("jobs").hidden = page.jobs.length === 0;
    $("jobs-empty").hidden = page.jobs.length !== 0;
    show($("jobs-more"), page.total > page.jobs.length ? `Showing the newest ${page.jobs.length} of ${page.total} jobs.` : "");
  }

  function cell(row, className) {
    const td = document.createElement("td");
    td.className = className;
    row.append(td);
    return td;
  }

  function newRow(job) {
    const row = document.createElement("tr");
    row.dataset.jobId = job.job_id;
    const cells = {
      file: cell(row, "file"),
      created: cell(row, "created"),
      status: cell(row, "status-cell"),
      progress: cell(row, "progress"),
      options: cell(row, "options"),
      actions: cell(row, "job-actions"),
    };
    const statusText = document.createElement("span");
    const reason = document.createElement("div");
    reason.className = "reason";
    cells.status.append(statusText, reason);
    const bar = document.createElement("progress");
    bar.max = 100;
    const percent = document.createElement("span");
    cells.progress.append(bar, " ", percent);
    const download = document.createElement("button");
    download.type = "button";
    download.className = "download";
    download.textContent = "Download";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "delete danger";
    remove.textContent = "Delete";
    cells.actions.append(download, remove);
    const entry = { row, cells, job, statusText, reason, bar, percent, download, remove };
    download.addEventListener("click", () => downloadMp3(entry));
    remove.addEventListener("click", () => deleteJob(entry));
    return entry;
  }

  function updateRow(entry) {
    const { job } = entry;
    entry.cells.file.textContent = job.filename || "(no name)";
    entry.cells.created.textContent = job.created_at ? new Date(job.created_at).toLocaleString() : "";
    entry.statusText.textContent = job.status;
    entry.statusText.className = `status status-${job.status}`;
    let reason = "";
    if (job.status === "failed" && job.error) reason = job.error;
    else if (job.status === "done" && job.expires_at) reason = `kept until ${new Date(job.expires_at).toLocaleString()}`;
    else if (job.status === "expired") reason = "the MP3 was deleted after its retention time";
    entry.reason.textContent = reason;
    entry.reason.className = job.status === "failed" ? "reason" : "muted";
    const progress = job.status === "done" ? 100 : Math.max(0, Math.min(100, Number(job.progress) || 0));
    entry.bar.value = progress;
    entry.percent.textContent = `${progress}%`;
    const chosen = Object.entries(job.options || {}).filter(([, v]) => v !== null && v !== undefined);
    entry.cells.options.textContent = chosen.length ? chosen.map(([k, v]) => `${k}=${v}`).join(", ") : "defaults";
    entry.download.disabled = !(job.status === "done" && job.mp3_fid) || entry.downloading === true;
  }

  function mp3Name(filename) {
    const stem = (filename || "audio").replace(/\.[^./\\]*$/, "") || "audio";
    return `${stem}.mp3`;
  }

  async function downloadMp3(entry) {
    const { job, download } = entry;
    entry.downloading = true;
    download.disabled = true;
    download.textContent = "Downloading…";
    try {
      // The API wants the token in a header, which a plain link cannot send: fetch, then save the blob.
      const response = await api(`/download?fid=${encodeURIComponent(job.mp3_fid)}`);
      if (!response.ok) {
        show($("jobs-error"), `Download of ${job.filename} failed: ${await errorText(response)}.`);
        return;
      }
      const blob = await response.blob();
      const url = URL.createObjectURL(blob);
      const link = document.createElement("a");
      link.href = url;
      link.download = mp3Name(job.filename);
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      if (!(error instanceof SessionEnded)) show($("jobs-error"), `Download of ${job.filename} failed: ${error.message}.`);
    } finally {
      entry.downloading = false;
      download.textContent = "Download";
      updateRow(entry);
    }
  }

  async function deleteJob(entry) {
    const { remove } = entry;
    // Two clicks: the first arms the button for a few seconds, the second deletes.
    if (remove.dataset.armed !== "true") {
      remove.dataset.armed = "true";
      remove.textContent = "Really delete?";
      setTimeout(() => {
        remove.dataset.armed = "false";
        remove.textContent = "Delete";
      }, 4000);
      return;
    }
    remove.disabled = true;
    try {
      const response = await api(`/jobs/${encodeURIComponent(entry.job.job_id)}`, { method: "DELETE" });
      if (response.status === 204 || response.status === 404) {
        entry.row.remove();
        jobRows.delete(entry.job.job_id);
        refreshJobs();
      } else {
        show($("jobs-error"), `${entry.job.filename} could not be deleted: ${await errorText(response)}.`);
      }
    } catch (error) {
      if (!(error instanceof SessionEnded)) show($("jobs-error"), `${entry.job.filename} could not be deleted: ${error.message}.`);
    } finally {
      remove.disabled = false;
    }
  }

  // ------------------------------------------------------------------ start

  function start() {
    $("login-form").addEventListener("submit", login);
    $("logout").addEventListener("click", logout);
    $("upload-form").addEventListener("submit", upload);
    $("upload-cancel").addEventListener("click", () => currentUpload && currentUpload.abort());
    loadOptions();
    if (session.token()) toApp();
    else toLogin("");
  }

  start();
})();
