/**
 * bench/chaos: a seeded chaos run on a netns fleet (issue 18).
 *
 * The fleet of test/support/ChaosFleet.ts: the master here, workers w1 and w2 and edge e1 each in
 * a network namespace of its own, real Podman, HAProxy and PowerDNS. Two steady services (st1 on
 * w1, st2 on w2) are requested through the workers' proxies and the edge all the time, while each
 * scenario injects faults (partitions, a node's link down, packet loss in either direction, SIGKILL of the master, an
 * agent, a node's HAProxy, a worker's Podman API service or PowerDNS, a full disk under a worker
 * agent's data directory or a node's proxy directory; each healed after a while) and runs deploys,
 * redeploys, moves, stops, starts and undeploys of o1..o3 (o3 not public) through the master.
 * After each scenario it checks the fleet (containers, proxy routes and certificates, agent
 * certificates, the internal zone in the master and in PowerDNS, edge routes, the master's and
 * the agents' records): debris, views that disagree,
 * operations neither done nor undone, failed requests no fault explains, unhealthy verdicts no
 * fault explains, and the time to converge. `--seed S` replays the same plans.
 *
 * A scenario with findings leaves what each daemon logged during it in `--logs DIR` (default
 * /tmp/mcp-chaos-logs-<seed>), as scenario-<index>-<daemon>.log. The table is printed at the end,
 * and also when the run is stopped (SIGINT, SIGTERM), for the scenarios it finished.
 *
 * The agents reach the master through a relay that holds each chunk for a random 0..N ms
 * (`--jitter-ms`, default 200; 0 turns it off): the delay jitter tc netem would add, on a kernel
 * without sch_netem.
 *
 *   node --import tsx bench/chaos.ts [--seed S] [--scenarios K] [--verbose] [--converge-timeout-ms N (60000)] [--logs DIR] [--jitter-ms N]
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { FAULT_KINDS, formatReport, SLOW_MS, makePlans, type ScenarioReport, startChaosFleet, startSession } from "../test/support/ChaosFleet.js"

const arg = (name: string) => {
  const i = process.argv.indexOf(`--${name}`)
  return i < 0 ? undefined : process.argv[i + 1]
}
const seed = Number(arg("seed") ?? 1)
const count = Number(arg("scenarios") ?? 3)
const verbose = process.argv.includes("--verbose")
const convergeTimeoutMs = Number(arg("converge-timeout-ms") ?? 60_000)
const logsDir = arg("logs") ?? join(tmpdir(), `mcp-chaos-logs-${seed}`)
const jitterMs = Number(arg("jitter-ms") ?? 200)
if (!Number.isInteger(seed) || !Number.isInteger(count) || count < 1 || !Number.isInteger(jitterMs) || jitterMs < 0) {
  console.error("usage: node --import tsx bench/chaos.ts [--seed S] [--scenarios K] [--verbose] [--converge-timeout-ms N] [--logs DIR] [--jitter-ms N]")
  process.exit(2)
}

const dir = mkdtempSync(join(tmpdir(), "mcp-bench-chaos-"))
mkdirSync(logsDir, { recursive: true })
const plans = makePlans(seed, count)
const reports: Array<ScenarioReport> = []
const t0 = Date.now()
// A fleet that could not start has stopped what it started; its directory goes too.
const fleet = await startChaosFleet(dir, { jitterMs }).catch((e: unknown) => {
  rmSync(dir, { recursive: true, force: true })
  throw e
})
// Ctrl-C or a timeout's SIGTERM: the namespaces, mounts and peers go too (then the exit code says so).
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    console.error(`chaos: ${signal}: stopping the fleet`)
    printTable()
    void fleet.dispose().finally(() => {
      rmSync(dir, { recursive: true, force: true })
      process.exit(130)
    })
  })
}
console.error(`chaos: fleet up in ${Date.now() - t0} ms (master ${fleet.masterAddress}; ${Object.values(fleet.nodes).map((n) => `${n.name} ${n.address}`).join(", ")})`)
try {
  const session = await startSession(fleet, { convergeTimeoutMs })
  for (const plan of plans) {
    const report = await session.runScenario(plan, verbose ? (l) => console.error(l) : undefined)
    reports.push(report)
    console.error(formatReport(report))
    for (const [daemon, text] of Object.entries(report.logs)) writeFileSync(join(logsDir, `scenario-${report.plan.index}-${daemon}.log`), text)
  }
} finally {
  await fleet.dispose()
  rmSync(dir, { recursive: true, force: true })
}

printTable()
process.exitCode = reports.every((r) => r.findings.length === 0) && reports.length === count ? 0 : 1

function printTable() {
  const percentile = (xs: ReadonlyArray<number>, p: number) => {
    if (xs.length === 0) return NaN
    const sorted = [...xs].sort((a, b) => a - b)
    return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!
  }
  const faultsByKind = FAULT_KINDS.map((k) => {
    const n = reports.reduce((sum, r) => sum + r.faults.filter((f) => f.fault.kind === k).length, 0)
    return `${k} ${n}`
  }).join(", ")
  const outcomes = new Map<string, number>()
  for (const r of reports) for (const o of r.ops) outcomes.set(`${o.op.kind} ${o.outcome}`, (outcomes.get(`${o.op.kind} ${o.outcome}`) ?? 0) + 1)
  const byOutcome = new Map<string, number>()
  for (const r of reports) for (const o of r.ops) byOutcome.set(o.outcome ?? "?", (byOutcome.get(o.outcome ?? "?") ?? 0) + 1)
  const converged = reports.flatMap((r) => (r.convergenceMs === undefined ? [] : [r.convergenceMs]))
  const sum = (f: (r: ScenarioReport) => number) => reports.reduce((s, r) => s + f(r), 0)
  const rows: Array<[string, string]> = [
    ["seed", String(seed)],
    ["agent-master jitter", fleet.jitterMs === 0 ? "none" : `every chunk each way held 0-${fleet.jitterMs} ms (JitterRelay), heartbeat every ${fleet.heartbeatMs} ms`],
    ["scenarios run", `${reports.length} of ${count}`],
    ["faults injected", `${sum((r) => r.faults.length)} (${faultsByKind})`],
    ["fault errors", String(sum((r) => r.faults.filter((f) => f.error !== undefined).length))],
    ["operations", `${sum((r) => r.ops.length)}: ${[...byOutcome].map(([k, v]) => `${k} ${v}`).join(", ")}`],
    ["  by kind", [...outcomes].sort().map(([k, v]) => `${k} ${v}`).join(", ")],
    ["ops neither done nor undone", String(sum((r) => r.violations.length))],
    ["requests", String(sum((r) => r.requests.total))],
    ["failed requests", `${sum((r) => r.requests.failed)} (${sum((r) => r.requests.explained)} explained by a fault, ${sum((r) => r.requests.unexplained.length)} unexplained, ` +
      `of which ${sum((r) => r.requests.unexplained.filter((q) => q.detail.startsWith("curl exit 28")).length)} had no answer within 2 s)`],
    ["slow requests", `${sum((r) => r.requests.slow.length)} answered right after more than ${SLOW_MS} ms`],
    ["debris found", String(sum((r) => r.debris.length))],
    ["unhealthy verdicts", `${sum((r) => r.unhealthy.length)} (${sum((r) => r.falseUnhealthy.length)} false, ${sum((r) => r.falseUnhealthy.filter((u) => u.duringBackgroundLoss).length)} of them during 5% loss)`],
    ["healthy after last heal", (() => { const h = reports.flatMap((r) => (r.healthyAfterHealMs === undefined ? [] : [r.healthyAfterHealMs])); return h.length === 0 ? "never" : `p50 ${percentile(h, 50)} ms, max ${Math.max(...h)} ms (${reports.length - h.length} scenarios never)` })()],
    ["convergence (ps agrees)", converged.length === 0 ? "none" : `p50 ${percentile(converged, 50)} ms, max ${Math.max(...converged)} ms (${reports.length - converged.length} scenarios did not converge)`],
    ["  within 2 heartbeats", (() => {
      const slow = reports.filter((r) => r.convergenceMs !== undefined && r.convergenceMs > 2 * fleet.heartbeatMs)
      return `${converged.length - slow.length} of ${reports.length}${slow.length === 0 ? "" : `; slower: ${slow.map((r) => `${r.plan.index} (${r.convergenceMs} ms)`).join(", ")}`}`
    })()],
    ["scenarios with findings", `${reports.filter((r) => r.findings.length > 0).length}${reports.some((r) => r.findings.length > 0) ? ` (${reports.filter((r) => r.findings.length > 0).map((r) => r.plan.index).join(", ")})` : ""}`],
    ["wall time", `${Math.round((Date.now() - t0) / 1000)} s`]
  ]
  const width = Math.max(...rows.map(([k]) => k.length))
  console.log(`chaos: seed ${seed}, ${count} scenarios, master + w1, w2, e1 in network namespaces, real Podman, HAProxy, PowerDNS`)
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`)
  console.log(`logs of scenarios with findings or slower convergence: ${logsDir}`)
}
