/**
 * The dashboard's stylesheet and script, served from /ui/app.css and /ui/app.js (the
 * Content-Security-Policy allows scripts and styles from the master only, nothing inline). The
 * script never builds HTML from data: it swaps in the server-rendered (escaped) parts, and adds
 * live events and deploy steps as text.
 */

/** How often the page fetches a fresh copy of its parts (nodes, services, hostnames, charts). */
export const REFRESH_MS = 2_000

export const script = `"use strict";
(() => {
  const parts = document.getElementById("parts");
  const stale = document.getElementById("stale");
  // A refresh that fails says so above the parts (which stay as last seen); the next tick tries again.
  const problem = (text) => { stale.textContent = text; stale.hidden = text === ""; };
  const refresh = async () => {
    try {
      const response = await fetch("/ui/parts", { credentials: "same-origin", cache: "no-store" });
      // The session ended (sign-out, expiry, a token taken away): back to the sign-in form.
      if (response.status === 401) { window.location.assign("/ui"); return; }
      if (!response.ok) { problem("Not refreshed since " + new Date().toISOString().slice(11, 19) + ": the master answered " + response.status + " (" + (await response.text()).slice(0, 200) + ")"); return; }
      parts.innerHTML = await response.text();
      problem("");
    } catch (error) {
      problem("Not refreshed: the master is out of reach (" + error + "); trying again every ${REFRESH_MS / 1000} s");
    }
  };
  window.setInterval(refresh, ${REFRESH_MS});

  const add = (list, text, className) => {
    const item = document.createElement("li");
    item.textContent = text;
    if (className) item.className = className;
    list.prepend(item);
    while (list.children.length > 200) list.lastElementChild.remove();
  };
  const time = (at) => new Date(at).toISOString().slice(11, 19);
  const events = document.getElementById("events");
  const progress = document.getElementById("progress");
  const state = document.getElementById("live-state");
  const source = new EventSource("/ui/live");
  source.onopen = () => { state.textContent = "live"; };
  source.onerror = () => { state.textContent = "reconnecting…"; };
  source.addEventListener("event", (message) => {
    const e = JSON.parse(message.data);
    const bad = /-> (unhealthy|suspect)|: (failed|refused|died) [(]/.test(e.message);
    add(events, time(e.at) + " " + e.node + " " + e.kind + (e.service ? " " + e.service : "") + ": " + e.message, "event " + e.kind + (bad ? " bad" : ""));
  });
  source.addEventListener("step", (message) => {
    const s = JSON.parse(message.data);
    document.getElementById("progress-empty").hidden = true;
    add(progress, time(s.at) + " " + s.service + " [" + s.node + "] " + s.step + ": " + s.status + (s.detail ? " (" + s.detail + ")" : ""), "step " + s.status);
  });
  source.addEventListener("ended", (message) => {
    const d = JSON.parse(message.data);
    document.getElementById("progress-empty").hidden = true;
    add(progress, time(d.at) + " " + d.service + ": deploy " + (d.result === "ok" ? "done" : "failed (" + d.result + ")") + " in " + (d.durationMs / 1000).toFixed(1) + " s", "ended " + (d.result === "ok" ? "ok" : "failed"));
  });
})();
`

export const stylesheet = `
:root { color-scheme: light; --bad: #b91c1c; --good: #15803d; --quiet: #6b7280; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #111827; background: #f9fafb; }
header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem; background: #111827; color: #f9fafb; }
header h1 { font-size: 1.1rem; margin: 0; }
header .who { flex: 1; }
header form { margin: 0; }
main { padding: 0 1rem 2rem; }
section { margin-top: 1.2rem; }
h2 { font-size: 1rem; margin: 0 0 .4rem; }
table { border-collapse: collapse; width: 100%; background: #fff; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
th { font-weight: 600; background: #f3f4f6; }
td ul { margin: 0; padding-left: 1rem; }
.badge { padding: .05rem .45rem; border-radius: .6rem; font-size: .85em; background: #e5e7eb; }
.badge.healthy, .badge.active { background: #dcfce7; color: var(--good); }
.badge.suspect { background: #fef9c3; color: #854d0e; }
.badge.unhealthy, .badge.stopped { background: #fee2e2; color: var(--bad); }
.bad { color: var(--bad); } .good { color: var(--good); } .quiet { color: var(--quiet); }
.problems, .problem { color: var(--bad); }
.log { font-family: ui-monospace, monospace; font-size: 12.5px; max-height: 18rem; overflow: auto; background: #fff; border: 1px solid #e5e7eb; margin: 0; padding: .4rem .4rem .4rem 2rem; }
.log .failed, .log .step.failed, .log .bad { color: var(--bad); }
.log .ok, .log .step.done { color: var(--good); }
.charts { display: flex; flex-wrap: wrap; gap: 1rem; }
.charts h2 { width: 100%; }
figure { margin: 0; background: #fff; border: 1px solid #e5e7eb; padding: .5rem; }
figure svg { width: 640px; max-width: 100%; height: auto; }
figcaption { color: var(--quiet); font-size: .9em; }
.axis { stroke: #9ca3af; stroke-width: 1; }
.tick { font-size: 10px; fill: var(--quiet); }
.series { fill: none; stroke-width: 1.5; }
circle.ok { fill: var(--good); } circle.failed { fill: var(--bad); }
.legend { list-style: none; display: flex; gap: 1rem; padding: 0; margin: .3rem 0 0; }
.swatch { display: inline-block; width: .8rem; height: .8rem; margin-right: .3rem; vertical-align: middle; }
.s0 { stroke: #2563eb; background: #2563eb; } .s1 { stroke: #dc2626; background: #dc2626; } .s2 { stroke: #16a34a; background: #16a34a; } .s3 { stroke: #9333ea; background: #9333ea; }
.s4 { stroke: #ea580c; background: #ea580c; } .s5 { stroke: #0891b2; background: #0891b2; } .s6 { stroke: #4b5563; background: #4b5563; } .s7 { stroke: #ca8a04; background: #ca8a04; }
.login { max-width: 24rem; margin: 4rem auto; background: #fff; padding: 1.5rem; border: 1px solid #e5e7eb; }
.login label { display: block; margin-bottom: .3rem; }
.login input { width: 100%; box-sizing: border-box; padding: .4rem; margin-bottom: .8rem; }
.login .problem { color: var(--bad); }
.login .hint { color: var(--quiet); font-size: .9em; }
`
