// saring console: the operator's live feed (server-sent events, batched into one DOM update per frame, capped),
// the caller-history pane and the disposition form; a band filter, a pause that queues new contacts, a flash (and
// an optional sound) for HIGH contacts. Every word comes from the page or the server in the page's language. No
// external resources; served from /static.
"use strict";

// The case file's print button (no inline handlers: the page's CSP allows scripts from /static only).
(function () {
  const print = document.getElementById("print");
  if (print) print.addEventListener("click", function () { window.print(); });
})();

(function () {
  const MAX_ROWS = 200;
  const feed = document.getElementById("feed");
  if (!feed) return;
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const region = feed.dataset.region || "";
  const pending = [];
  let scheduled = false;
  let skipped = 0;
  // Pause: new contacts wait here (the newest MAX_ROWS of them; `queuedCount` counts them all) until resumed.
  let paused = false;
  let queued = [];
  let queuedCount = 0;
  let queuedHigh = 0;
  const pauseButton = document.getElementById("pause");
  const queuedNote = document.getElementById("queued");
  const bandFilter = document.getElementById("band-filter");
  const sound = document.getElementById("high-sound");
  // The HIGH-contact sound is the operator's choice, kept in this browser (localStorage), off until switched on.
  const SOUND_KEY = "saring.highSound";
  let audio = null;

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function span(text, className) {
    const element = document.createElement("span");
    element.textContent = text;
    element.className = className;
    return element;
  }

  function row(entry) {
    const tr = document.createElement("tr");
    tr.className = "contact row-band-" + entry.band + (entry.degraded ? " row-degraded" : "") + (entry.band === "high" && !entry.degraded ? " alert" : "");
    tr.dataset.contactId = entry.contact_id;
    tr.dataset.band = entry.band;
    const time = cell("");
    time.title = entry.date;
    time.appendChild(document.createTextNode(entry.clock + " "));
    time.appendChild(span(entry.zone, "zone"));
    tr.appendChild(time);
    const badge = document.createElement("td");
    const mark = span(entry.band === "none" ? entry.band_word : entry.band_word + " " + entry.percent,
      "badge band-" + entry.band + (entry.degraded ? " degraded" : ""));
    badge.appendChild(mark);
    if (entry.degraded) badge.appendChild(span("⚠ " + entry.degraded_text, "degraded-note"));
    tr.appendChild(badge);
    tr.appendChild(cell(entry.channel));
    tr.appendChild(cell(entry.region));
    const reasons = document.createElement("td");
    reasons.className = "reasons";
    const list = document.createElement("ul");
    for (const reason of entry.reasons) {
      const li = document.createElement("li");
      li.className = reason.up ? "up" : "down";
      li.title = reason.up ? feed.dataset.raises : feed.dataset.lowers;
      li.appendChild(span(reason.up ? "▲ " : "▼ ", "direction"));
      li.appendChild(document.createTextNode(reason.text));
      list.appendChild(li);
    }
    reasons.appendChild(list);
    tr.appendChild(reasons);
    const standing = [entry.rung, entry.open_case].filter((part) => part).join(" · ");
    tr.appendChild(cell(standing, "standing"));
    tr.appendChild(cell(entry.withheld ? "(" + entry.contact_id + ", " + feed.dataset.withheld + ")" : entry.contact_id, "contact-id"));
    tr.addEventListener("click", () => select(entry.contact_id, tr));
    return tr;
  }

  function beep() {
    if (!sound || !sound.checked) return;
    try {
      audio = audio || new AudioContext();
      const oscillator = audio.createOscillator();
      const gain = audio.createGain();
      oscillator.frequency.value = 880;
      gain.gain.value = 0.15;
      oscillator.connect(gain).connect(audio.destination);
      oscillator.start();
      oscillator.stop(audio.currentTime + 0.25);
    } catch (error) {
      // No audio device: the flash still draws attention.
    }
  }

  function flush() {
    scheduled = false;
    if (pending.length === 0) return;
    const batch = pending.splice(0, pending.length).slice(-MAX_ROWS);
    const fragment = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) fragment.appendChild(row(batch[i]));
    feed.insertBefore(fragment, feed.firstChild);
    while (feed.rows.length > MAX_ROWS) feed.deleteRow(feed.rows.length - 1);
    feed.dataset.received = String(Number(feed.dataset.received || 0) + batch.length);
    feed.dataset.skipped = String(skipped);
  }

  function schedule() {
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(flush);
    }
  }

  function showQueued() {
    queuedNote.dataset.count = String(queuedCount);
    queuedNote.textContent = queuedCount + " " + queuedNote.dataset.label + (queuedHigh > 0 ? " (" + queuedHigh + " " + queuedNote.dataset.high + ")" : "");
    queuedNote.classList.toggle("hidden", !paused);
    queuedNote.classList.toggle("has-high", queuedHigh > 0);
  }

  function setPaused(value) {
    paused = value;
    pauseButton.textContent = paused ? pauseButton.dataset.resume : pauseButton.dataset.pause;
    pauseButton.classList.toggle("paused", paused);
    feed.dataset.paused = paused ? "1" : "0";
    if (!paused) {
      pending.push(...queued);
      if (pending.length > MAX_ROWS) pending.splice(0, pending.length - MAX_ROWS);
      queued = [];
      queuedCount = 0;
      queuedHigh = 0;
      schedule();
    }
    showQueued();
  }

  pauseButton.addEventListener("click", () => setPaused(!paused));
  bandFilter.addEventListener("change", () => { feed.dataset.minBand = bandFilter.value; });
  if (sound) {
    sound.checked = localStorage.getItem(SOUND_KEY) === "on";
    sound.addEventListener("change", () => localStorage.setItem(SOUND_KEY, sound.checked ? "on" : "off"));
  }

  const source = new EventSource("/operator/feed" + (region ? "?region=" + encodeURIComponent(region) : ""));
  source.addEventListener("contact", (event) => {
    const entry = JSON.parse(event.data);
    skipped += entry.skipped;
    if (entry.band === "high" && !entry.degraded) beep();
    if (paused) {
      queued.push(entry);
      if (queued.length > MAX_ROWS) queued.splice(0, queued.length - MAX_ROWS);
      queuedCount += 1;
      if (entry.band === "high") queuedHigh += 1;
      showQueued();
      return;
    }
    pending.push(entry);
    if (pending.length > MAX_ROWS) pending.splice(0, pending.length - MAX_ROWS);
    schedule();
  });
  source.addEventListener("open", () => { feed.dataset.connected = "1"; });

  const history = document.getElementById("history");
  const form = document.getElementById("disposition-form");
  const result = document.getElementById("record-result");

  function line(label, value) {
    const p = document.createElement("p");
    const b = document.createElement("b");
    b.textContent = label + ": ";
    p.appendChild(b);
    p.appendChild(document.createTextNode(value));
    return p;
  }

  async function select(contactId, tr) {
    for (const selected of feed.querySelectorAll("tr.selected")) selected.classList.remove("selected");
    tr.classList.add("selected");
    document.getElementById("contact-id").value = contactId;
    result.textContent = "";
    document.getElementById("correction").classList.add("hidden");
    history.textContent = "…";
    const response = await fetch("/operator/contacts/" + encodeURIComponent(contactId), { credentials: "same-origin" });
    const data = await response.json();
    history.textContent = "";
    history.dataset.contactId = contactId;
    if (!response.ok) {
      history.appendChild(line("!", data.error));
    } else {
      for (const [label, value] of data.lines) {
        if (label) {
          history.appendChild(line(label, value));
        } else {
          const p = document.createElement("p");
          p.textContent = value;
          history.appendChild(p);
        }
      }
    }
    form.classList.remove("hidden");
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const contactId = document.getElementById("contact-id").value;
    const body = {
      disposition: document.getElementById("disposition").value,
      answered: document.getElementById("answered").checked,
      talk_s: Number(document.getElementById("talk-s").value || 0),
    };
    const response = await fetch("/operator/contacts/" + encodeURIComponent(contactId) + "/outcome", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({ error: response.statusText }));
    result.className = response.ok ? "ok" : "error";
    result.textContent = response.ok ? result.dataset.ok + (data.duplicate ? " (" + result.dataset.duplicate + ")" : "") : data.error;
    result.dataset.contactId = contactId;
    // Recorded with another disposition: the answer offers a correction with a reason.
    correction.classList.toggle("hidden", !(response.status === 409 && data.correctable));
    correctionResult.textContent = "";
  });

  const correction = document.getElementById("correction");
  const correctionResult = document.getElementById("correction-result");
  document.getElementById("correct").addEventListener("click", async () => {
    const contactId = document.getElementById("contact-id").value;
    const body = {
      disposition: document.getElementById("disposition").value,
      reason: document.getElementById("correction-reason").value,
    };
    const response = await fetch("/operator/contacts/" + encodeURIComponent(contactId) + "/correction", {
      method: "POST",
      credentials: "same-origin",
      headers: { "content-type": "application/json", "x-csrf-token": csrf },
      body: JSON.stringify(body),
    });
    const data = await response.json().catch(() => ({ error: response.statusText }));
    correctionResult.className = response.ok ? "ok" : "error";
    correctionResult.textContent = response.ok ? data.message : data.error;
    correctionResult.dataset.contactId = contactId;
  });
})();
