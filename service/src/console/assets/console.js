// saring console: the operator's live feed (server-sent events, batched into one DOM update per frame, capped),
// the caller-history pane and the disposition form. No external resources; served from /static.
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

  function cell(text, className) {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    return td;
  }

  function row(entry) {
    const tr = document.createElement("tr");
    tr.className = "contact";
    tr.dataset.contactId = entry.contact_id;
    tr.appendChild(cell(entry.time));
    const badge = document.createElement("td");
    const span = document.createElement("span");
    span.className = "badge band-" + entry.band + (entry.degraded ? " degraded" : "");
    span.textContent = entry.band === "none" ? "—" : Math.round(entry.likelihood * 100) + "%";
    badge.appendChild(span);
    tr.appendChild(badge);
    tr.appendChild(cell(entry.channel));
    tr.appendChild(cell(entry.region));
    tr.appendChild(cell(entry.reasons.join(" · "), "reasons"));
    tr.appendChild(cell(entry.withheld ? "(" + entry.contact_id + ")" : entry.contact_id, "contact-id"));
    tr.addEventListener("click", () => select(entry.contact_id, tr));
    return tr;
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

  const source = new EventSource("/operator/feed" + (region ? "?region=" + encodeURIComponent(region) : ""));
  source.addEventListener("contact", (event) => {
    const entry = JSON.parse(event.data);
    skipped += entry.skipped;
    pending.push(entry);
    if (pending.length > MAX_ROWS) pending.splice(0, pending.length - MAX_ROWS);
    if (!scheduled) {
      scheduled = true;
      requestAnimationFrame(flush);
    }
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
    } else if (data.withheld) {
      history.appendChild(line(contactId, "withheld"));
    } else {
      history.appendChild(line("contact", contactId));
      history.appendChild(line("total", String(data.total_contacts)));
      history.appendChild(line("24h", data.contacts_day.toFixed(1)));
      history.appendChild(line("misuse 30d", data.misuse_month.toFixed(1)));
      if (data.first_seen) history.appendChild(line("first", data.first_seen));
      if (data.last_seen) history.appendChild(line("last", data.last_seen));
      for (const [name, count] of data.dispositions_month) history.appendChild(line(name, count.toFixed(1)));
      if (data.rung) history.appendChild(line("rung", data.rung));
      if (data.open_case) history.appendChild(line("case", data.open_case));
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
    result.textContent = response.ok ? result.dataset.ok + (data.duplicate ? " (duplicate)" : "") : data.error;
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
