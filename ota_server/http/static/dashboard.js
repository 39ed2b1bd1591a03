// The dashboard of `ota-server serve`: polls /api/dashboard once a second (no build step, no library).
"use strict";

const POLL_MS = 1000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function sparkline(values) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "spark");
  svg.setAttribute("viewBox", "0 0 120 24");
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? 120 / (values.length - 1) : 0;
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", values.map((v, i) => `${(i * step).toFixed(1)},${(23 - (v / max) * 22).toFixed(1)}`).join(" "));
  svg.append(line);
  return svg;
}

function rateCell(values) {
  const last = values.length ? values[values.length - 1] : 0;
  return el("td", {}, sparkline(values.slice(-120)), el("span", { class: "rate" }, last.toFixed(0)));
}

function campaignRow(c) {
  const s = c.summary || {};
  const p = c.progress || { done: 0, total: 0 };
  const pct = p.total ? (100 * p.done) / p.total : 0;
  const rates = (c.live && c.live.rates) || { sms_per_s: [], por_per_s: [] };
  const bar = el("span", { class: "bar" }, el("span", { style: `width:${pct.toFixed(1)}%` }));
  const status = c.live && c.live.error ? `${c.status}: ${c.live.error}` : c.status;
  const row = el(
    "tr",
    { "data-campaign": c.campaign, "data-status": c.status },
    el("td", {}, c.campaign),
    el("td", { class: "status" + (c.live && c.live.error ? " error" : "") }, status),
    el("td", { class: "progress", "data-done": p.done, "data-total": p.total },
      bar, el("span", { class: "progress-text" }, `${p.done}/${p.total}`)),
  );
  for (const k of ["confirmed", "partial", "failed", "pending"]) {
    row.append(el("td", { "data-count": k }, s[k] ?? "–"));
  }
  row.append(rateCell(rates.sms_per_s), rateCell(rates.por_per_s));
  return row;
}

function failureTables(c) {
  const box = el("div", { "data-campaign": c.campaign });
  const f = c.failures || {};
  for (const [title, key] of [["by PoR status", "by_por_status"], ["by status word", "by_status_word"]]) {
    const entries = Object.entries(f[key] || {});
    if (!entries.length) continue;
    const t = el("table", { class: "failures", "data-failures": key },
      el("thead", {}, el("tr", {}, el("th", {}, `${c.campaign}: failures ${title}`), el("th", {}, "jobs"))));
    const body = el("tbody");
    for (const [what, n] of entries) body.append(el("tr", {}, el("td", {}, what), el("td", {}, n)));
    t.append(body);
    box.append(t);
  }
  return box;
}

async function refresh() {
  try {
    const answer = await fetch("/api/dashboard", { cache: "no-store" });
    if (!answer.ok) throw new Error(`HTTP ${answer.status}`);
    const data = await answer.json();
    const body = document.querySelector("#campaigns tbody");
    body.replaceChildren(...data.campaigns.map(campaignRow));
    document.getElementById("no-campaigns").hidden = data.campaigns.length > 0;
    const failures = document.getElementById("failures");
    failures.replaceChildren(...data.campaigns.filter((c) => c.failures).map(failureTables));
    if (failures.textContent) failures.prepend(el("h2", {}, "Failures"));
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    document.getElementById("updated").textContent = `not updated: ${err.message}`;
  } finally {
    setTimeout(refresh, POLL_MS);
  }
}

async function showCard(event) {
  event.preventDefault();
  const id = document.getElementById("card-id").value.trim();
  const out = document.getElementById("card-result");
  const answer = await fetch(`/api/cards/${encodeURIComponent(id)}`, { cache: "no-store" });
  const data = await answer.json();
  if (!answer.ok) {
    out.replaceChildren(el("p", { class: "error" }, data.error));
    return;
  }
  const head = el("p", {}, `ICCID ${data.iccid}, MSISDN ${data.msisdn}, IMSI ${data.imsi}` +
    (data.tags.length ? `, tags ${data.tags.join(", ")}` : ""));
  const jobs = data.jobs.map((j) => `${j.campaign} step ${j.step}: ${j.state} (${j.executed}/${j.actions})`).join("; ");
  const t = el("table", { id: "audit" }, el("thead", {}, el("tr", {},
    ...["time (UTC)", "campaign", "dir", "kind", "CNTR", "status", "detail"].map((h) => el("th", {}, h)))));
  const body = el("tbody");
  for (const r of data.audit) {
    body.append(el("tr", {}, ...[r.at, r.campaign ?? "", r.direction, r.kind, r.cntr ?? "-", r.status ?? "-", r.detail ?? ""]
      .map((v) => el("td", {}, v))));
  }
  t.append(body);
  out.replaceChildren(head, el("p", {}, jobs || "no job"), t);
}

document.getElementById("card-search").addEventListener("submit", showCard);
refresh();
