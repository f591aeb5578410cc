/**
 * bench/footprint: how fast the CLI starts and how much memory the programs take, as they ship:
 * the release executable (`npm run release`, built here into a temporary directory), each figure
 * next to its floor (a bare `node -e 0`, or a bare idle node for the daemons) and the ratio,
 * against the targets of issue 15:
 *
 *   mcp --version       wall (median of N) and peak RSS       targets: wall <= 2x floor, RSS <= 64 MiB
 *   mcp ps              wall (median of N) against a one-node fleet started here   target <= 150 ms
 *   mcp-agent, master   idle RSS after deploying one small service                 targets <= 64 MiB each
 *
 * Two reference servers run beside the daemons, with the agent's unit environment, answer the
 * same number of requests and are read at the same moment (bench/reference/): a plain node:https
 * server, and the smallest server built like the daemons (one @effect/rpc RPC over HTTPS, bundled
 * the same way). They show how much of a daemon's RSS is Node serving HTTPS, how much the Effect
 * RPC stack, and how much the daemon's own work.
 *
 * Besides wall time, each CLI figure gives CPU time (user + system), steadier on a busy machine.
 * The daemons run with the environment their systemd units set (every `Environment=` line of
 * packaging/systemd/mcp-{agent,master}.service, e.g. NODE_OPTIONS), so the bench measures them as
 * installed. For comparison, `mcp ps` also runs from the repository's bin (dist/ through
 * scripts/launch.mjs, with its staleness check).
 *
 * The fleet: a Podman API service on a private storage, the release's master and agent, the
 * example service `hello`; everything is stopped by pid and removed at the end. Peak RSS is VmHWM from /proc/<pid>/status,
 * read by a preloaded exit hook (given through NODE_OPTIONS, which the executable honours); idle
 * RSS is VmRSS, split into anonymous and file-backed pages (the latter, mostly the executable's
 * own code, are shared by a master and an agent on one machine).
 *
 *   node --import tsx bench/footprint.ts [N=5]
 */
import { build as esbuild } from "esbuild"
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { request as httpsRequest } from "node:https"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as LocalFleet from "../test/support/LocalFleet.js"
import { startManagedProcess } from "../test/support/ManagedProcess.js"
import { makePrivateStorage, resetContainerState, startPodmanService } from "../test/support/Podman.js"
import { unitEnvironment } from "../test/support/Units.js"

const N = Number(process.argv[2] ?? 5)
const repo = fileURLToPath(new URL("..", import.meta.url))
const MiB = 1024 * 1024
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const IDLE_SETTLE_MS = 10_000

const work = mkdtempSync(join(tmpdir(), "mcp-footprint-"))
console.log("building the release (npm run release)...")
execFileSync(process.execPath, [join(repo, "scripts/release.mjs"), "--out", join(work, "release")], { stdio: ["ignore", "ignore", "inherit"] })
const build = JSON.parse(readFileSync(join(repo, "dist", "BUILD"), "utf8")) as { version: string; commit: string }
const release = join(work, "release", `mcp-${build.version}-linux-${process.arch}`)
const exe = (program: string) => join(release, program)

// Writes the process's peak RSS (VmHWM, in kB) to $MCP_FOOTPRINT_HWM when it exits.
const hook = join(work, "hwm.cjs")
writeFileSync(hook, `process.on("exit", () => { try { const m = /VmHWM:\\s+(\\d+)/.exec(require("fs").readFileSync("/proc/self/status", "utf8")); require("fs").writeFileSync(process.env.MCP_FOOTPRINT_HWM, m ? m[1] : "0") } catch {} })\n`)

interface Run {
  readonly wallMs: number
  readonly cpuMs: number
  readonly code: number | null
  readonly stderr: string
}

/** One run, timed; CPU time (user + system) of the child from /usr/bin/time's -f "%U %S". */
const run = (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = process.env): Run => {
  const times = join(work, "times")
  const t0 = performance.now()
  const r = spawnSync("/usr/bin/time", ["-o", times, "-f", "%U %S", command, ...args], { encoding: "utf8", env })
  const wallMs = performance.now() - t0
  const [user, sys] = readFileSync(times, "utf8").trim().split("\n").pop()!.split(" ").map(Number)
  return { wallMs, cpuMs: (user! + sys!) * 1000, code: r.status, stderr: r.stderr }
}

/** Median wall and CPU time of N runs (after one untimed, to warm the page cache) and the peak RSS of one more. */
const measure = (command: string, args: ReadonlyArray<string>) => {
  const first = run(command, args)
  if (first.code !== 0) throw new Error(`${command} ${args.join(" ")} exited ${first.code}: ${first.stderr}`)
  const runs = Array.from({ length: N }, () => run(command, args))
  if (runs.some((r) => r.code !== 0)) throw new Error(`${command} ${args.join(" ")} failed in a timed run`)
  const hwmFile = join(work, "hwm")
  rmSync(hwmFile, { force: true })
  run(command, args, { ...process.env, NODE_OPTIONS: `--require ${hook}`, MCP_FOOTPRINT_HWM: hwmFile })
  const peakKb = existsSync(hwmFile) ? Number(readFileSync(hwmFile, "utf8")) : NaN
  return { wallMs: median(runs.map((r) => r.wallMs)), cpuMs: median(runs.map((r) => r.cpuMs)), peakBytes: peakKb * 1024 }
}

/** One request to a reference server (bench/reference/), checked to answer 200. */
const ping = (port: number, ca: Buffer) =>
  new Promise<void>((resolve, reject) => {
    const request = httpsRequest({ host: "127.0.0.1", port, path: "/rpc", method: "POST", ca, servername: "localhost", checkServerIdentity: () => undefined, headers: { "content-type": "application/ndjson" } }, (response) => {
      response.resume()
      response.on("end", () => (response.statusCode === 200 ? resolve() : reject(new Error(`reference server answered ${response.statusCode}`))))
    })
    request.on("error", reject)
    request.end(`${JSON.stringify({ _tag: "Request", id: "1", tag: "Ping", payload: {}, headers: [] })}\n`)
  })

const statusOf = (pid: number, field: string): number => {
  const m = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, "utf8"))
  return m === null ? NaN : Number(m[1]) * 1024
}

if (!existsSync("/usr/bin/time")) throw new Error("bench/footprint needs /usr/bin/time: apt-get install time")

const rows: Array<[string, string, string, string, string]> = []
const ms = (x: number) => `${x.toFixed(0)} ms`
const mib = (x: number) => `${(x / MiB).toFixed(1)} MiB`
const row = (what: string, value: string, floor: string, ratio: number, target: string) => rows.push([what, value, floor, `${ratio.toFixed(2)}x`, target])

const floor = measure(process.execPath, ["-e", "0"])
const version = measure(exe("mcp"), ["--version"])
row("mcp --version wall", ms(version.wallMs), ms(floor.wallMs), version.wallMs / floor.wallMs, `<= 2x (${ms(2 * floor.wallMs)})`)
row("mcp --version CPU", ms(version.cpuMs), ms(floor.cpuMs), version.cpuMs / floor.cpuMs, "-")
row("mcp --version peak RSS", mib(version.peakBytes), mib(floor.peakBytes), version.peakBytes / floor.peakBytes, "<= 64 MiB")

// A private engine storage: the bench's containers never meet those of tests running meanwhile.
const storage = makePrivateStorage()
const cleanups: Array<() => Promise<unknown>> = [async () => {
  resetContainerState(storage)
  rmSync(dirname(storage.root), { recursive: true, force: true })
}]
const podman = await startPodmanService({ storage })
cleanups.push(() => podman.stop())
const daemon = async (program: "mcp-master" | "mcp-agent", config: string) => {
  const started = await startManagedProcess({
    name: program,
    command: exe(program),
    args: ["--config", config],
    env: { ...process.env, ...unitEnvironment(program) },
    ready: { awaiting: "a line matching /listening on/", output: /listening on/ },
    timeoutMs: 30_000
  })
  cleanups.push(() => started.stop())
  return started
}
try {
  // The floor for the daemons: a bare node that stays up, measured after the same settling time.
  const idleNode = await startManagedProcess({
    name: "idle node",
    command: process.execPath,
    args: ["-e", "console.log('ready'); setInterval(() => {}, 1000)"],
    ready: { awaiting: "ready", output: /ready/ },
    timeoutMs: 10_000
  })
  cleanups.push(() => idleNode.stop())

  const masterPort = await LocalFleet.freePort()
  const masters = [`127.0.0.1:${masterPort}`]
  const fleet = await LocalFleet.prepare(join(work, "fleet"), { masters })
  const master = await daemon("mcp-master", LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "2s" }))
  const agentConfig = LocalFleet.writeAgentConfig(fleet, { node: "local", port: await LocalFleet.freePort(), socket: podman.socketPath, masters })
  await LocalFleet.enrolNode(fleet, "local")
  const agent = await daemon("mcp-agent", agentConfig)
  const cli = (args: ReadonlyArray<string>) => spawnSync(exe("mcp"), [...args, "--config", fleet.cliConfig], { encoding: "utf8" })
  let healthy = false
  for (let i = 0; i < 60 && !healthy; i++) {
    const nodes = cli(["node", "list", "--json"])
    healthy = nodes.status === 0 && (JSON.parse(nodes.stdout) as Array<{ health: string }>).some((n) => n.health === "healthy")
    if (!healthy) await new Promise((r) => setTimeout(r, 500))
  }
  if (!healthy) throw new Error("the agent did not become healthy within 30 s")
  const deployed = cli(["deploy", "hello"])
  if (deployed.status !== 0) throw new Error(`mcp deploy hello failed: ${deployed.stderr}`)
  cleanups.push(async () => cli(["undeploy", "hello"]))

  // Timed against the fleet at rest, as an operator meets it: not while the deploy's aftermath
  // (first health probes, the agent's report to the master) still runs in both daemons.
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS))
  const ps = measure(exe("mcp"), ["ps", "--config", fleet.cliConfig])
  row("mcp ps wall (1-node fleet)", ms(ps.wallMs), ms(floor.wallMs), ps.wallMs / floor.wallMs, "<= 150 ms")
  row("mcp ps CPU", ms(ps.cpuMs), ms(floor.cpuMs), ps.cpuMs / floor.cpuMs, "-")
  row("mcp ps peak RSS", mib(ps.peakBytes), mib(floor.peakBytes), ps.peakBytes / floor.peakBytes, "-")
  const devPs = measure(process.execPath, [LocalFleet.bins.mcp, "ps", "--config", fleet.cliConfig])
  if (/older than the sources/.test(run(process.execPath, [LocalFleet.bins.mcp, "--version"]).stderr)) throw new Error("dist/ is older than the sources: the bin ran the sources; npm run build")
  row("  (repository bin: mcp ps wall)", ms(devPs.wallMs), ms(floor.wallMs), devPs.wallMs / floor.wallMs, "-")

  // The reference servers (see the header): started now, asked as many times as the master was,
  // then left idle as long as the daemons.
  await esbuild({
    entryPoints: [join(repo, "bench/reference/rpc-server.ts")],
    outfile: join(work, "rpc-server.mjs"),
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    minify: true,
    logLevel: "warning",
    banner: { js: `import { createRequire as __createRequire } from "node:module"; const require = __createRequire(import.meta.url);` }
  })
  const references: Array<readonly [string, number]> = []
  for (const [name, file] of [["plain node:https server", join(repo, "bench/reference/https-server.mjs")], ["one-RPC @effect/rpc server", join(work, "rpc-server.mjs")]] as const) {
    const port = await LocalFleet.freePort()
    const server = await startManagedProcess({
      name,
      command: process.execPath,
      args: [file],
      env: { ...process.env, ...unitEnvironment("mcp-agent"), PORT: String(port), CERT: join(fleet.caDir, "server.crt"), KEY: join(fleet.caDir, "server.key") },
      ready: { awaiting: "listening", output: /listening/ },
      timeoutMs: 20_000
    })
    cleanups.push(() => server.stop())
    const ca = readFileSync(join(fleet.caDir, "ca.crt"))
    for (let i = 0; i < N + 2; i++) await ping(port, ca)
    references.push([name, server.pid])
  }

  // Idle: after the deploy, with heartbeats running and nothing else asked of them.
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS))
  const idleFloor = statusOf(idleNode.pid, "VmRSS")
  for (const [name, pid] of [["mcp-agent", agent.pid], ["mcp-master", master.pid]] as const) {
    const rss = statusOf(pid, "VmRSS")
    row(`${name} idle RSS`, mib(rss), mib(idleFloor), rss / idleFloor, "<= 64 MiB")
    row(`  anonymous / file-backed`, `${mib(statusOf(pid, "RssAnon"))} / ${mib(statusOf(pid, "RssFile"))}`, `${mib(statusOf(idleNode.pid, "RssAnon"))} / ${mib(statusOf(idleNode.pid, "RssFile"))}`, statusOf(pid, "RssAnon") / statusOf(idleNode.pid, "RssAnon"), "-")
  }
  for (const [name, pid] of references) {
    const rss = statusOf(pid, "VmRSS")
    row(`  (reference: ${name} idle RSS)`, mib(rss), mib(idleFloor), rss / idleFloor, "-")
  }
} finally {
  for (const c of cleanups.reverse()) await c().catch((e) => console.error(`cleanup: ${e}`))
  rmSync(work, { recursive: true, force: true })
}

console.log(`footprint (N=${N}, release of ${build.version} commit ${build.commit}, node ${process.version}; floors: node -e 0, an idle node)`)
const header: [string, string, string, string, string] = ["", "value", "floor", "ratio", "target"]
const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
for (const r of [header, ...rows]) console.log("  " + r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("   "))
