/**
 * bench/footprint: how fast the CLI starts and how much memory the binaries take, from the
 * bundles (`npm run build`; built here first when dist/ has none), each figure next to its floor
 * (a bare `node -e 0`) and the ratio, against the targets of issue 15:
 *
 *   mcp --version       wall (median of N) and peak RSS       targets: wall <= 2x floor, RSS <= 64 MiB
 *   mcp ps              wall (median of N) against a one-node fleet started here   target <= 150 ms
 *   mcp-agent, master   idle RSS after deploying one small service                 targets <= 64 MiB each
 *
 * The fleet: a private Podman API service, a master and an agent from the repository's bins
 * (which run dist/), the example service `hello`; everything is stopped by pid at the end.
 * Peak RSS is VmHWM from /proc/<pid>/status, read by a preloaded exit hook; idle RSS is VmRSS.
 *
 *   node --import tsx bench/footprint.ts [N=5]
 */
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as LocalFleet from "../test/support/LocalFleet.js"
import { startPodmanService } from "../test/support/Podman.js"

const N = Number(process.argv[2] ?? 5)
const repo = fileURLToPath(new URL("..", import.meta.url))
const MiB = 1024 * 1024
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const IDLE_SETTLE_MS = 10_000

if (!existsSync(join(repo, "dist", "mcp.mjs")) || process.env["MCP_FROM_SOURCE"] === "1") {
  if (process.env["MCP_FROM_SOURCE"] === "1") throw new Error("bench/footprint measures the bundles: unset MCP_FROM_SOURCE")
  console.log("building the bundles (npm run build)...")
  execFileSync(process.execPath, [join(repo, "scripts/build.mjs")], { stdio: "inherit" })
}

const work = mkdtempSync(join(tmpdir(), "mcp-footprint-"))
// Writes the process's peak RSS (VmHWM, in kB) to $MCP_FOOTPRINT_HWM when it exits.
const hook = join(work, "hwm.cjs")
writeFileSync(hook, `process.on("exit", () => { try { const m = /VmHWM:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8")); require("fs").writeFileSync(process.env.MCP_FOOTPRINT_HWM, m ? m[1] : "0") } catch {} })\n`)

interface Run {
  readonly wallMs: number
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

const run = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Run => {
  const t0 = performance.now()
  const r = spawnSync(process.execPath, args, { encoding: "utf8", env })
  return { wallMs: performance.now() - t0, code: r.status, stdout: r.stdout, stderr: r.stderr }
}

/** Median wall time of N runs (after one untimed, to warm the page cache) and the peak RSS of one more. */
const measure = (args: ReadonlyArray<string>) => {
  const first = run(args)
  if (first.code !== 0) throw new Error(`node ${args.join(" ")} exited ${first.code}: ${first.stderr}`)
  const walls = Array.from({ length: N }, () => run(args).wallMs)
  const hwmFile = join(work, "hwm")
  rmSync(hwmFile, { force: true })
  run(["--require", hook, ...args], { ...process.env, MCP_FOOTPRINT_HWM: hwmFile })
  const peakKb = existsSync(hwmFile) ? Number(readFileSync(hwmFile, "utf8")) : NaN
  return { wallMs: median(walls), peakBytes: peakKb * 1024 }
}

const rssOf = (pid: number): number => {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return m === null ? NaN : Number(m[1]) * 1024
}

const rows: Array<[string, string, string, string, string]> = []
const ms = (x: number) => `${x.toFixed(0)} ms`
const mib = (x: number) => `${(x / MiB).toFixed(1)} MiB`
const row = (what: string, value: string, floor: string, ratio: number, target: string) => rows.push([what, value, floor, `${ratio.toFixed(2)}x`, target])

const floor = measure(["-e", "0"])
const version = measure([LocalFleet.bins.mcp, "--version"])
row("mcp --version wall", ms(version.wallMs), ms(floor.wallMs), version.wallMs / floor.wallMs, `<= 2x (${ms(2 * floor.wallMs)})`)
row("mcp --version peak RSS", mib(version.peakBytes), mib(floor.peakBytes), version.peakBytes / floor.peakBytes, "<= 64 MiB")

const podman = await startPodmanService()
const cleanups: Array<() => Promise<unknown>> = [() => podman.stop()]
try {
  const masterPort = await LocalFleet.freePort()
  const masters = [`127.0.0.1:${masterPort}`]
  const fleet = await LocalFleet.prepare(join(work, "fleet"), { masters })
  const master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "2s" }))
  cleanups.push(() => master.stop())
  const agentPort = await LocalFleet.freePort()
  const agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, LocalFleet.writeAgentConfig(fleet, { node: "local", port: agentPort, socket: podman.socketPath, masters }))
  cleanups.push(() => agent.stop())
  let healthy = false
  for (let i = 0; i < 60 && !healthy; i++) {
    const nodes = await LocalFleet.mcp(fleet, ["node", "list", "--json"])
    healthy = nodes.code === 0 && JSON.parse(nodes.stdout).some((n: { health: string }) => n.health === "healthy")
    if (!healthy) await new Promise((r) => setTimeout(r, 500))
  }
  if (!healthy) throw new Error("the agent did not become healthy within 30 s")
  const deployed = await LocalFleet.mcp(fleet, ["deploy", "hello"])
  if (deployed.code !== 0) throw new Error(`mcp deploy hello failed: ${deployed.stderr}`)
  cleanups.push(() => LocalFleet.mcp(fleet, ["undeploy", "hello"]))

  const ps = measure([LocalFleet.bins.mcp, "ps", "--config", fleet.cliConfig])
  row("mcp ps wall (1-node fleet)", ms(ps.wallMs), ms(floor.wallMs), ps.wallMs / floor.wallMs, "<= 150 ms")
  row("mcp ps peak RSS", mib(ps.peakBytes), mib(floor.peakBytes), ps.peakBytes / floor.peakBytes, "-")

  // Idle: after the deploy, with heartbeats running and nothing else asked of them.
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS))
  const agentRss = rssOf(agent.pid)
  const masterRss = rssOf(master.pid)
  row("mcp-agent idle RSS", mib(agentRss), mib(floor.peakBytes), agentRss / floor.peakBytes, "<= 64 MiB")
  row("mcp-master idle RSS", mib(masterRss), mib(floor.peakBytes), masterRss / floor.peakBytes, "<= 64 MiB")
} finally {
  for (const c of cleanups.reverse()) await c().catch((e) => console.error(`cleanup: ${e}`))
  rmSync(work, { recursive: true, force: true })
}

const build = JSON.parse(readFileSync(join(repo, "dist", "BUILD"), "utf8")) as { version: string; commit: string }
console.log(`footprint (N=${N}, bundles of ${build.version} commit ${build.commit}, node ${process.version}; floor: node -e 0)`)
const header: [string, string, string, string, string] = ["", "value", "floor", "ratio", "target"]
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
for (const r of [header, ...rows]) console.log("  " + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("   "))
