/* digitlab drawing page: teach the model (issue #17).
 *
 * After each prediction: "Right", "Wrong — it's a …" (the ten digits; keys 0-9 while the result
 * has focus) or, in number mode, the corrected number; "Undo" takes the last correction back; a
 * counter shows how many are stored; "Improve from N corrections" fine-tunes the model in the
 * background and shows its progress. Talks to /api/feedback (see digitlab.apps.feedback.routes).
 *
 * Hooks into app.js through two document events, nothing else:
 *   "digitlab:prediction"  detail {blob, mode, data}: an answer is on screen (blob = image sent)
 *   "digitlab:cleared"     the input was cleared
 * The panel stays hidden when the server keeps no feedback (GET /api/feedback/stats not 200).
 */
(() => {
  "use strict";

  const POLL_MS = 1000;
  const $ = (id) => document.getElementById(id);
  const result = $("result");
  if (!result) return;

  const panel = document.createElement("section");
  panel.className = "feedback";
  panel.id = "feedback";
  panel.hidden = true;
  panel.setAttribute("aria-label", "Teach the model");
  panel.innerHTML = `
    <h3 class="panel-title">Teach it <span class="panel-note">(corrections are kept on this server)</span></h3>
    <div class="fb-row" id="fb-digit-row">
      <button type="button" class="btn fb-right" id="fb-right" disabled>Right</button>
      <span class="fb-wrong-label" id="fb-wrong-label">Wrong — it's a</span>
      <div class="fb-digits" id="fb-digits" role="group" aria-labelledby="fb-wrong-label"></div>
    </div>
    <form class="fb-row" id="fb-number-row" hidden>
      <button type="button" class="btn fb-right" id="fb-right-number" disabled>Right</button>
      <label for="fb-number">Wrong — it's</label>
      <input id="fb-number" class="fb-number" inputmode="numeric" pattern="[0-9]+" maxlength="32"
             autocomplete="off" placeholder="the right number" disabled>
      <button type="submit" class="btn" id="fb-save-number" disabled>Save</button>
    </form>
    <p class="fb-status" id="fb-status" aria-live="polite"></p>
    <div class="fb-row fb-footer">
      <span class="fb-count"><output id="fb-count">0</output> corrections stored</span>
      <button type="button" class="btn" id="fb-undo" disabled>Undo</button>
      <button type="button" class="btn btn-primary" id="fb-improve" disabled>Improve</button>
      <progress id="fb-progress" max="1" value="0" hidden></progress>
    </div>`;
  result.append(panel);

  const digits = $("fb-digits");
  for (let d = 0; d <= 9; d++) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "btn fb-digit";
    b.textContent = String(d);
    b.dataset.digit = String(d);
    b.disabled = true;
    b.setAttribute("aria-keyshortcuts", String(d));
    b.title = `It's a ${d} (key ${d})`;
    b.addEventListener("click", () => send(String(d)));
    digits.append(b);
  }

  const fb = {
    current: null, // {blob, mode, predicted} of the answer on screen, until corrected
    undo: [], // [{id, token}] of this page's corrections, newest last
    count: 0,
    polling: 0,
  };

  function say(text, kind = "") {
    const el = $("fb-status");
    el.textContent = text;
    el.dataset.kind = kind;
  }

  function setCount(n) {
    fb.count = n;
    $("fb-count").textContent = String(n);
    const improve = $("fb-improve");
    improve.textContent = `Improve from ${n} correction${n === 1 ? "" : "s"}`;
    if (!fb.polling) improve.disabled = n === 0;
  }

  function enableAnswer(on) {
    for (const b of digits.querySelectorAll("button")) b.disabled = !on;
    for (const id of ["fb-right", "fb-right-number", "fb-number", "fb-save-number"]) $(id).disabled = !on;
  }

  function predictedOf(mode, data) {
    if (mode === "number") return data.number || "";
    return data.digit === null || data.digit === undefined ? "" : String(data.digit);
  }

  async function call(method, url, body, headers = {}) {
    let response;
    try {
      response = await fetch(url, { method, body, headers });
    } catch (_) {
      throw new Error("the server did not answer");
    }
    let data = null;
    try {
      data = await response.json();
    } catch (_) {
      /* not JSON */
    }
    if (!response.ok) {
      throw new Error(data && data.detail ? String(data.detail) : `${response.status} ${response.statusText}`);
    }
    return data;
  }

  async function send(label) {
    const cur = fb.current;
    if (!cur) return;
    fb.current = null;
    enableAnswer(false);
    const form = new FormData();
    form.append("file", cur.blob, "drawing.png");
    form.append("label", label);
    if (cur.predicted !== "") form.append("predicted", cur.predicted);
    form.append("source", "web");
    const right = label === cur.predicted;
    say(right ? "Saving…" : `Saving: it's ${label}…`);
    try {
      const data = await call("POST", "/api/feedback", form);
      if (!data.duplicate && data.undo_token) fb.undo.push({ id: data.id, token: data.undo_token });
      setCount(data.count);
      $("fb-undo").disabled = fb.undo.length === 0;
      say(
        data.duplicate
          ? "Already stored: this exact image was saved before."
          : right
            ? "Thanks: kept as a confirmed example."
            : `Thanks: kept as ${label}. The model learns from it when you improve it.`,
        "ok",
      );
    } catch (err) {
      fb.current = cur;
      enableAnswer(true);
      say(`Not saved: ${err.message}`, "error");
    }
  }

  async function undoLast() {
    const last = fb.undo.pop();
    $("fb-undo").disabled = true;
    if (!last) return;
    try {
      const data = await call("DELETE", `/api/feedback/${last.id}`, undefined, { "X-Undo-Token": last.token });
      setCount(data.count);
      say("Undone: the last correction was taken back.", "ok");
    } catch (err) {
      fb.undo.push(last);
      say(`Could not undo: ${err.message}`, "error");
    }
    $("fb-undo").disabled = fb.undo.length === 0;
  }

  async function improve() {
    $("fb-improve").disabled = true;
    try {
      const status = await call("POST", "/api/feedback/improve");
      showProgress(status);
      fb.polling = setInterval(poll, POLL_MS);
    } catch (err) {
      $("fb-improve").disabled = fb.count === 0;
      say(`Cannot improve now: ${err.message}`, "error");
    }
  }

  function showProgress(status) {
    const bar = $("fb-progress");
    bar.hidden = status.state !== "running";
    bar.value = status.progress;
    const kind = status.state === "done" ? "ok" : status.state === "running" ? "" : "error";
    say(status.state === "running" ? `Improving… ${status.message}` : status.message, kind);
  }

  async function poll() {
    try {
      const status = await call("GET", "/api/feedback/improve");
      showProgress(status);
      if (status.state !== "running") {
        clearInterval(fb.polling);
        fb.polling = 0;
        $("fb-improve").disabled = fb.count === 0;
        if (status.state === "done") document.dispatchEvent(new Event("digitlab:model-changed"));
      }
    } catch (err) {
      say(`Lost track of the improvement: ${err.message}`, "error");
    }
  }

  document.addEventListener("digitlab:prediction", (e) => {
    const { blob, mode, data } = e.detail;
    fb.current = { blob, mode, predicted: predictedOf(mode, data) };
    $("fb-digit-row").hidden = mode === "number";
    $("fb-number-row").hidden = mode !== "number";
    $("fb-number").value = "";
    enableAnswer(Boolean(blob));
    say(mode === "number" ? "Is the number right?" : "Is it right?");
  });

  document.addEventListener("digitlab:cleared", () => {
    fb.current = null;
    enableAnswer(false);
    if (!fb.polling) say("");
  });

  $("fb-right").addEventListener("click", () => fb.current && send(fb.current.predicted));
  $("fb-right-number").addEventListener("click", () => fb.current && send(fb.current.predicted));
  $("fb-number-row").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("fb-number").value.trim();
    if (!/^[0-9]{1,32}$/.test(value)) {
      say("Type the right number with digits only.", "error");
      return;
    }
    send(value);
  });
  $("fb-undo").addEventListener("click", undoLast);
  $("fb-improve").addEventListener("click", improve);

  // Keys 0-9 correct the digit while the result card has focus.
  result.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || !/^[0-9]$/.test(e.key)) return;
    if (e.target instanceof HTMLInputElement) return;
    if (!fb.current || fb.current.mode !== "digit") return;
    e.preventDefault();
    e.stopPropagation();
    send(e.key);
  });

  (async () => {
    try {
      const stats = await call("GET", "/api/feedback/stats");
      setCount(stats.count);
      panel.hidden = false;
      const status = await call("GET", "/api/feedback/improve");
      if (status.state === "running") {
        showProgress(status);
        $("fb-improve").disabled = true;
        fb.polling = setInterval(poll, POLL_MS);
      }
    } catch (_) {
      panel.hidden = true; // feedback is off on this server
    }
  })();
})();
