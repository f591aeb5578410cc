/**
 * The dashboard's pages, rendered on the master from what it knows: pure functions from a
 * picture of the fleet to HTML (every value escaped by `html`). The page's script (Assets.ts)
 * only swaps in a fresh copy of the `parts` and appends live events and deploy steps as text.
 */
import type { Operations, Routes, Status } from "@mcp/domain"
import type { DeployRecord } from "../services/DeployActivity.js"
import { secondsSince } from "../daemon/handlers/FleetViews.js"
import type * as HeartbeatAges from "./HeartbeatAges.js"
import { type Html, html } from "./Html.js"

export interface FleetPicture {
  readonly now: number
  readonly nodes: ReadonlyArray<Operations.NodeView>
  readonly services: ReadonlyArray<Status.ServiceStatus>
  readonly unreachable: ReadonlyArray<{ readonly node: string; readonly reason: string }>
  readonly hostnames: ReadonlyArray<Routes.EdgeRoute>
  /** The last DNS check of the public hostnames, by hostname; absent until one ran. */
  readonly dns: ReadonlyMap<string, typeof Routes.DnsCheckResult.Type>
  /** The heartbeat chart's lines (at most MAX_CHART_SERIES) and how many nodes were sampled. */
  readonly heartbeats: HeartbeatAges.Chart
  readonly deploys: ReadonlyArray<DeployRecord>
}

export interface Viewer {
  readonly name: string
  readonly role: string
}

const HOUR_MS = 3_600_000
const DAY_MS = 86_400_000

const page = (title: string, body: Html) =>
  html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><link rel="stylesheet" href="/ui/app.css"></head>
<body>${body}</body></html>`

/** The login form; `problem` says why the last try failed. */
export const login = (problem: string | undefined) =>
  page("MCP: sign in", html`<main class="login">
<h1>MCP fleet</h1>
<form method="post" action="/ui/login">
<label for="token">Token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
</form>
${problem === undefined ? "" : html`<p class="problem" role="alert">${problem}</p>`}
<p class="hint">Any token this master accepts: an admin, user or guest token from its token file. A guest token gives the same read-only view.</p>
</main>`)

/** The whole page: a header, the parts the script refreshes, and the live sections. */
export const dashboard = (viewer: Viewer, picture: FleetPicture, csrf: string) =>
  page("MCP fleet", html`<header>
<h1>MCP fleet</h1>
<span class="who">signed in as <b>${viewer.name}</b> (${viewer.role}); read-only view: changes go through the mcp CLI</span>
<form method="post" action="/ui/logout"><input type="hidden" name="csrf" value="${csrf}"><button type="submit">Sign out</button></form>
</header>
<main>
<p id="stale" class="problem" role="status" hidden></p>
<div id="parts">${parts(picture)}</div>
<section><h2>Deploys in progress</h2><ol id="progress" class="log"></ol><p id="progress-empty" class="quiet">No deploy since this page opened.</p></section>
<section><h2>Events</h2><p id="live-state" class="quiet">connecting…</p><ol id="events" class="log"></ol></section>
</main>
<script src="/ui/app.js"></script>`)

const age = (seconds: number | undefined) => (seconds === undefined ? "never" : seconds < 120 ? `${seconds} s` : seconds < 7200 ? `${Math.floor(seconds / 60)} min` : `${Math.floor(seconds / 3600)} h`)

const bytes = (n: number) => (n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : `${Math.round(n / 1024 ** 2)} MiB`)

const secondsSinceOrNever = (iso: string | undefined, now: number) => (iso === undefined ? undefined : secondsSince(iso, now))

const daysLeft = (notAfter: string, now: number) => {
  const t = Date.parse(notAfter)
  if (Number.isNaN(t)) return html`<span class="bad">unreadable</span>`
  const days = Math.floor((t - now) / DAY_MS)
  return html`<span class="${days < 14 ? "bad" : ""}" title="${notAfter}">${days} d</span>`
}

/** The parts of the page that change: refreshed as a whole every few seconds. */
export const parts = (p: FleetPicture) =>
  html`<section><h2>Nodes</h2>${nodesTable(p)}</section>
<section><h2>Services</h2>${servicesTable(p)}${p.unreachable.length === 0 ? "" : html`<ul class="problems">${p.unreachable.map((u) => html`<li>${u.node}: not asked or did not answer (${u.reason}); its services are not listed</li>`)}</ul>`}</section>
<section><h2>Public hostnames</h2>${hostnamesTable(p)}</section>
<section class="charts"><h2>Last hour</h2>${heartbeatChart(p)}${deployChart(p)}</section>
<p class="quiet">As of ${new Date(p.now).toISOString()}</p>`

const nodesTable = (p: FleetPicture) =>
  p.nodes.length === 0
    ? html`<p class="quiet">No node has registered.</p>`
    : html`<table id="nodes"><thead><tr><th>Node</th><th>Role</th><th>Health</th><th>Last heartbeat</th><th>Version</th><th>Load</th><th>Memory free</th><th>Disk free</th><th>Containers</th></tr></thead><tbody>
${p.nodes.map((n) => {
  const r = n.resources
  return html`<tr data-node="${n.info.name}" data-health="${n.health}"><td>${n.info.name}</td><td>${n.info.role}</td><td><span class="badge ${n.health}">${n.health}</span></td><td>${age(secondsSinceOrNever(n.lastHeartbeat, p.now))}</td><td>${n.info.version} (${n.info.arch})</td>
<td>${r === undefined ? "" : `${r.load1.toFixed(2)} on ${r.cpuCores} cores`}</td><td>${r === undefined ? "" : `${bytes(r.memoryFreeBytes)} of ${bytes(r.memoryTotalBytes)}`}</td><td>${r === undefined ? "" : `${bytes(r.diskFreeBytes)} of ${bytes(r.diskTotalBytes)}`}</td><td>${r?.containers}</td></tr>`
})}</tbody></table>`

const servicesTable = (p: FleetPicture) =>
  p.services.length === 0
    ? html`<p class="quiet">No service is deployed.</p>`
    : html`<table id="services"><thead><tr><th>Service</th><th>Node</th><th>State</th><th>Containers</th><th>Routes (host port)</th><th>Certificates</th><th>Warnings</th></tr></thead><tbody>
${[...p.services].sort((a, b) => a.service.localeCompare(b.service)).map((s) => {
  const running = s.components.filter((c) => c.state === "running").length
  const routes = s.components.flatMap((c) => c.routes.map((r) => html`<li>${r.hostname}:${r.listener} → ${r.hostPort} (${c.name})</li>`))
  return html`<tr data-service="${s.service}"><td>${s.service}</td><td>${s.node}</td><td><span class="badge ${s.active ? "active" : "stopped"}">${s.active ? "active" : "stopped"}</span></td>
<td>${running} of ${s.components.length} running${s.components.filter((c) => c.state !== "running").map((c) => html`<br><span class="bad">${c.name}: ${c.state}</span>`)}</td>
<td><ul>${routes}</ul></td><td><ul>${(s.certificates ?? []).map((c) => html`<li>${c.hostname}: ${daysLeft(c.notAfter, p.now)}</li>`)}</ul></td>
<td>${s.warnings.map((w) => html`<div class="bad">${w}</div>`)}</td></tr>`
})}</tbody></table>`

const hostnamesTable = (p: FleetPicture) =>
  p.hostnames.length === 0
    ? html`<p class="quiet">No public hostname is routed.</p>`
    : html`<table id="hostnames"><thead><tr><th>Hostname</th><th>Service</th><th>Edge node</th><th>Worker</th><th>Certificate</th><th>DNS</th></tr></thead><tbody>
${p.hostnames.map((h) => {
  const dns = p.dns.get(h.hostname)
  return html`<tr data-hostname="${h.hostname}"><td>${h.hostname}</td><td>${h.service}</td><td>${h.edgeNode}</td><td>${h.workerNode}</td><td>${daysLeft(h.certNotAfter, p.now)}</td>
<td>${dns === undefined ? html`<span class="quiet">not checked yet</span>` : dns.ok ? html`<span class="good">points at ${h.edgeNode}</span>` : html`<span class="bad" title="${dns.fix ?? ""}">${dns.problem ?? "does not point at its edge"}</span>`}</td></tr>`
})}</tbody></table>`

const WIDTH = 640
const HEIGHT = 140
const PAD = 30
/** Series colours are classes (s0..s7 in app.css): the Content-Security-Policy allows no inline style. */
const SERIES = 8
/** The heartbeat chart draws this many nodes at most, each in a colour of its own. */
export const MAX_CHART_SERIES = SERIES

const xOf = (at: number, now: number) => PAD + ((at - (now - HOUR_MS)) / HOUR_MS) * (WIDTH - 2 * PAD)
const yOf = (value: number, max: number) => HEIGHT - PAD - (max === 0 ? 0 : (value / max) * (HEIGHT - 2 * PAD))

const axes = (now: number, max: number, unit: string) =>
  html`<line x1="${PAD}" y1="${HEIGHT - PAD}" x2="${WIDTH - PAD}" y2="${HEIGHT - PAD}" class="axis"/><line x1="${PAD}" y1="${PAD}" x2="${PAD}" y2="${HEIGHT - PAD}" class="axis"/>
<text x="${PAD}" y="${HEIGHT - 8}" class="tick">−60 min</text><text x="${WIDTH - PAD}" y="${HEIGHT - 8}" class="tick" text-anchor="end">now (${new Date(now).toISOString().slice(11, 19)})</text>
<text x="${PAD - 4}" y="${PAD}" class="tick" text-anchor="end">${max.toFixed(max < 10 ? 1 : 0)}</text><text x="${PAD - 4}" y="${HEIGHT - PAD}" class="tick" text-anchor="end">0</text>
<text x="${PAD + 4}" y="${PAD - 8}" class="tick">${unit}</text>`

const heartbeatChart = (p: FleetPicture) => {
  const { nodes, series } = p.heartbeats
  // A loop, not Math.max(...): an hour of samples is more arguments than a call takes.
  let max = 1
  for (const s of series) for (const [, v] of s.points) if (v > max) max = v
  const lines = series.map((s, i) =>
    html`<polyline points="${s.points.map(([at, v]) => `${xOf(at, p.now).toFixed(1)},${yOf(v, max).toFixed(1)}`).join(" ")}" class="series s${i % SERIES}"><title>${s.node}</title></polyline>`)
  const which = series.length < nodes ? ` of the ${series.length} nodes (of ${nodes}) whose heartbeats were oldest this hour` : " per node"
  return html`<figure id="heartbeat-chart"><figcaption>Heartbeat age${which} (seconds since the last one, sampled)</figcaption>
<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="heartbeat age per node over the last hour">${axes(p.now, max, "s")}${lines}</svg>
<ul class="legend">${series.map((s, i) => html`<li><span class="swatch s${i % SERIES}"></span>${s.node}</li>`)}</ul></figure>`
}

const deployChart = (p: FleetPicture) => {
  let max = 1
  for (const d of p.deploys) if (d.durationMs / 1000 > max) max = d.durationMs / 1000
  const marks = p.deploys.map((d) =>
    html`<circle cx="${xOf(d.endedAt, p.now).toFixed(1)}" cy="${yOf(d.durationMs / 1000, max).toFixed(1)}" r="3.5" class="${d.result === "ok" ? "ok" : "failed"}"><title>${d.service}: ${(d.durationMs / 1000).toFixed(1)} s, ${d.result}</title></circle>`)
  return html`<figure id="deploy-chart"><figcaption>Deploy durations (${p.deploys.length} in the last hour; red: failed)</figcaption>
<svg viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="deploy durations over the last hour">${axes(p.now, max, "s")}${marks}</svg></figure>`
}
