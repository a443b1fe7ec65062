// The demo page: sends the chosen photo to POST /v1/retouch, the endpoint every client uses,
// and shows the result over the original, the mask, the timings and the API's errors.
"use strict";

(() => {
  const DEBOUNCE_MS = 300;
  const KEY_STORAGE = "abpn-api-key";
  const EXTENSIONS = { "image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "image/tiff": "tif" };
  // The mask is drawn in this colour, opaque where the model changed the most; cyan is far
  // from every skin tone and from the reds a mask over lips or cheeks would hide in.
  const MASK_RGB = [0, 200, 255];
  const MASK_MAX_ALPHA = 0.8;

  const $ = (id) => document.getElementById(id);
  const el = {
    drop: $("drop"),
    file: $("file"),
    fileName: $("file-name"),
    strength: $("strength"),
    strengthValue: $("strength-value"),
    whitening: $("whitening"),
    whiteningValue: $("whitening-value"),
    maskToggle: $("mask-toggle"),
    apiKey: $("api-key"),
    keyForm: $("key-form"),
    download: $("download"),
    viewer: $("viewer"),
    status: $("status"),
    error: $("error"),
    stageWrap: $("stage-wrap"),
    stage: $("stage"),
    before: $("before"),
    after: $("after"),
    mask: $("mask-overlay"),
    split: $("split"),
    splitValue: $("split-value"),
    size: $("size"),
    timings: $("timings"),
  };

  const state = {
    file: null,
    originalUrl: null,
    resultUrl: null,
    maskFor: null, // the parameters the drawn mask belongs to
    inFlight: { image: null, mask: null }, // one AbortController per kind of request
    debounce: null,
    message: "Choose a photo to start.", // what the status line says once nothing runs
  };

  class ApiError extends Error {
    constructor(status, code, message, retryAfter) {
      super(message);
      this.status = status;
      this.code = code;
      this.retryAfter = retryAfter;
    }
  }

  function currentParams() {
    return { strength: el.strength.value, whitening: el.whitening.value };
  }

  function paramsKey(params) {
    return `${params.strength}|${params.whitening}`;
  }

  // "queue;dur=1.2, decode;dur=3.4" -> [["queue", 1.2], ["decode", 3.4]]
  function parseServerTiming(header) {
    if (!header) return [];
    return header.split(",").flatMap((entry) => {
      const [name, ...fields] = entry.trim().split(";");
      const dur = fields.map((f) => f.trim()).find((f) => f.startsWith("dur="));
      return name && dur ? [[name, Number(dur.slice(4))]] : [];
    });
  }

  async function apiError(response) {
    const retryAfter = response.headers.get("Retry-After");
    let code = "";
    let message = `HTTP ${response.status} ${response.statusText}`.trim();
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) {
        code = body.error.code || "";
        message = body.error.message;
      }
    } catch {
      // Not our JSON (a proxy's page, say): the status line is all there is to show.
    }
    return new ApiError(response.status, code, message, retryAfter);
  }

  async function retouch(file, params, signal) {
    const headers = { "Content-Type": file.type || "application/octet-stream" };
    const key = el.apiKey.value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const started = performance.now();
    const response = await fetch(`/v1/retouch?${new URLSearchParams(params)}`, {
      method: "POST",
      body: file,
      headers,
      signal,
    });
    if (!response.ok) throw await apiError(response);
    const blob = await response.blob();
    return {
      blob,
      timings: parseServerTiming(response.headers.get("Server-Timing")),
      faces: Number(response.headers.get("X-Faces") ?? "1"),
      totalMs: performance.now() - started,
    };
  }

  function updateBusy() {
    const busy = Boolean(state.inFlight.image || state.inFlight.mask);
    el.viewer.setAttribute("aria-busy", String(busy));
    el.status.textContent = busy ? "Retouching…" : state.message;
  }

  // One request per kind at a time: a newer one aborts the older, so a slider dragged across
  // its range leaves one request, and the server drops the aborted ones still queued.
  async function request(kind, params) {
    if (!state.file) return;
    state.inFlight[kind]?.abort();
    const controller = new AbortController();
    state.inFlight[kind] = controller;
    updateBusy();
    try {
      const extra = kind === "mask" ? { output: "mask", format: "png" } : {};
      const result = await retouch(state.file, { ...params, ...extra }, controller.signal);
      if (controller.signal.aborted) return;
      if (kind === "mask") await showMask(result.blob, params);
      else await showResult(result, params);
    } catch (err) {
      if (!controller.signal.aborted) showError(err);
    } finally {
      if (state.inFlight[kind] === controller) state.inFlight[kind] = null;
      updateBusy();
    }
  }

  function refresh() {
    clearTimeout(state.debounce);
    hideError();
    const params = currentParams();
    request("image", params);
    if (el.maskToggle.checked) request("mask", params);
  }

  function refreshSoon() {
    clearTimeout(state.debounce);
    state.debounce = setTimeout(refresh, DEBOUNCE_MS);
  }

  async function showResult(result, params) {
    const url = URL.createObjectURL(result.blob);
    // Decoded aside first, so that a result the browser cannot show leaves the last one up.
    const probe = new Image();
    probe.src = url;
    try {
      await probe.decode();
    } catch {
      URL.revokeObjectURL(url);
      throw new ApiError(0, "", `This browser cannot show ${result.blob.type || "the result"}.`);
    }
    el.after.src = url;
    await el.after.decode(); // already decoded: at once, and the size below is then known
    if (state.resultUrl) URL.revokeObjectURL(state.resultUrl);
    state.resultUrl = url;
    el.after.hidden = false;
    el.stageWrap.classList.add("has-result");
    el.size.textContent = `${el.after.naturalWidth} × ${el.after.naturalHeight} px`;
    showTimings(result);
    // Only faces are retouched: say so rather than leave an unchanged photo unexplained.
    state.message =
      result.faces === 0
        ? "No face found: the photo is returned unchanged."
        : `Retouched ${result.faces} face${result.faces === 1 ? "" : "s"} at strength ` +
          `${Number(params.strength).toFixed(2)}, whitening ${Number(params.whitening).toFixed(2)}.`;
    const base = state.file.name.replace(/\.[^.]*$/, "") || "photo";
    el.download.href = url;
    el.download.download = `${base}.retouched.${EXTENSIONS[result.blob.type] || "img"}`;
    el.download.removeAttribute("aria-disabled");
  }

  function showTimings(result) {
    const rows = [...result.timings, ["round trip", result.totalMs]];
    el.timings.replaceChildren(
      ...rows.map(([name, ms]) => {
        const row = document.createElement("div");
        const dt = document.createElement("dt");
        const dd = document.createElement("dd");
        dt.textContent = name;
        dd.textContent = `${ms.toFixed(1)} ms`;
        row.append(dt, dd);
        return row;
      }),
    );
  }

  // The API's mask is greyscale; drawn as a coloured veil whose opacity follows it, it stays
  // readable over any skin tone.
  async function showMask(blob, params) {
    const bitmap = await createImageBitmap(blob);
    const canvas = el.mask;
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const pixels = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const data = pixels.data;
    for (let i = 0; i < data.length; i += 4) {
      const alpha = data[i] * MASK_MAX_ALPHA;
      [data[i], data[i + 1], data[i + 2]] = MASK_RGB;
      data[i + 3] = alpha;
    }
    ctx.putImageData(pixels, 0, 0);
    state.maskFor = paramsKey(params);
    canvas.hidden = !el.maskToggle.checked;
  }

  function showError(err) {
    const message = err instanceof ApiError ? err.message : `The request failed: ${err.message}`;
    el.error.replaceChildren(document.createTextNode(message));
    const details = [];
    if (err.code) details.push(`${err.status} ${err.code}`);
    if (err.retryAfter) details.push(`retry after ${err.retryAfter} s`);
    if (details.length) {
      const code = document.createElement("span");
      code.className = "code";
      code.textContent = details.join(" · ");
      el.error.append(code);
    }
    el.error.hidden = false;
    state.message = "The request failed.";
    if (err.status === 401) {
      state.message = "This service needs an API key: enter it and press Enter.";
      el.apiKey.focus();
    }
    el.status.textContent = state.message;
  }

  function hideError() {
    el.error.hidden = true;
    el.error.replaceChildren();
  }

  function choose(file) {
    if (!file) return;
    state.file = file;
    el.fileName.textContent = `${file.name} · ${Math.max(1, Math.round(file.size / 1024))} KB`;
    if (state.originalUrl) URL.revokeObjectURL(state.originalUrl);
    state.originalUrl = URL.createObjectURL(file);
    el.before.src = state.originalUrl;
    el.after.hidden = true;
    el.stageWrap.classList.remove("has-result");
    el.mask.hidden = true;
    state.maskFor = null;
    el.timings.replaceChildren();
    el.size.textContent = "";
    el.download.removeAttribute("href");
    el.download.setAttribute("aria-disabled", "true");
    el.stageWrap.hidden = false;
    refresh();
  }

  function bindSlider(input, output, format) {
    const show = () => {
      output.textContent = format(input.value);
    };
    input.addEventListener("input", show);
    show();
  }

  function setSplit() {
    el.stage.style.setProperty("--split", `${el.split.value}%`);
  }

  el.file.addEventListener("change", () => choose(el.file.files[0]));

  // Dropping anywhere else must not make the browser leave the page to open the file.
  for (const type of ["dragover", "drop"]) {
    document.addEventListener(type, (event) => event.preventDefault());
  }
  el.drop.addEventListener("dragover", () => el.drop.classList.add("dragging"));
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("dragging"));
  el.drop.addEventListener("drop", (event) => {
    el.drop.classList.remove("dragging");
    choose(event.dataTransfer.files[0]);
  });

  bindSlider(el.strength, el.strengthValue, (v) => Number(v).toFixed(2));
  bindSlider(el.whitening, el.whiteningValue, (v) => Number(v).toFixed(2));
  bindSlider(el.split, el.splitValue, (v) => `${v}%`);
  el.strength.addEventListener("input", refreshSoon);
  el.whitening.addEventListener("input", refreshSoon);
  el.split.addEventListener("input", setSplit);
  setSplit();

  el.maskToggle.addEventListener("change", () => {
    if (!el.maskToggle.checked) {
      state.inFlight.mask?.abort();
      el.mask.hidden = true;
    } else if (state.maskFor === paramsKey(currentParams())) {
      el.mask.hidden = false;
    } else {
      request("mask", currentParams());
    }
  });

  // Kept for this tab only: sessionStorage is cleared when the tab closes.
  el.apiKey.value = sessionStorage.getItem(KEY_STORAGE) || "";
  el.apiKey.addEventListener("input", () => {
    const key = el.apiKey.value.trim();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  });
  // Enter in the key field submits its form: retry with the key, without leaving the page.
  el.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    refresh();
  });
})();
