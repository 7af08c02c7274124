/* digitlab drawing page: draw or upload, POST to the API, show what the model thinks.
 *
 * No framework and no external assets. The page keeps the strokes as vectors (for undo and
 * for redrawing), sends the canvas as a PNG to /api/predict (or /api/number in number mode,
 * with the strokes themselves) a moment after the pen pauses and again when a stroke ends,
 * and renders the JSON answer.
 */
(() => {
  "use strict";

  // Canvas resolution per mode: 10 canvas pixels per MNIST pixel for one digit, and room for
  // three or four digits side by side in number mode (2:1 on phones, where a 3:1 strip would
  // be too short to write in). The server scales whatever it gets to 28x28.
  const CANVAS_SIZE = { digit: [280, 280], number: [840, 280], numberNarrow: [560, 280] };
  const NARROW_QUERY = window.matchMedia("(max-width: 600px)");
  // While drawing, ask again once the pointer has paused this long (a request takes ~10 ms).
  const LIVE_DEBOUNCE_MS = 140;
  // Multipart headers around an uploaded file: well under this many bytes.
  const MULTIPART_OVERHEAD = 1024;
  const INK = "#111318";
  const PAPER = "#ffffff";
  const BRUSH_STEP = 2;
  const HINTS = {
    digit: "Draw a digit or upload an image.",
    number: "Draw a number: several digits side by side, with a little space between them.",
  };
  const IDLE_DETAIL = {
    digit: "The answer appears here as you draw, with all ten scores.",
    number: "The number appears here as you write, with each digit's scores.",
  };

  const $ = (id) => document.getElementById(id);
  const stage = $("stage");
  const pad = $("pad");
  const ctx = pad.getContext("2d", { willReadFrequently: false });
  const heat = $("heat");
  const uploadView = $("upload-view");
  const boxes = $("boxes");
  const result = $("result");
  const brush = $("brush");
  const heatToggle = $("heat-toggle");
  const fileInput = $("file");

  const state = {
    mode: "digit",
    source: "canvas", // "canvas" or "upload"
    strokes: [], // [{size, points: [[x, y, t_ms], ...]}]: canvas pixels, ms since the first point
    t0: 0, // timeStamp of the drawing's first point
    cleared: null, // strokes removed by the last clear: Ctrl+Z brings them back
    pointerId: null,
    file: null,
    fileURL: null,
    imageSize: null, // [width, height] of the input the server sees
    limits: null,
    generation: 0, // bumped whenever the input is replaced: older answers are dropped
    inflight: false,
    pending: false,
    timer: 0,
    lastNumber: null,
    selected: 0,
  };

  // ------------------------------------------------------------------ drawing

  function setCanvasSize() {
    const key = state.mode === "number" && NARROW_QUERY.matches ? "numberNarrow" : state.mode;
    const [w, h] = CANVAS_SIZE[key];
    pad.width = w;
    pad.height = h;
    if (state.source === "canvas") {
      state.imageSize = [w, h];
      setAspect(w / h);
    }
    redraw();
  }

  function setAspect(ratio) {
    stage.style.setProperty("--ar", String(ratio));
  }

  function paint(stroke, from) {
    const pts = stroke.points;
    ctx.strokeStyle = INK;
    ctx.fillStyle = INK;
    ctx.lineWidth = stroke.size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], stroke.size / 2, 0, Math.PI * 2);
      ctx.fill();
      return;
    }
    ctx.beginPath();
    const start = Math.max(0, from - 1);
    ctx.moveTo(pts[start][0], pts[start][1]);
    for (let i = start + 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
    ctx.stroke();
  }

  function redraw() {
    ctx.fillStyle = PAPER;
    ctx.fillRect(0, 0, pad.width, pad.height);
    for (const s of state.strokes) paint(s, 0);
    updateControls();
  }

  function toCanvas(e) {
    const r = pad.getBoundingClientRect();
    return [
      ((e.clientX - r.left) * pad.width) / r.width,
      ((e.clientY - r.top) * pad.height) / r.height,
      Math.max(0, e.timeStamp - state.t0),
    ];
  }

  function onPointerDown(e) {
    if (e.pointerType === "mouse" && e.button !== 0) return;
    if (state.pointerId !== null) return; // a second finger: ignore
    if (state.source === "upload") useCanvas();
    e.preventDefault();
    state.pointerId = e.pointerId;
    try {
      stage.setPointerCapture(e.pointerId);
    } catch (_) {
      /* synthetic events have no capture target */
    }
    if (!state.strokes.length) state.t0 = e.timeStamp; // a new drawing starts its clock
    const stroke = { size: Number(brush.value), points: [toCanvas(e)] };
    state.strokes.push(stroke);
    state.cleared = null;
    paint(stroke, 0);
    hideOverlays();
    updateControls();
    scheduleLive();
  }

  function onPointerMove(e) {
    if (e.pointerId !== state.pointerId) return;
    e.preventDefault();
    const stroke = state.strokes[state.strokes.length - 1];
    const events = (e.getCoalescedEvents && e.getCoalescedEvents()) || [];
    const from = stroke.points.length;
    for (const ev of events.length ? events : [e]) stroke.points.push(toCanvas(ev));
    paint(stroke, from);
    scheduleLive();
  }

  function onPointerUp(e) {
    if (e.pointerId !== state.pointerId) return;
    state.pointerId = null;
    predictNow();
  }

  // ------------------------------------------------------------------ input changes

  function hasInput() {
    return state.source === "upload" ? state.file !== null : state.strokes.length > 0;
  }

  function useCanvas() {
    // Leave the uploaded image and go back to an empty drawing.
    if (state.fileURL) URL.revokeObjectURL(state.fileURL);
    state.file = null;
    state.fileURL = null;
    state.source = "canvas";
    state.strokes = [];
    stage.dataset.source = "canvas";
    stage.classList.remove("unviewable");
    setHint();
    uploadView.hidden = true;
    uploadView.removeAttribute("src");
    state.generation++;
    setCanvasSize();
  }

  function clearAll() {
    if (state.source === "canvas" && state.strokes.length) state.cleared = state.strokes;
    if (state.source === "upload") useCanvas();
    state.strokes = [];
    state.generation++;
    state.pending = false;
    clearTimeout(state.timer);
    redraw();
    showIdle();
    document.dispatchEvent(new Event("digitlab:cleared")); // feedback.js
  }

  function undo() {
    if (state.pointerId !== null) return;
    if (state.source === "upload") {
      clearAll();
      return;
    }
    if (state.strokes.length) {
      state.strokes.pop();
    } else if (state.cleared) {
      state.strokes = state.cleared;
      state.cleared = null;
    } else {
      return;
    }
    state.generation++;
    redraw();
    if (hasInput()) predictNow();
    else showIdle();
  }

  function setMode(mode) {
    if (mode === state.mode) return;
    state.mode = mode;
    document.body.dataset.mode = mode;
    $(mode === "digit" ? "mode-digit" : "mode-number").checked = true;
    $("input-title").textContent = mode === "digit" ? "Draw a digit" : "Draw a number";
    setHint();
    heatToggle.disabled = mode === "number";
    heatToggle.closest("label").title =
      mode === "number" ? "The heat map is for single digits" : "Show where the model looked (H)";
    $("number-panel").hidden = true;
    state.generation++;
    if (state.source === "upload" && !state.file) useCanvas(); // only a note was on the stage
    if (state.source === "canvas") {
      state.strokes = [];
      state.cleared = null;
      setCanvasSize();
      showIdle();
    } else {
      predictNow();
    }
  }

  function setHint(main, sub) {
    document.querySelector(".hint-main").textContent =
      main || (state.mode === "digit" ? "Draw here" : "Draw a few digits here");
    document.querySelector(".hint-sub").textContent = sub || "or drop / paste an image";
  }

  // "Choose a PNG, JPEG, ... or PPM file." from the formats the server reads (/api/model).
  function chooseText() {
    const formats = state.limits && state.limits.formats;
    if (!formats || !formats.length) return "Choose an image file.";
    const names = formats.map((f) => (f === "webp" ? "WebP" : f.toUpperCase()));
    const list = names.length > 1 ? `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}` : names[0];
    return `Choose a ${list} file.`;
  }

  function takeStage(file) {
    // The stage now shows this file: the drawing goes (Ctrl+Z brings it back) and the canvas
    // under the image is blank paper, never the old drawing.
    if (state.fileURL) URL.revokeObjectURL(state.fileURL);
    if (state.source === "canvas" && state.strokes.length) state.cleared = state.strokes;
    state.strokes = [];
    state.source = "upload";
    state.file = file;
    state.fileURL = null;
    state.imageSize = null;
    state.generation++;
    clearTimeout(state.timer);
    stage.dataset.source = "upload";
    stage.classList.remove("unviewable");
    uploadView.hidden = true;
    uploadView.removeAttribute("src");
    hideOverlays();
    redraw();
  }

  function showUnviewable(name, why) {
    // A file the page cannot show: a plain card on blank paper says so.
    uploadView.hidden = true;
    stage.classList.add("unviewable");
    setHint(`No preview of “${name}”`, why);
    setAspect(1);
  }

  function handleFile(file) {
    if (!file) return;
    const name = file.name || "pasted image";
    if (file.type && !file.type.startsWith("image/")) {
      takeStage(null);
      showUnviewable(name, "it is not an image");
      showError(`“${name}” is not an image`, `It is ${file.type}. ${chooseText()}`);
      return;
    }
    const limit = state.limits && state.limits.max_body_bytes;
    if (limit && file.size > limit - MULTIPART_OVERHEAD) {
      showError(`“${name}” is too large`, `It is ${formatBytes(file.size)}; the server accepts up to ${formatBytes(limit)}.`);
      return;
    }
    takeStage(file);
    state.fileURL = URL.createObjectURL(file);
    uploadView.hidden = false;
    uploadView.alt = `The uploaded image, ${name}`;
    uploadView.src = state.fileURL;
    updateControls();
    predictNow();
  }

  uploadView.addEventListener("load", () => {
    stage.classList.remove("unviewable");
    state.imageSize = [uploadView.naturalWidth, uploadView.naturalHeight];
    setAspect(uploadView.naturalWidth / uploadView.naturalHeight);
    if (state.lastNumber) renderBoxes(state.lastNumber);
  });
  uploadView.addEventListener("error", () => {
    if (state.source !== "upload" || !uploadView.getAttribute("src")) return;
    // The browser cannot show it; the server will say whether it can read it.
    showUnviewable(state.file.name || "pasted image", "this browser cannot show the file");
  });

  // ------------------------------------------------------------------ talking to the server

  function scheduleLive() {
    clearTimeout(state.timer);
    state.timer = setTimeout(predictNow, LIVE_DEBOUNCE_MS);
    setPending(true);
  }

  function predictNow() {
    clearTimeout(state.timer);
    if (!hasInput()) {
      setPending(state.inflight);
      return;
    }
    if (state.inflight) {
      state.pending = true;
      setPending(true);
      return;
    }
    state.inflight = true;
    setPending(true);
    const generation = state.generation;
    const mode = state.mode;
    const explain = mode === "digit" && heatToggle.checked;
    let sent = null; // the image as sent: feedback.js stores it with a correction
    const request = inputBlob().then((blob) => {
      sent = blob;
      return mode === "number" && state.source === "canvas"
        ? postNumberDrawing(pad.toDataURL("image/png"), strokesForServer())
        : post(blob, mode, explain);
    });
    request
      .then((data) => {
        if (generation !== state.generation && !state.pending) return;
        if (!hasInput() || mode !== state.mode) return;
        if (mode === "number") renderNumber(data);
        else renderPrediction(data, true);
        document.dispatchEvent(new CustomEvent("digitlab:prediction", { detail: { blob: sent, mode, data } }));
      })
      .catch((err) => {
        if (!hasInput() || mode !== state.mode) return;
        const name = state.source === "upload" ? `“${state.file.name || "pasted image"}”` : "the drawing";
        showError(`Couldn't read ${name}`, err.message);
      })
      .finally(() => {
        state.inflight = false;
        if (state.pending) {
          state.pending = false;
          predictNow();
        } else {
          setPending(false);
        }
      });
  }

  function inputBlob() {
    if (state.source === "upload") return Promise.resolve(state.file);
    return new Promise((resolve, reject) =>
      pad.toBlob((b) => (b ? resolve(b) : reject(new Error("the canvas could not be encoded"))), "image/png"),
    );
  }

  async function post(blob, mode, explain) {
    const form = new FormData();
    form.append("file", blob, state.source === "upload" ? state.file.name || "image" : "drawing.png");
    const url = mode === "number" ? "/api/number" : `/api/predict${explain ? "?explain=true" : ""}`;
    return send(url, { method: "POST", body: form });
  }

  // The strokes of the drawing, in drawing order: [[[x, y, t_ms], ...], ...] in the pixels of
  // the canvas image sent with them, t_ms counted from the drawing's first point.
  function strokesForServer() {
    const round = (v) => Math.round(v * 100) / 100;
    return state.strokes.map((s) => s.points.map(([x, y, t]) => [round(x), round(y), Math.round(t)]));
  }

  // A drawn number goes as JSON: the canvas image and the strokes that made it, which tell the
  // server where one digit ends and the next begins. A server that does not take strokes yet
  // (422 naming the field) gets the image alone.
  async function postNumberDrawing(image, strokes) {
    const json = (body) => ({
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    return send("/api/number", json({ image, strokes }));
  }

  async function send(url, init) {
    let response;
    try {
      response = await fetch(url, init);
    } catch (_) {
      throw new Error("The server did not answer. Is digitlab serve still running?");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      /* not JSON: fall back to the status line */
    }
    if (!response.ok) {
      const detail = data && data.detail ? detailText(data.detail) : `${response.status} ${response.statusText}`;
      const error = new Error(explainStatus(response.status, detail));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  function detailText(detail) {
    // FastAPI's validation errors are a list of {loc, msg}; ours are one sentence.
    if (!Array.isArray(detail)) return String(detail);
    return detail.map((d) => (d && d.msg ? `${(d.loc || []).join(".")}: ${d.msg}` : String(d))).join("; ");
  }

  function explainStatus(status, detail) {
    // The server's detail names the problem ("the upload is not an image in a supported
    // format (PNG, ...)"); show it as a sentence.
    const text = detail.charAt(0).toUpperCase() + detail.slice(1);
    return status >= 500 ? `Server error: ${text}` : text;
  }

  async function loadModelInfo() {
    const el = $("model-info");
    try {
      const response = await fetch("/api/model");
      if (!response.ok) throw new Error(String(response.status));
      const info = await response.json();
      state.limits = info.limits;
      const acc = info.test_accuracy != null ? ` · ${(info.test_accuracy * 100).toFixed(2)}% on the MNIST test set` : "";
      el.textContent = "";
      const strong = document.createElement("strong");
      strong.textContent = info.name;
      el.append("Model ", strong, `${acc} · ${info.parameters.toLocaleString("en")} parameters · ${info.backend}`);
      el.title = `Loaded from ${info.source}`;
    } catch (_) {
      el.textContent = "Model information is unavailable.";
    }
  }

  // ------------------------------------------------------------------ rendering

  function setState(name) {
    result.dataset.state = name;
  }

  function setPending(on) {
    result.dataset.pending = on ? "true" : "false";
    result.classList.toggle("busy", on && state.inflight);
  }

  // A probability as a percentage; never "100%" or "0%" for values that are not exactly that.
  function pct(p, digits = 1) {
    const limit = 10 ** -(digits + 2);
    if (p > 0 && p < limit) return `<${(limit * 100).toFixed(digits)}%`;
    if (p < 1 && p > 1 - limit) return `>${((1 - limit) * 100).toFixed(digits)}%`;
    return `${(p * 100).toFixed(digits)}%`;
  }

  function setBig(text) {
    const el = $("digit");
    el.textContent = text;
    el.style.fontSize = text.length > 2 ? `${Math.max(1.6, 4 - 0.45 * (text.length - 1))}rem` : "";
  }

  function showIdle() {
    setState("idle");
    setBig("");
    $("status").textContent = HINTS[state.mode];
    $("confidence").textContent = IDLE_DETAIL[state.mode];
    $("number-panel").hidden = true;
    state.lastNumber = null;
    renderScores(null);
    hideOverlays();
    updateControls();
  }

  function showError(title, detail) {
    setState("error");
    setBig("!");
    $("status").textContent = title;
    $("confidence").textContent = detail;
    $("number-panel").hidden = true;
    state.lastNumber = null;
    renderScores(null);
    hideOverlays();
    announce(`${title}. ${detail}`);
  }

  // "a 7", "an 8": the article as the digit is spoken.
  function article(digit) {
    return digit === 8 ? "an" : "a";
  }

  function describe(p) {
    if (p.digit === null) {
      return ["No digit found", "Draw one larger and bolder, or try another image."];
    }
    const [first, second] = p.top;
    if (p.uncertain) {
      const alt = second ? ` — maybe ${first.digit} or ${second.digit}` : "";
      return [`Not sure${alt}`, `${pct(p.confidence)} for ${p.digit}: try writing it more clearly.`];
    }
    return [`It's ${article(p.digit)} ${p.digit}`, `${pct(p.confidence)} confident`];
  }

  function renderPrediction(p, withHeat) {
    const [title, detail] = describe(p);
    setState(p.digit === null ? "empty" : p.uncertain ? "unsure" : "ok");
    setBig(p.digit === null ? "?" : String(p.digit));
    $("status").textContent = title;
    $("confidence").textContent = detail;
    $("number-panel").hidden = true;
    state.lastNumber = null;
    boxes.replaceChildren();
    renderScores(p);
    if (withHeat && p.heatmap && heatToggle.checked) drawHeat(p.heatmap);
    else heat.hidden = true;
    if (state.pointerId === null) announce(`${title}. ${detail}`);
  }

  function renderScores(p) {
    const top3 = $("top3");
    top3.replaceChildren();
    if (p && p.top.length) {
      for (const t of p.top) {
        const li = document.createElement("li");
        li.innerHTML = `<span class="d"></span><span class="p"></span>`;
        li.querySelector(".d").textContent = t.digit;
        li.querySelector(".p").textContent = pct(t.probability);
        top3.append(li);
      }
    } else {
      const li = document.createElement("li");
      li.className = "none";
      li.textContent = "No scores yet";
      top3.append(li);
    }
    renderChart(p ? p.probabilities : null, p ? p.digit : null);
    const preview = $("preview");
    if (p && p.preprocessed) {
      preview.src = p.preprocessed;
      preview.alt = `The 28 by 28 pixel image the model saw${p.digit === null ? " (empty)" : ""}`;
    } else {
      preview.removeAttribute("src");
      preview.alt = "";
    }
  }

  function buildChart() {
    const chart = $("chart");
    for (let d = 0; d < 10; d++) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="pct"></span><span class="track"><span class="fill"></span></span><span class="label">${d}</span>`;
      chart.append(li);
    }
  }

  function renderChart(probs, best) {
    const items = $("chart").children;
    for (let d = 0; d < 10; d++) {
      const p = probs ? probs[d] : 0;
      const li = items[d];
      li.classList.toggle("best", probs !== null && best === d);
      li.querySelector(".fill").style.height = `${(p * 100).toFixed(1)}%`;
      li.querySelector(".pct").textContent = probs ? `${Math.round(p * 100)}%` : "";
      li.setAttribute("aria-label", `digit ${d}: ${probs ? pct(p) : "no score"}`);
      li.title = `${d}: ${probs ? pct(p, 2) : "no score"}`;
    }
  }

  function renderNumber(r) {
    state.lastNumber = r;
    const panel = $("number-panel");
    const list = $("number-digits");
    list.replaceChildren();
    heat.hidden = true;
    if (!r.digits.length) {
      setState("empty");
      setBig("?");
      $("status").textContent = "No digits found";
      $("confidence").textContent = "Draw the digits larger, side by side, or try another image.";
      panel.hidden = true;
      boxes.replaceChildren();
      renderScores(null);
      announce("No digits found.");
      return;
    }
    const lowest = Math.min(...r.digits.map((d) => (d.prediction.digit === null ? 0 : d.prediction.confidence)));
    setState(r.uncertain ? "unsure" : "ok");
    setBig(r.number || "?");
    $("status").textContent = r.uncertain ? `Not sure about every digit: ${r.number || "?"}` : `It reads ${r.number}`;
    $("confidence").textContent = `${r.digits.length} digit${r.digits.length === 1 ? "" : "s"} · lowest confidence ${pct(lowest)}`;
    r.digits.forEach((d, i) => {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = `digit-chip${d.prediction.uncertain ? " unsure" : ""}`;
      b.innerHTML = `<img alt=""><span class="d"></span><span class="p"></span>`;
      b.querySelector("img").src = d.prediction.preprocessed || "";
      b.querySelector(".d").textContent = d.prediction.digit === null ? "?" : d.prediction.digit;
      b.querySelector(".p").textContent = d.prediction.digit === null ? "" : pct(d.prediction.confidence, 0);
      b.setAttribute("aria-label", `Digit ${i + 1}: ${d.prediction.digit}, ${pct(d.prediction.confidence)}`);
      b.addEventListener("click", () => selectDigit(i));
      li.append(b);
      list.append(li);
    });
    panel.hidden = false;
    selectDigit(Math.min(state.selected, r.digits.length - 1));
    if (state.pointerId === null) announce(`It reads ${r.number}.`);
  }

  function selectDigit(i) {
    const r = state.lastNumber;
    if (!r) return;
    state.selected = i;
    [...$("number-digits").querySelectorAll("button")].forEach((b, j) =>
      b.setAttribute("aria-pressed", String(i === j)),
    );
    renderScores(r.digits[i].prediction);
    renderBoxes(r);
  }

  function renderBoxes(r) {
    boxes.replaceChildren();
    if (!state.imageSize) return;
    const [w, h] = state.imageSize;
    r.digits.forEach((d, i) => {
      const box = document.createElement("div");
      box.className = `box${d.prediction.uncertain ? " unsure" : ""}${i === state.selected ? " selected" : ""}`;
      box.style.left = `${(100 * d.x) / w}%`;
      box.style.top = `${(100 * d.y) / h}%`;
      box.style.width = `${(100 * d.width) / w}%`;
      box.style.height = `${(100 * d.height) / h}%`;
      // The label sits outside the box (above it, or below when there is no room above), so
      // it never covers the digit it names.
      const room = 0.12;
      const where = d.y / h >= room ? "above" : (h - d.y - d.height) / h >= room ? "below" : "inside";
      box.dataset.label = where;
      const label = document.createElement("span");
      label.className = "box-label";
      label.textContent = d.prediction.digit === null ? "?" : d.prediction.digit;
      box.append(label);
      boxes.append(box);
    });
  }

  // Heat map: the server sends a ready-made RGBA overlay (blue = little, red = a lot, more
  // opaque where it mattered more) the size of the input; it is laid over the drawing/image.
  function drawHeat(dataURL) {
    const img = new Image();
    img.onload = () => {
      if (!heatToggle.checked || !hasInput()) return;
      heat.width = img.naturalWidth;
      heat.height = img.naturalHeight;
      const hctx = heat.getContext("2d");
      hctx.clearRect(0, 0, heat.width, heat.height);
      hctx.drawImage(img, 0, 0);
      heat.hidden = false;
    };
    img.src = dataURL;
  }

  function hideOverlays() {
    heat.hidden = true;
    boxes.replaceChildren();
  }

  function announce(text) {
    $("announcer").textContent = text;
  }

  function updateControls() {
    const content = hasInput();
    stage.classList.toggle("has-content", content);
    $("undo").disabled = !(state.strokes.length || state.cleared || state.source === "upload");
    $("clear").disabled = !(content || state.source === "upload");
  }

  function formatBytes(n) {
    if (n >= 1024 * 1024) return `${(n / (1024 * 1024)).toFixed(1)} MB`;
    if (n >= 1024) return `${Math.round(n / 1024)} kB`;
    return `${n} bytes`;
  }

  // ------------------------------------------------------------------ drag and drop, paste

  let dragDepth = 0;
  function hasFiles(e) {
    return e.dataTransfer && [...e.dataTransfer.types].includes("Files");
  }
  window.addEventListener("dragenter", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth++;
    $("drop-overlay").hidden = false;
    stage.classList.add("dragging");
  });
  window.addEventListener("dragover", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    e.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) endDrag();
  });
  window.addEventListener("drop", (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    dragDepth = 0;
    endDrag();
    handleFile(e.dataTransfer.files[0]);
  });
  function endDrag() {
    $("drop-overlay").hidden = true;
    stage.classList.remove("dragging");
  }

  document.addEventListener("paste", (e) => {
    const items = e.clipboardData ? [...e.clipboardData.items] : [];
    const item = items.find((it) => it.kind === "file" && it.type.startsWith("image/"));
    if (!item) return;
    e.preventDefault();
    handleFile(item.getAsFile());
  });

  // ------------------------------------------------------------------ keyboard

  function nudgeBrush(direction) {
    const v = Number(brush.value) + direction * BRUSH_STEP;
    brush.value = String(Math.min(Number(brush.max), Math.max(Number(brush.min), v)));
    brush.dispatchEvent(new Event("input"));
  }

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (t instanceof HTMLElement && (t.isContentEditable || t.matches("textarea, input[type=text]"))) return;
    const mod = e.ctrlKey || e.metaKey;
    if (mod && !e.shiftKey && !e.altKey && e.key.toLowerCase() === "z") {
      e.preventDefault();
      undo();
      return;
    }
    if (mod || e.altKey) return;
    const actions = {
      Escape: clearAll,
      Delete: clearAll,
      u: () => fileInput.click(),
      h: () => {
        if (!heatToggle.disabled) heatToggle.click();
      },
      n: () => setMode(state.mode === "digit" ? "number" : "digit"),
      "[": () => nudgeBrush(-1),
      "]": () => nudgeBrush(1),
    };
    const action = actions[e.key.length === 1 ? e.key.toLowerCase() : e.key];
    if (!action) return;
    e.preventDefault();
    action();
  });

  // ------------------------------------------------------------------ wiring

  stage.addEventListener("pointerdown", onPointerDown);
  stage.addEventListener("pointermove", onPointerMove);
  stage.addEventListener("pointerup", onPointerUp);
  stage.addEventListener("pointercancel", onPointerUp);
  stage.addEventListener("lostpointercapture", onPointerUp);
  stage.addEventListener("contextmenu", (e) => e.preventDefault());

  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", clearAll);
  $("upload").addEventListener("click", () => fileInput.click());
  fileInput.addEventListener("change", () => {
    handleFile(fileInput.files[0]);
    fileInput.value = "";
  });
  brush.addEventListener("input", () => {
    $("brush-value").textContent = brush.value;
  });
  heatToggle.addEventListener("change", () => {
    if (!heatToggle.checked) heat.hidden = true;
    else if (hasInput()) predictNow();
  });
  for (const radio of document.querySelectorAll('input[name="mode"]')) {
    radio.addEventListener("change", () => setMode(radio.value));
  }

  buildChart();
  setCanvasSize();
  showIdle();
  setPending(false);
  loadModelInfo();
  document.addEventListener("digitlab:model-changed", loadModelInfo); // feedback.js
})();
