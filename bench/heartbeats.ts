/**
 * bench/heartbeats: how many agents one master can carry, and how fast it notices a silent one.
 *
 * 0. Floor. Two reference servers in their own processes, asked by the same load generator as
 *    the master, closed loop at the same concurrency: a plain node:https keep-alive server that
 *    parses the request's JSON and answers an Exit (bench/reference/https-server.mjs: the floor,
 *    what Node itself costs), and a one-group @effect/rpc server whose Heartbeat only decodes its
 *    payload (bench/reference/rpc-server.ts: what the RPC stack costs before any of our code).
 *    Their CPU per request is printed, and every master figure is set beside the floor's.
 * 1. Scale. For N simulated agents against ONE real `mcp-master` process spawned with LocalFleet
 *    (fresh data dir and process per N, heartbeat interval 10s, miss_threshold 100 so nobody is
 *    probed). Each simulated agent has its own system token named after its node, as a real one
 *    does (the master lets a node speak only for itself), and the requests are the ndjson frames
 *    an agent's RPC client sends, posted over shared keep-alive connections (bench/support/RawRpc.ts);
 *    each heartbeat reports 3 services running on its node (so the master holds 3N placements):
 *      - register all N (bounded concurrency, bounded time);
 *      - paced: every agent heartbeats every 10 s (N/10 heartbeats/s offered, open loop) for a
 *        window; at most 256 in flight, a heartbeat that falls due while all are busy is skipped
 *        and counted (so an overloaded master shows as skips, not as a backlog in this process);
 *      - 2000/s: the same, offered at 2,000 heartbeats/s whatever N, after a warm-up of
 *        WARM_UP_CALLS heartbeats (closed loop, not counted), as the floor gets;
 *      - saturate: closed loop with bounded concurrency for a fixed duration ("as fast as it
 *        absorbs").
 *    Prints heartbeats/s absorbed, p50/p99 client-observed round trip, the master's own event-loop
 *    delay over the phase (p99 as a bucket bound, and max: bench/support/loop-lateness.mjs, preloaded
 *    into every master, reports it every 100 ms on stderr) and the load generator's, measured the
 *    same way in this process (its pauses are in every round trip it times), master CPU (utime+stime
 *    delta from /proc/<pid>/stat over the window, as % of one core and per call) and master RSS.
 *    Then a Prometheus scrape of the master: GET /metrics timed, its series, and the longest the
 *    master's event loop was held meanwhile (what every heartbeat waits during a scrape).
 * 2. Detection, with the fixed miss threshold and with the phi-accrual detector. Master with
 *    interval 1s, miss_threshold 3, probe_timeout 1s; K=20 agents whose address is a closed port
 *    on 127.0.0.1 heartbeat at the interval the master gives (1-1.1 s), then go silent one by
 *    one; NodesList is polled every 100 ms until each shows "unhealthy".
 * 3. Jitter and loss, with each detector: K=20 agents that answer the master's probes (an HTTPS
 *    server per node with a certificate naming it) heartbeat at the interval the master gives,
 *    each heartbeat 0-200 ms late and 5% of them lost (a seeded draw, the same for both
 *    detectors), for 60 s; every suspect and unhealthy verdict is counted (an unhealthy one is
 *    false: every node is up).
 *
 * Figures only, no assertions. The load generator runs on the same machine as the master, so
 * both compete for the same cores; its own CPU is printed too.
 *
 * 4. Fan-out: `mcp ps` (a CLI process, timed with `mcp --version` as its floor; once the
 *    repository's bin, once the release's executable from scripts/release.mjs) and the Ps RPC
 *    over 100 simulated agents answering 30 services each (MCP_BENCH_FANOUT_NODES and
 *    MCP_BENCH_FANOUT_SERVICES change both: with 0 services, what is left is the cost of the
 *    calls themselves, which bench/rpc-client.ts measures in process against a floor).
 *
 *   node --import tsx bench/heartbeats.ts [--quick] [--sizes=100,1000] [--no-detect] [--no-fanout] [--unmarked] [--rtt-timeline] [--profile=<dir>] [--cli-profile=<dir>] [--heap-snapshot=<dir>]
 *
 * Each server, the floor and every master, is warmed up with WARM_UP_CALLS heartbeats (closed
 * loop, not counted) before its fixed-rate phase. --rtt-timeline prints each phase's round trips
 * by half second of their start.
 *
 * --unmarked sends heartbeats without the x-mcp-rpc header, so the master answers them through
 * RpcServer, as it answered every heartbeat before its direct route (DirectCall.ts).
 *
 * MCP_BENCH_MASTER_NODE_FLAGS="<flags>" puts node flags on each master's command line (V8's heap
 * flags, --trace-gc, an --import), to measure what a flag changes against the same load. They come
 * before the unit's Node flags (NODE_OPTIONS and MCP_NODE_FLAGS, test/support/Units.ts), which win
 * where both set one: to try another young generation size, change packaging/systemd/mcp-master.service.
 * MCP_BENCH_MASTER_LOG=<prefix> appends each master's output to <prefix>-<label>.log (what
 * --trace-gc prints, for instance); otherwise only its last lines are kept.
 *
 * --profile runs each master as built (dist/, what users run) with --cpu-prof, writing a
 * .cpuprofile per master into <dir> (open it in Chrome's DevTools or speedscope). The bundles keep
 * the sources' function names; for frames whose lines can be read too, build first with
 * `node scripts/build.mjs --readable` (and again without it after).
 *
 * --cli-profile writes a .cpuprofile of each CLI process of the fan-out part (`mcp ps` and its
 * floor, through the repository's bin and the release's launcher) into <dir>, named by pid, through
 * bench/support/cpu-profile.mjs (Node 20 refuses --cpu-prof in NODE_OPTIONS).
 *
 * --heap-snapshot has each master of the scale part write a heap snapshot into <dir> once its
 * phases are over (the snapshot stops the master while it is written). What the master holds
 * per node is the difference between two sizes: bench/heap-summary.ts <small> <large>.
 *
 * A progress line goes to stderr every 5 s. Each master is killed when this process exits, and
 * by a small watchdog if this process dies without running exit handlers.
 */
import { Names } from "@mcp/domain"
import { MasterRpcs, Pki, TokenFile, Transport } from "@mcp/rpc"
import { PROTOCOL_HEADER, PROTOCOL_VERSION } from "@mcp/rpc/Protocol"
import { tokenDigest } from "@mcp/rpc/Authenticator"
import { NodeFileSystem } from "@effect/platform-node"
import { DateTime, Effect, Either, Exit, Redacted, Scope } from "effect"
import { execSync, spawn } from "node:child_process"
import { appendFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs"
import * as https from "node:https"
import type { AddressInfo, Socket } from "node:net"
import { cpus, tmpdir } from "node:os"
import { join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { inspect } from "node:util"
import { bins, type Daemon, type Fleet, freePort, mcp, prepare, spawnDaemon, writeMasterConfig } from "../test/support/LocalFleet.js"
import { startManagedProcess } from "../test/support/ManagedProcess.js"
import { reportLoopLateness } from "./support/loop-lateness-core.mjs"
import { makePoster, type Outcome } from "./support/RawRpc.js"

const repo = fileURLToPath(new URL("..", import.meta.url))
const QUICK = process.argv.includes("--quick")
const sizesArg = process.argv.find((a) => a.startsWith("--sizes="))
const SIZES = sizesArg !== undefined
  ? sizesArg.slice("--sizes=".length).split(",").map(Number)
  : QUICK ? [100, 1_000] : [100, 1_000, 10_000]
const SKIP_DETECT = process.argv.includes("--no-detect")
/** Each phase's round trips by half second of their start, to tell a phase's warm-up from its steady state. */
const RTT_TIMELINE = process.argv.includes("--rtt-timeline")
const SKIP_FANOUT = process.argv.includes("--no-fanout")
/**
 * Heartbeats sent without the x-mcp-rpc header, as agents before the direct route sent them: the
 * master answers them through RpcServer (what the master cost before DirectCall.ts).
 */
const UNMARKED = process.argv.includes("--unmarked")
/** Only the fan-out part (4), for working on it. */
const ONLY_FANOUT = process.argv.includes("--only-fanout")
const profileArg = process.argv.find((a) => a.startsWith("--profile="))
const PROFILE_DIR = profileArg === undefined ? undefined : resolve(profileArg.slice("--profile=".length))
const MASTER_LOG = process.env["MCP_BENCH_MASTER_LOG"]
const heapArg = process.argv.find((a) => a.startsWith("--heap-snapshot="))
const HEAP_DIR = heapArg === undefined ? undefined : resolve(heapArg.slice("--heap-snapshot=".length))
const PACED_WINDOW_MS = QUICK ? 10_000 : 20_000
const FIXED_RATE = 2_000
/**
 * Calls made closed loop and not counted before each server's fixed-rate phase, so that every
 * server is measured warm (its code optimized by V8): the same number for the floor and a master.
 */
const WARM_UP_CALLS = 2_000
const SATURATE_MS = QUICK ? 5_000 : 10_000
/**
 * % of one core used outside the bench and the master, or stolen by the hypervisor, over a phase
 * from which its figures are flagged as disturbed. A quiet run here shows 0-6%; runs with 20-57%
 * showed up to 1.5x the CPU per registration of a quiet one, and the floor's p99 at 2,000/s went
 * from 3 ms to 40-120 ms.
 */
const DISTURBED_PCT = 10
const SATURATE_CONCURRENCY = 32
const REGISTER_CONCURRENCY = 32
const REGISTER_BUDGET_MS = QUICK ? 60_000 : 120_000
const AGENT_INTERVAL_MS = 10_000
const MAX_IN_FLIGHT = 256
const DRAIN_BUDGET_MS = 15_000
/** Keep-alive connections the load generator opens to one server. */
const SOCKETS = 64
const DETECT_K = 20

// ---------------------------------------------------------------------------------------------
// Measurement helpers.

const CLK_TCK = (() => {
  try {
    return Number(execSync("getconf CLK_TCK", { encoding: "utf8" }).trim()) || 100
  } catch {
    return 100
  }
})()

/** utime + stime of a process, in clock ticks. */
const cpuTicks = (pid: number): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ") // fields[0] is field 3 (state)
  return Number(fields[11]) + Number(fields[12]) // fields 14 (utime) and 15 (stime)
}

const memory = (pid: number): { rssMiB: number; hwmMiB: number } => {
  const status = readFileSync(`/proc/${pid}/status`, "utf8")
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? "NaN")
  return { rssMiB: kb("VmRSS") / 1024, hwmMiB: kb("VmHWM") / 1024 }
}

/**
 * The whole machine's CPU ticks (all cores, from /proc/stat): busy (all but idle and iowait) and,
 * of those, stolen (the hypervisor ran another guest while this one had work: on a shared VM,
 * the main source of noise here).
 */
const machineTicks = (): { busy: number; total: number; steal: number } => {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - f[3]! - f[4]!, total, steal: f[7] ?? 0 }
}

interface CpuUse {
  /** % of one core used by the master process over the window. */
  readonly masterPct: number
  /** % of one core used by this load generator. */
  readonly benchPct: number
  /** % of one core used by everything else on the machine (other processes, kernel). */
  readonly othersPct: number
  /**
   * % of one core stolen by the hypervisor for other guests. Not a part of `othersPct` alone: the
   * guest's accounting charges stolen ticks partly to the process that was running (the master's
   * CPU figures among them).
   */
  readonly stealPct: number
  /** Master CPU time in the window, ms. */
  readonly masterMs: number
  readonly ms: number
}
const cpuWindow = (pid: number): { readonly end: () => CpuUse } => {
  const t0 = performance.now()
  const m0 = cpuTicks(pid)
  const b0 = process.cpuUsage()
  const s0 = machineTicks()
  return {
    end: () => {
      const ms = performance.now() - t0
      const masterMs = ((cpuTicks(pid) - m0) / CLK_TCK) * 1000
      const b = process.cpuUsage(b0)
      const benchMs = (b.user + b.system) / 1000
      const s1 = machineTicks()
      const machineMs = ((s1.busy - s0.busy) / CLK_TCK) * 1000
      return {
        masterPct: (masterMs / ms) * 100,
        benchPct: (benchMs / ms) * 100,
        othersPct: Math.max(0, ((machineMs - masterMs - benchMs) / ms) * 100),
        stealPct: (((s1.steal - s0.steal) / CLK_TCK) * 1000 / ms) * 100,
        masterMs,
        ms
      }
    }
  }
}

/** Nearest-rank percentile of a sorted array. */
const pct = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted.length === 0 ? NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
const sortNum = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "-")
const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : "-")
/** A p99 read from the master's delay buckets (bench/support/loop-lateness.mjs): the bound of its bucket. */
const bucket = (bound: number) => (Number.isNaN(bound) ? "-" : bound === Infinity ? "> 500" : `<= ${bound}`)
const pad = (s: string, n: number) => s.padStart(n)


const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

// ---------------------------------------------------------------------------------------------
// Servers: the master per experiment, and the reference servers.

interface Master {
  readonly fleet: Fleet
  readonly daemon: Daemon
  readonly port: number
  readonly ca: string
  /** Each simulated node's own system token, by node name. */
  readonly tokens: ReadonlyMap<string, string>
  /** The last 8 KiB the master printed (its log), for when something goes wrong. */
  readonly tail: () => string
  readonly logLines: () => number
  /** The master's own event-loop delay between two monotonic times (µs, monoNow), from bench/support/loop-lateness.mjs. */
  readonly loopDelay: (fromMono: number, toMono: number) => LoopDelay
  readonly close: () => Promise<void>
}

/** CLOCK_MONOTONIC in µs, the clock of the master's MCP_BENCH_LOOP lines. */
const monoNow = () => Number(process.hrtime.bigint() / 1000n)

/**
 * One MCP_BENCH_LOOP line: the time since the line before (`since`, normally 100 ms; longer when
 * a stall held the reporter back) up to `mono`, its largest delay, and its ticks by bucket bound (ms).
 */
interface LoopSample {
  readonly since: number
  readonly mono: number
  readonly max: number
  readonly buckets: ReadonlyArray<readonly [number, number]>
}

const parseLoopLine = (line: string, previous: LoopSample | undefined): LoopSample | undefined => {
  const [tag, mono, max, ...buckets] = line.split(" ")
  if (tag !== "MCP_BENCH_LOOP" || mono === undefined || max === undefined) return undefined
  return {
    since: previous?.mono ?? Number(mono) - 100_000,
    mono: Number(mono),
    max: Number(max),
    buckets: buckets.filter((b) => b !== "").map((b) => {
      const [bound, ticks] = b.split(":")
      return [Number(bound), Number(ticks)] as const
    })
  }
}

/**
 * The samples whose time overlaps [from, to] (so up to 100 ms on either side, and all of a stall
 * that began inside), summed: p99 as the bound of its bucket (Infinity: over 500 ms), and the max.
 * NaN for both when the master reported nothing then.
 */
const loopDelayOver = (samples: ReadonlyArray<LoopSample>, fromMono: number, toMono: number): LoopDelay => {
  const inWindow = samples.filter((x) => x.mono > fromMono && x.since < toMono)
  if (inWindow.length === 0) return { p99: NaN, max: NaN }
  const ticks = new Map<number, number>()
  for (const x of inWindow) for (const [bound, n] of x.buckets) ticks.set(bound, (ticks.get(bound) ?? 0) + n)
  const bounds = [...ticks.keys()].sort((a, b) => a - b)
  const total = bounds.reduce((n, b) => n + ticks.get(b)!, 0)
  let seen = 0
  const p99 = bounds.find((b) => (seen += ticks.get(b)!) >= 0.99 * total) ?? NaN
  return { p99, max: Math.max(...inWindow.map((x) => x.max)) }
}

/**
 * This process's own event-loop delay, measured as each master's is (loop-lateness-core.mjs): the
 * load generator's pauses (its garbage collection, a core taken by another process), which every
 * round trip it times includes. A slow call that is neither the master's nor this is the machine's.
 */
const generatorSamples: Array<LoopSample> = []
reportLoopLateness((line) => {
  const sample = parseLoopLine(line, generatorSamples.at(-1))
  if (sample !== undefined) generatorSamples.push(sample)
})
/** The load generator's own event-loop delay over a phase (read once its last 100 ms are reported). */
const generatorLoop = (p: Phase): LoopDelay => loopDelayOver(generatorSamples, p.fromMono, p.toMono)

/**
 * A system token for each node, added to the fleet's token file in one write (createToken
 * rewrites the whole file for each token, which for 10,000 nodes would take minutes).
 */
const enrolAll = (fleet: Fleet, names: ReadonlyArray<string>): Promise<Map<string, string>> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const tokens = new Map<string, string>()
      const file = yield* TokenFile.loadTokenFile(fleet.tokenFile)
      const created = DateTime.unsafeMake(Date.now())
      const entries = names.map((name): TokenFile.TokenEntry => {
        const token = TokenFile.generateToken()
        tokens.set(name, Redacted.value(token))
        return { name, kind: "system", role: "guest", sha256: tokenDigest(token), created }
      })
      yield* TokenFile.writeTokenFile(fleet.tokenFile, { tokens: [...file.tokens, ...entries] })
      return tokens
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )

const startMaster = async (
  label: string,
  heartbeat: { interval: string; missThreshold: number; probeTimeout: string; extra?: string },
  names: ReadonlyArray<string>
): Promise<Master> => {
  const dir = mkdtempSync(join(tmpdir(), `mcp-bench-hb-${label}-`))
  const port = await freePort()
  // The CLI config names this master, for `mcp ps` in the fan-out part.
  const fleet = await prepare(dir, { masters: [`127.0.0.1:${port}`] })
  const tokens = await enrolAll(fleet, names)
  const config = writeMasterConfig(fleet, { port, ...heartbeat })
  // --cpu-prof (a flag NODE_OPTIONS may not carry) goes on the command line: a shell puts it after
  // node's path; the profile is written when the master exits. MCP_BENCH_MASTER_NODE_FLAGS go the
  // same way.
  const saved = process.env["MCP_FROM_SOURCE"]
  const flags: Array<string> = [
    `--import=${fileURLToPath(new URL("./support/loop-lateness.mjs", import.meta.url))}`,
    ...(process.env["MCP_BENCH_MASTER_NODE_FLAGS"] ?? "").split(" ").filter((f) => f !== "")
  ]
  if (PROFILE_DIR !== undefined) {
    mkdirSync(PROFILE_DIR, { recursive: true })
    flags.push("--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}`)
  }
  if (HEAP_DIR !== undefined) {
    mkdirSync(HEAP_DIR, { recursive: true })
    // The sources: the bundle's minified names would hide what the objects are.
    process.env["MCP_FROM_SOURCE"] = "1"
    flags.push("--heapsnapshot-signal=SIGUSR2", `--diagnostic-dir=${HEAP_DIR}`)
  }
  // Each flag quoted for the shell: the preload's path is the checkout's, which may hold spaces.
  const quoted = flags.map((f) => `'${f.replaceAll("'", `'\\''`)}'`)
  const prefix: ReadonlyArray<string> = ["sh", "-c", `exec "$0" ${quoted.join(" ")} "$@"`]
  const daemon = await spawnDaemon(bins.master, config, /listening on/, 120_000, prefix).finally(() => {
    if (saved === undefined) delete process.env["MCP_FROM_SOURCE"]
    else process.env["MCP_FROM_SOURCE"] = saved
  })
  // If this process dies, do not leave the master behind: on a normal exit the handler kills it;
  // a crash that skips "exit" handlers (out of memory) is caught by a watchdog that polls this pid.
  const orphanGuard = () => daemon.child.kill("SIGKILL")
  process.once("exit", orphanGuard)
  const watchdog = spawn("sh", ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 1; done; kill -9 ${daemon.pid} 2>/dev/null`], {
    detached: true,
    stdio: "ignore"
  })
  watchdog.unref()
  // spawnDaemon keeps the whole output in one string and re-tests it on every chunk; with tens of
  // thousands of log lines that would cost the load generator real CPU. Keep only a tail.
  let tail = daemon.output.slice(-8192)
  let lines = 0
  const loopSamples: Array<LoopSample> = []
  let partial = ""
  daemon.child.stdout!.removeAllListeners("data")
  daemon.child.stdout!.on("data", (d: Buffer) => {
    const s = d.toString()
    if (MASTER_LOG !== undefined) appendFileSync(`${MASTER_LOG}-${label}.log`, s)
    for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 10) lines++
    tail = (tail + s).slice(-8192)
  })
  // stderr also carries the MCP_BENCH_LOOP lines, kept apart from the master's own output.
  daemon.child.stderr!.removeAllListeners("data")
  daemon.child.stderr!.on("data", (d: Buffer) => {
    const all = (partial + d.toString()).split("\n")
    partial = all.pop()!
    const own = all.filter((line) => {
      const sample = parseLoopLine(line, loopSamples[loopSamples.length - 1])
      if (sample !== undefined) loopSamples.push(sample)
      return sample === undefined
    })
    if (own.length === 0) return
    const s = own.join("\n") + "\n"
    if (MASTER_LOG !== undefined) appendFileSync(`${MASTER_LOG}-${label}.log`, s)
    lines += own.length
    tail = (tail + s).slice(-8192)
  })
  return {
    fleet,
    daemon,
    port,
    ca: readFileSync(join(fleet.caDir, "ca.crt"), "utf8"),
    tokens,
    tail: () => tail,
    logLines: () => lines,
    loopDelay: (fromMono, toMono) => loopDelayOver(loopSamples, fromMono, toMono),
    close: async () => {
      process.removeListener("exit", orphanGuard)
      watchdog.kill("SIGKILL")
      await daemon.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

const resources = {
  cpuCores: 4,
  load1: 0.25,
  memoryTotalBytes: 8 * 1024 ** 3,
  memoryFreeBytes: 6 * 1024 ** 3,
  diskTotalBytes: 100 * 1024 ** 3,
  diskFreeBytes: 80 * 1024 ** 3,
  containers: 3
}

/**
 * What each simulated node reports running: SERVICES_PER_NODE services of its own, as a real
 * agent's heartbeat does. The master learns them as placements from the first heartbeat (it
 * lost nothing: it never knew), so every later heartbeat checks services that are all placed.
 */
const SERVICES_PER_NODE = 3
const servicesOf = (node: string) =>
  Array.from({ length: SERVICES_PER_NODE }, (_, k) => ({ service: `${node}-s${k}`, running: 1, expected: 1 }))

/** The operator's client of the master's /master RPCs, open until `close`. */
const operatorClient = async (master: Master) => {
  const scope = Effect.runSync(Scope.make())
  const cli = await Effect.runPromise(
    Transport.makeClient(MasterRpcs, { url: `https://127.0.0.1:${master.port}/master`, ca: master.ca, token: Redacted.make(master.fleet.operatorToken) }).pipe(Scope.extend(scope))
  )
  return { cli, close: () => Effect.runPromise(Scope.close(scope, Exit.void)) }
}

const nodeName = (prefix: string, i: number) => Names.NodeName.make(`${prefix}-${String(i).padStart(5, "0")}`)

// ---------------------------------------------------------------------------------------------
// Load phases, each measured against one server process.

interface Phase {
  readonly attempted: number
  readonly ok: number
  readonly failed: number
  readonly unknown: number
  readonly ms: number
  readonly rate: number
  readonly p50: number
  readonly p99: number
  readonly max: number
  readonly serverCpu: number
  readonly benchCpu: number
  readonly othersCpu: number
  readonly stealCpu: number
  /** Server CPU time per answered call, ms. */
  readonly serverMsPerOp: number
  /** The phase's window on CLOCK_MONOTONIC (µs, monoNow), for the event-loop delays over it. */
  readonly fromMono: number
  readonly toMono: number
  readonly note: string
  readonly firstError: string | undefined
}

/** What is running now, for the progress line printed to stderr every 5 s. */
let current: { readonly label: string; readonly rec: Recorder } | undefined

const progress = (pid: number) => {
  const t0 = performance.now()
  let window = cpuWindow(pid)
  const timer = setInterval(() => {
    try {
      const cpu = window.end()
      window = cpuWindow(pid)
      const c = current
      process.stderr.write(
        `    .. ${f0((performance.now() - t0) / 1000)} s ${c === undefined ? "" : `${c.label}: ${c.rec.ok} ok ${c.rec.failed} failed`}` +
          `  CPU server ${f0(cpu.masterPct)}% bench ${f0(cpu.benchPct)}% others ${f0(cpu.othersPct)}% (steal ${f0(cpu.stealPct)}%)` +
          `  server RSS ${f0(memory(pid).rssMiB)} MiB  bench heap ${f0(process.memoryUsage().heapUsed / 2 ** 20)} MiB\n`
      )
    } catch {
      // the server is gone; the main flow reports it
    }
  }, 5000)
  return () => clearInterval(timer)
}

class Recorder {
  /** When the phase began (a recorder is made as its phase begins), CLOCK_MONOTONIC µs. */
  readonly fromMono = monoNow()
  readonly latencies: Array<number> = []
  readonly starts: Array<number> = []
  ok = 0
  failed = 0
  unknown = 0
  firstError: string | undefined = undefined
  lastDone = 0
  record(ms: number, outcome: Outcome) {
    this.lastDone = performance.now()
    if (!outcome.ok) {
      this.failed++
      this.firstError ??= outcome.error
      return
    }
    this.latencies.push(ms)
    this.starts.push(this.lastDone - ms)
    const v = outcome.value
    if (typeof v === "object" && v !== null && "known" in v && v.known === false) this.unknown++
    else this.ok++
  }
  phase(attempted: number, ms: number, cpu: CpuUse, note: string): Phase {
    const s = sortNum(this.latencies)
    if (RTT_TIMELINE) {
      const t0 = Math.min(...this.starts)
      const buckets = new Map<number, Array<number>>()
      this.latencies.forEach((l, i) => { const b = Math.floor((this.starts[i]! - t0) / 500); const a = buckets.get(b) ?? []; a.push(l); buckets.set(b, a) })
      console.log(`            by half second of start (calls/p99/max ms): ` + [...buckets].sort((a, b) => a[0] - b[0]).map(([b, a]) => { const x = sortNum(a); return `${b / 2}s:${x.length}/p99 ${pct(x, 0.99).toFixed(0)}/max ${x[x.length - 1]!.toFixed(0)}` }).join("  "))
    }
    return {
      attempted,
      ok: this.ok,
      failed: this.failed,
      unknown: this.unknown,
      ms,
      rate: (this.ok / ms) * 1000,
      p50: pct(s, 0.5),
      p99: pct(s, 0.99),
      max: s.length === 0 ? NaN : s[s.length - 1]!,
      serverCpu: cpu.masterPct,
      benchCpu: cpu.benchPct,
      othersCpu: cpu.othersPct,
      stealCpu: cpu.stealPct,
      serverMsPerOp: cpu.masterMs / Math.max(1, this.ok + this.unknown),
      fromMono: this.fromMono,
      toMono: monoNow(),
      note,
      firstError: this.firstError
    }
  }
}

/** One call, timed into the recorder. */
const timed = (rec: Recorder, call: () => Promise<Outcome>): Promise<void> => {
  const t = performance.now()
  return call().then((o) => rec.record(performance.now() - t, o))
}

/** Runs `f` over 0..count-1 with at most `concurrency` at once; stops starting new ones after `deadline`. */
const forEachBounded = async (count: number, concurrency: number, deadline: number, f: (i: number) => Promise<void>): Promise<number> => {
  let next = 0
  const worker = async () => {
    while (next < count && performance.now() < deadline) await f(next++)
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return next
}

/**
 * Open loop: call i falls due at t0 + i/rate; at most MAX_IN_FLIGHT outstanding, and one that falls
 * due while all are busy is skipped and counted (a backlog would only measure this process's queue).
 */
const paced = async (label: string, pid: number, rate: number, windowMs: number, call: (i: number) => Promise<Outcome>) => {
  const rec = new Recorder()
  current = { label, rec }
  const total = Math.max(1, Math.floor((rate * windowMs) / 1000))
  const inFlight = new Set<Promise<void>>()
  const lags: Array<number> = []
  let skipped = 0
  const cpu = cpuWindow(pid)
  const t0 = performance.now()
  let j = 0
  while (j < total) {
    const now = performance.now()
    while (j < total && t0 + (j * 1000) / rate <= now) {
      const scheduled = t0 + (j * 1000) / rate
      const i = j++
      if (inFlight.size >= MAX_IN_FLIGHT) {
        skipped++
        continue
      }
      lags.push(now - scheduled)
      const p: Promise<void> = timed(rec, () => call(i)).finally(() => inFlight.delete(p))
      inFlight.add(p)
    }
    await sleep(1)
  }
  const scheduleEnd = performance.now()
  const drained = await Promise.race([Promise.all(inFlight).then(() => true), sleep(DRAIN_BUDGET_MS).then(() => false)])
  const notes: Array<string> = []
  if (skipped > 0) notes.push(`${skipped} of ${total} due calls skipped: ${MAX_IN_FLIGHT} already in flight`)
  if (!drained) notes.push(`${inFlight.size} still in flight ${DRAIN_BUDGET_MS / 1000} s after the schedule ended; not counted`)
  const end = Math.max(rec.lastDone, scheduleEnd)
  return { ...rec.phase(total, end - t0, cpu.end(), notes.join("; ")), offered: rate, lagP99: pct(sortNum(lags), 0.99) }
}

/** Closed loop: SATURATE_CONCURRENCY callers, each calling again as soon as it is answered. */
const saturate = async (label: string, pid: number, call: (i: number) => Promise<Outcome>) => {
  const rec = new Recorder()
  current = { label, rec }
  const cpu = cpuWindow(pid)
  const t0 = performance.now()
  const attempted = await forEachBounded(Number.MAX_SAFE_INTEGER, SATURATE_CONCURRENCY, t0 + SATURATE_MS, (i) => timed(rec, () => call(i)))
  return rec.phase(attempted, performance.now() - t0, cpu.end(), `${SATURATE_CONCURRENCY} in flight`)
}

type PacedPhase = Phase & { readonly offered: number; readonly lagP99: number }

const printPhase = (label: string, p: Phase, extra = "") => {
  const gen = generatorLoop(p)
  console.log(
    `  ${label.padEnd(9)} ${pad(String(p.ok), 6)} ok ${p.failed > 0 ? `${p.failed} failed ` : ""}${p.unknown > 0 ? `${p.unknown} unknown ` : ""}in ${f1(p.ms / 1000)} s` +
      ` -> ${f0(p.rate)}/s   rtt p50 ${f1(p.p50)} ms  p99 ${f1(p.p99)} ms  max ${f1(p.max)} ms` +
      `   server CPU ${f0(p.serverCpu)}% (${p.serverMsPerOp.toFixed(3)} ms/call)  bench CPU ${f0(p.benchCpu)}%  others ${f0(p.othersCpu)}% (steal ${f0(p.stealCpu)}%)${extra}` +
      `   generator loop delay p99 ${bucket(gen.p99)} ms, max ${f1(gen.max)} ms${p.note === "" ? "" : `   [${p.note}]`}`
  )
  if (p.firstError !== undefined) console.log(`            first error: ${p.firstError}`)
}

// ---------------------------------------------------------------------------------------------
// 0. The floor: reference servers asked by the same load generator.

interface ReferenceResult {
  readonly name: string
  readonly fixed: PacedPhase
  readonly saturate: Phase
}

const reference = async (name: string, file: string, fleet: Fleet, path: string): Promise<ReferenceResult> => {
  const port = await freePort()
  const server = await startManagedProcess({
    name,
    command: process.execPath,
    args: [...(file.endsWith(".ts") ? ["--import", "tsx"] : []), file],
    env: { ...process.env, PORT: String(port), CERT: join(fleet.caDir, "server.crt"), KEY: join(fleet.caDir, "server.key") },
    ready: { awaiting: "listening", output: /listening/ },
    timeoutMs: 60_000
  })
  const poster = makePoster({ port, path, ca: readFileSync(join(fleet.caDir, "ca.crt")) }, SOCKETS)
  const stopProgress = progress(server.pid)
  try {
    const payload = { node: "ref-00000", resources, services: servicesOf("ref-00000") }
    const call = () => poster.call("Heartbeat", payload, "reference")
    await forEachBounded(WARM_UP_CALLS, SATURATE_CONCURRENCY, Infinity, () => call().then(() => undefined))
    const fixed = await paced(`${name} ${FIXED_RATE}/s`, server.pid, FIXED_RATE, PACED_WINDOW_MS, call)
    const sat = await saturate(`${name} saturate`, server.pid, call)
    // This process's loop report for the last 100 ms of it (generatorLoop).
    await sleep(250)
    return { name, fixed, saturate: sat }
  } finally {
    stopProgress()
    poster.close()
    await server.stop()
  }
}

// ---------------------------------------------------------------------------------------------
// 1. Scale.

interface ScaleResult {
  readonly n: number
  readonly registered: number
  readonly register: Phase
  readonly paced: PacedPhase & MasterLoop
  readonly fixed: PacedPhase & MasterLoop
  readonly saturate: Phase & MasterLoop
  readonly rssAfterPaced: number
  readonly rssAfterSaturate: number
  readonly hwm: number
  readonly logLines: number
  readonly scrape: Scrape
}

/** One scrape of the master's /metrics after the load: how long it took, how much it held, and the longest event-loop stall while it was rendered. */
interface Scrape {
  readonly ms: number
  readonly bytes: number
  readonly series: number
  readonly stallMs: number
}

/** GET /metrics with the operator's token: the time to the whole text, and the text. */
const getMetrics = (master: Master): Promise<{ readonly ms: number; readonly text: string }> =>
  new Promise((resolvePromise, reject) => {
    const start = performance.now()
    const request = https.request(
      { host: "127.0.0.1", port: master.port, path: "/metrics", method: "GET", ca: master.ca, headers: { authorization: `Bearer ${master.fleet.operatorToken}` } },
      (response) => {
        const chunks: Array<Buffer> = []
        response.on("data", (c: Buffer) => chunks.push(c))
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8")
          if (response.statusCode !== 200) reject(new Error(`GET /metrics answered ${response.statusCode}: ${text.slice(0, 200)}`))
          else resolvePromise({ ms: performance.now() - start, text })
        })
        response.on("error", reject)
      }
    )
    request.on("error", reject)
    request.end()
  })

/** The master's event-loop delay (ms): from its /metrics (since the scrape before), or from its MCP_BENCH_LOOP lines over a window. */
interface LoopDelay {
  readonly p99: number
  readonly max: number
}

const loopDelayOf = (text: string): LoopDelay => {
  const quantile = (q: string) => {
    const m = new RegExp(`^mcp_process_event_loop_delay_seconds\\{quantile="${q}"\\} ([0-9.e+-]+)$`, "m").exec(text)
    if (m === null) throw new Error(`no mcp_process_event_loop_delay_seconds{quantile="${q}"} in the master's /metrics`)
    return Number(m[1]) * 1000
  }
  return { p99: quantile("0.99"), max: quantile("1") }
}

interface MasterLoop {
  readonly loop: LoopDelay
}

/**
 * `phase`, with the master's own event-loop delay over it (bench/support/loop-lateness.mjs). The
 * round trips a phase prints are the load generator's view, its own pauses included; this is how
 * long the master held requests back, whatever the generator did.
 */
const withMasterLoop = async <P>(master: Master, phase: () => Promise<P>): Promise<P & MasterLoop> => {
  const from = monoNow()
  const result = await phase()
  const to = monoNow()
  // The master's line for the last 100 ms of the phase (later if a stall holds it back).
  await sleep(250)
  return { ...result, loop: master.loopDelay(from, to) }
}

/**
 * What a Prometheus scrape costs the master with every node watched: a first scrape (its code
 * cold), a second one timed, and a third that reads the master's own event-loop delay since the
 * second began (mcp_process_event_loop_delay_seconds{quantile="1"}, reset at each scrape): at most
 * the longest the master held every heartbeat back while it read and rendered the second (the
 * window also holds the 500 ms after it, idle but for the master's own timers).
 */
const measureScrape = async (master: Master): Promise<Scrape> => {
  await getMetrics(master)
  await sleep(500)
  const timed = await getMetrics(master)
  await sleep(500)
  const after = await getMetrics(master)
  const series = timed.text.split("\n").filter((line) => line !== "" && !line.startsWith("#")).length
  return { ms: timed.ms, bytes: Buffer.byteLength(timed.text), series, stallMs: loopDelayOf(after.text).max }
}

/**
 * Has the master (started with --heapsnapshot-signal) write a heap snapshot into HEAP_DIR and
 * waits until the file stops growing; renames it after `label`.
 */
const heapSnapshot = async (pid: number, label: string) => {
  const before = new Set(readdirSync(HEAP_DIR!))
  process.kill(pid, "SIGUSR2")
  const deadline = Date.now() + 300_000
  let file: string | undefined
  let size = -1
  for (;;) {
    await new Promise((r) => setTimeout(r, 1000))
    file ??= readdirSync(HEAP_DIR!).find((f) => f.endsWith(".heapsnapshot") && !before.has(f))
    if (file !== undefined) {
      const now = statSync(join(HEAP_DIR!, file)).size
      if (now === size && now > 0) break
      size = now
    }
    if (Date.now() > deadline) throw new Error(`no heap snapshot from the master within 300 s in ${HEAP_DIR}`)
  }
  const target = join(HEAP_DIR!, `master-${label}.heapsnapshot`)
  renameSync(join(HEAP_DIR!, file), target)
  console.error(`heap snapshot: ${target} (${(size / 2 ** 20).toFixed(0)} MiB)`)
}

const scale = async (master: Master, names: ReadonlyArray<string>): Promise<ScaleResult> => {
  const n = names.length
  const poster = makePoster({ port: master.port, path: "/control", ca: master.ca, marked: !UNMARKED }, SOCKETS)
  try {
    const deadAddress = `127.0.0.1:${await freePort()}`
    const token = (name: string) => master.tokens.get(name)!

    // --- register, bounded concurrency and time
    const reg = new Recorder()
    current = { label: "register", rec: reg }
    const registered: Array<string> = []
    const regCpu = cpuWindow(master.daemon.pid)
    const regStart = performance.now()
    const attemptedReg = await forEachBounded(n, REGISTER_CONCURRENCY, regStart + REGISTER_BUDGET_MS, (i) =>
      timed(reg, async () => {
        const name = names[i]!
        const outcome = await poster.call("Register", { info: { name, role: "worker", addresses: [deadAddress], arch: "x64", version: "bench" }, resources }, token(name))
        if (outcome.ok) registered.push(name)
        return outcome
      })
    )
    const regPhase = reg.phase(attemptedReg, performance.now() - regStart, regCpu.end(), attemptedReg < n ? `stopped after the ${REGISTER_BUDGET_MS / 1000} s budget` : "")
    const m = registered.length
    if (m === 0) throw new Error(`no agent registered (${reg.firstError}); master log tail:\n${master.tail()}`)
    const heartbeat = (i: number) => {
      const name = registered[i % m]!
      return poster.call("Heartbeat", { node: name, resources, services: servicesOf(name) }, token(name))
    }

    // --- paced at the agents' own cadence, then at a fixed rate, then closed loop
    const pacedPhase = await withMasterLoop(master, () => paced("paced", master.daemon.pid, (m / AGENT_INTERVAL_MS) * 1000, PACED_WINDOW_MS, heartbeat))
    const rssAfterPaced = memory(master.daemon.pid).rssMiB
    // Warmed up as the floor is before its fixed-rate phase (the paced phase alone is too few calls
    // at small N for V8 to optimize the path): a cold master's first second is its JIT, not its load.
    await forEachBounded(WARM_UP_CALLS, SATURATE_CONCURRENCY, Infinity, (i) => heartbeat(i).then(() => undefined))
    const fixedPhase = await withMasterLoop(master, () => paced(`${FIXED_RATE}/s`, master.daemon.pid, FIXED_RATE, PACED_WINDOW_MS, heartbeat))
    const satPhase = await withMasterLoop(master, () => saturate("saturate", master.daemon.pid, heartbeat))
    const mem = memory(master.daemon.pid)
    const scrape = await measureScrape(master)
    if (HEAP_DIR !== undefined) await heapSnapshot(master.daemon.pid, `N${n}`)
    return {
      n,
      registered: m,
      register: regPhase,
      paced: pacedPhase,
      fixed: fixedPhase,
      saturate: satPhase,
      rssAfterPaced,
      rssAfterSaturate: mem.rssMiB,
      hwm: mem.hwmMiB,
      logLines: master.logLines(),
      scrape
    }
  } finally {
    poster.close()
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Detection: silence -> unhealthy.

interface DetectResult {
  readonly k: number
  readonly toUnhealthy: ReadonlyArray<number>
  readonly toSuspect: ReadonlyArray<number>
  readonly missed: ReadonlyArray<string>
  readonly healthyBefore: number
  readonly hbFailures: number
}

const detect = async (master: Master, names: ReadonlyArray<string>): Promise<DetectResult> => {
  const poster = makePoster({ port: master.port, path: "/control", ca: master.ca }, 8)
  const operator = await operatorClient(master)
  const nodesList = () => Effect.runPromise(Effect.either(operator.cli.NodesList()))
  try {
    const deadAddress = `127.0.0.1:${await freePort()}`
    // Each agent's first heartbeat is due the interval its registration was given after it.
    const firstDue = new Map<string, number>()
    for (const name of names) {
      const r = await poster.call("Register", { info: { name, role: "worker", addresses: [deadAddress], arch: "x64", version: "bench" }, resources }, master.tokens.get(name)!)
      if (!r.ok) throw new Error(`register ${name}: ${r.error}`)
      firstDue.set(name, performance.now() + (r.value as { heartbeatIntervalMs: number }).heartbeatIntervalMs)
    }
    const silentAt = new Map<string, number>()
    const unhealthyAt = new Map<string, number>()
    const suspectAt = new Map<string, number>()
    let hbFailures = 0
    const start = performance.now()
    // Agent i heartbeats at the interval each answer gives it (its first when its registration's
    // interval has passed, as an agent does) while that is before its stop time, so the K agents
    // go silent at moments spread over one interval.
    const agent = async (i: number) => {
      const stopAt = start + 4000 + (i * 1000) / DETECT_K
      await sleep(Math.max(0, firstDue.get(names[i]!)! - performance.now()))
      for (;;) {
        const r = await poster.call("Heartbeat", { node: names[i]!, resources, services: [] }, master.tokens.get(names[i]!)!)
        if (!r.ok) hbFailures++
        // Silence starts when the last heartbeat has been answered (the master handled it).
        silentAt.set(names[i]!, performance.now())
        const given = r.ok ? ((r.value as { heartbeatIntervalMs?: number }).heartbeatIntervalMs ?? 1000) : 1000
        if (performance.now() + given > stopAt) break
        await sleep(given)
      }
    }
    let healthyBefore = 0
    const poller = async () => {
      const limit = start + 4000 + 1000 + 20_000
      while (performance.now() < limit && unhealthyAt.size < names.length) {
        const views = await nodesList()
        const now = performance.now()
        if (Either.isRight(views)) {
          if (healthyBefore === 0 && now - start > 2500 && now - start < 3500) {
            healthyBefore = views.right.filter((v) => names.includes(v.info.name) && v.health === "healthy").length
          }
          for (const v of views.right) {
            const t = silentAt.get(v.info.name)
            if (t === undefined || now < start + 4000) continue
            if (v.health === "suspect" && !suspectAt.has(v.info.name)) suspectAt.set(v.info.name, now - t)
            if (v.health === "unhealthy" && !unhealthyAt.has(v.info.name)) unhealthyAt.set(v.info.name, now - t)
          }
        }
        await sleep(100)
      }
    }
    await Promise.all([...names.map((_, i) => agent(i)), poller()])
    return {
      k: names.length,
      toUnhealthy: sortNum([...unhealthyAt.values()]),
      toSuspect: sortNum([...suspectAt.values()]),
      missed: names.filter((n) => !unhealthyAt.has(n)),
      healthyBefore,
      hbFailures
    }
  } finally {
    poster.close()
    await operator.close()
  }
}

// ---------------------------------------------------------------------------------------------
// 3. Jitter and loss: heartbeats late by up to JITTER_MS and 5% lost, from agents that answer probes.

const JITTER_MS = 200
const LOSS = 0.05
const JITTER_WINDOW_MS = QUICK ? 30_000 : 60_000

/**
 * For each node, an HTTPS server with a certificate naming it that answers the master's calls to
 * agents as an agent would: Health (the probe: a node whose heartbeats are late or lost but which
 * is up) and Ps (`services`, for the fan-out part). The master checks that the certificate names
 * the node it calls.
 */
const agentResponders = async (fleet: Fleet, names: ReadonlyArray<string>, services: (node: string) => ReadonlyArray<unknown> = () => []) => {
  const servers: Array<https.Server> = []
  const sockets = new Set<Socket>()
  const addresses = new Map<string, string>()
  for (const name of names) {
    await Effect.runPromise(Pki.issueCertificate(fleet.caDir, name, { ips: ["127.0.0.1"], dns: [name], usage: "server" }).pipe(Effect.provide(NodeFileSystem.layer)))
    const server = https.createServer({ cert: readFileSync(join(fleet.caDir, `${name}.crt`)), key: readFileSync(join(fleet.caDir, `${name}.key`)) }, (request, response) => {
      let body = ""
      request.setEncoding("utf8")
      request.on("data", (d: string) => (body += d))
      request.on("end", () => {
        const { id, tag } = JSON.parse(body.split("\n")[0]!) as { id: string; tag: string }
        const value = tag === "Ps" ? services(name) : { node: name, at: new Date().toISOString(), protocol: PROTOCOL_VERSION }
        response.setHeader("content-type", "application/ndjson")
        response.setHeader(PROTOCOL_HEADER, String(PROTOCOL_VERSION))
        response.end(`${JSON.stringify({ _tag: "Exit", requestId: id, exit: { _tag: "Success", value } })}\n`)
      })
    })
    // Every socket, from the moment TCP accepts it: closeAllConnections knows only those the HTTP
    // layer has taken over, and a jitter run was once left waiting for ever on two it did not.
    server.on("connection", (socket: Socket) => {
      sockets.add(socket)
      socket.once("close", () => sockets.delete(socket))
    })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
    servers.push(server)
    addresses.set(name, `127.0.0.1:${(server.address() as AddressInfo).port}`)
  }
  return {
    addresses,
    close: () => {
      const closed = Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))))
      for (const socket of sockets) socket.destroy()
      return closed
    }
  }
}

interface JitterResult {
  readonly k: number
  readonly sent: number
  readonly lost: number
  readonly suspected: number
  readonly unhealthy: number
  readonly unhealthyNodes: ReadonlyArray<string>
}

/** K agents that answer probes heartbeat at the interval the master gives, each late by 0-JITTER_MS and lost with LOSS; every verdict is counted. */
const jitterAndLoss = async (master: Master, names: ReadonlyArray<string>, addresses: ReadonlyMap<string, string>): Promise<JitterResult> => {
  const poster = makePoster({ port: master.port, path: "/control", ca: master.ca }, 8)
  const operator = await operatorClient(master)
  const views = () => Effect.runPromise(Effect.either(operator.cli.NodesList()))
  // A seeded draw, so that two runs (fixed, phi) see the same lateness and losses.
  let seed = 2026
  const draw = () => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31
    return seed / 2 ** 31
  }
  try {
    const intervals = new Map<string, number>()
    const registeredAt = new Map<string, number>()
    for (const name of names) {
      const r = await poster.call("Register", { info: { name, role: "worker", addresses: [addresses.get(name)!], arch: "x64", version: "bench" }, resources }, master.tokens.get(name)!)
      if (!r.ok) throw new Error(`register ${name}: ${r.error}`)
      intervals.set(name, (r.value as { heartbeatIntervalMs: number }).heartbeatIntervalMs)
      registeredAt.set(name, performance.now())
    }
    let sent = 0
    let lost = 0
    const end = performance.now() + JITTER_WINDOW_MS
    const agent = async (name: string) => {
      // The first beat counts from the registration, later ones from the last beat.
      let from = registeredAt.get(name)!
      while (performance.now() < end) {
        await sleep(Math.max(0, from + intervals.get(name)! - performance.now()) + draw() * JITTER_MS)
        from = performance.now()
        if (draw() < LOSS) {
          lost++
          continue
        }
        sent++
        const r = await poster.call("Heartbeat", { node: name, resources, services: [] }, master.tokens.get(name)!)
        const given = r.ok ? (r.value as { heartbeatIntervalMs?: number }).heartbeatIntervalMs : undefined
        if (given !== undefined) intervals.set(name, given)
      }
    }
    const seen = new Map<string, string>()
    let suspected = 0
    let unhealthy = 0
    const unhealthyNodes = new Set<string>()
    const poller = async () => {
      while (performance.now() < end + 3_000) {
        const r = await views()
        if (Either.isRight(r)) {
          for (const v of r.right) {
            if (!names.includes(v.info.name)) continue
            const before = seen.get(v.info.name)
            if (before !== v.health && before !== undefined) {
              if (v.health === "suspect") suspected++
              if (v.health === "unhealthy") {
                unhealthy++
                unhealthyNodes.add(v.info.name)
              }
            }
            seen.set(v.info.name, v.health)
          }
        }
        await sleep(100)
      }
    }
    await Promise.all([...names.map(agent), poller()])
    return { k: names.length, sent, lost, suspected, unhealthy, unhealthyNodes: [...unhealthyNodes] }
  } finally {
    poster.close()
    await operator.close()
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Fan-out: `mcp ps` over FANOUT_NODES agents with FANOUT_SERVICES services each.

const FANOUT_NODES = Number(process.env["MCP_BENCH_FANOUT_NODES"] ?? 100)
const FANOUT_SERVICES = Number(process.env["MCP_BENCH_FANOUT_SERVICES"] ?? 30)

/** What a simulated agent answers to Ps: FANOUT_SERVICES services of two components with a route each. */
const psOf = (node: string) =>
  Array.from({ length: FANOUT_SERVICES }, (_, k) => ({
    service: `${node}-s${k}`,
    node,
    active: true,
    components: ["web", "worker"].map((name, c) => ({
      name,
      image: `registry.example/${name}:1.${k}`,
      version: `1.${k}`,
      state: "running",
      containerId: `${node}${k}${c}`.padEnd(64, "0"),
      routes: [{ hostname: `${node}-s${k}.svc.mcp.internal`, listener: 8443, mode: "l7", hostPort: 20_000 + k * 2 + c }],
      restarts: 0,
      startedAt: new Date().toISOString()
    })),
    warnings: []
  }))

interface FanoutResult {
  readonly services: number
  readonly unreachable: number
  readonly rpcColdMs: number
  readonly rpcWarmMs: ReadonlyArray<number>
  readonly cliMs: ReadonlyArray<number>
  readonly cliFloorMs: ReadonlyArray<number>
  /** The same with the release's `mcp` executable, what an installed fleet runs. */
  readonly releaseMs: ReadonlyArray<number>
  readonly releaseFloorMs: ReadonlyArray<number>
}

/**
 * The release's `mcp` (scripts/release.mjs, built once into a temporary directory): the CLI as
 * installed, without the repository bin's staleness check and with its code cache.
 */
const releaseCli = (() => {
  let built: string | undefined
  return () => {
    if (built !== undefined) return built
    const out = mkdtempSync(join(tmpdir(), "mcp-bench-hb-release-"))
    process.on("exit", () => rmSync(out, { recursive: true, force: true }))
    execSync(`${JSON.stringify(process.execPath)} ${JSON.stringify(join(repo, "scripts/release.mjs"))} --out ${JSON.stringify(out)}`, { stdio: ["ignore", "ignore", "inherit"] })
    const dir = readdirSync(out).find((d) => d.startsWith("mcp-"))
    if (dir === undefined) throw new Error(`scripts/release.mjs wrote no mcp-* directory into ${out}`)
    built = join(out, dir, "mcp")
    return built
  }
})()

/**
 * The environment of the fan-out's CLI processes only: NODE_OPTIONS from
 * MCP_BENCH_CLI_NODE_OPTIONS (flags NODE_OPTIONS may carry: V8's heap flags, --trace-gc), and
 * with --cli-profile the preload that profiles each of them.
 */
const cliProfileArg = process.argv.find((a) => a.startsWith("--cli-profile="))
const cliEnv: Record<string, string> = (() => {
  const options = [process.env["MCP_BENCH_CLI_NODE_OPTIONS"] ?? ""]
  const env: Record<string, string> = {}
  if (cliProfileArg !== undefined) {
    options.push(`--import ${fileURLToPath(new URL("./support/cpu-profile.mjs", import.meta.url))}`)
    env["MCP_CPU_PROFILE_DIR"] = resolve(cliProfileArg.slice("--cli-profile=".length))
  }
  const nodeOptions = options.filter((o) => o !== "").join(" ")
  return nodeOptions === "" ? env : { ...env, NODE_OPTIONS: nodeOptions }
})()

/** One run of the release's `mcp` with these arguments; rejects on a non-zero exit. */
const runRelease = (args: ReadonlyArray<string>) =>
  new Promise<void>((ok, fail) => {
    const child = spawn(releaseCli(), args, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, ...cliEnv } })
    let stderr = ""
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()))
    child.on("exit", (code) => (code === 0 ? ok() : fail(new Error(`release mcp ${args.join(" ")} exited ${code}: ${stderr}`))))
  })

const fanout = async (): Promise<FanoutResult> => {
  const names = Array.from({ length: FANOUT_NODES }, (_, i) => nodeName("fan", i))
  const master = await startMaster("fanout", { interval: "10s", missThreshold: 100, probeTimeout: "1s" }, names)
  const responders = await agentResponders(master.fleet, names, psOf)
  const poster = makePoster({ port: master.port, path: "/control", ca: master.ca }, 8)
  const closers: Array<() => Promise<void>> = []
  try {
    for (const name of names) {
      const r = await poster.call("Register", { info: { name, role: "worker", addresses: [responders.addresses.get(name)!], arch: "x64", version: "bench" }, resources }, master.tokens.get(name)!)
      if (!r.ok) throw new Error(`register ${name}: ${r.error}`)
    }
    const operator = await operatorClient(master)
    closers.push(operator.close)
    const ps = () => Effect.runPromise(operator.cli.Ps())
    const timedMs = async <A>(f: () => Promise<A>) => {
      const t = performance.now()
      const a = await f()
      return { ms: performance.now() - t, a }
    }
    const cold = await timedMs(ps)
    const rpcWarmMs: Array<number> = []
    for (let i = 0; i < 5; i++) rpcWarmMs.push((await timedMs(ps)).ms)
    const cliMs: Array<number> = []
    const cliFloorMs: Array<number> = []
    for (let i = 0; i < 5; i++) {
      const run = await timedMs(() => mcp(master.fleet, ["ps"], cliEnv))
      if (run.a.code !== 0) throw new Error(`mcp ps exited ${run.a.code}: ${run.a.stderr}`)
      cliMs.push(run.ms)
      // The floor: the same CLI answering without the network (its start and exit).
      cliFloorMs.push((await timedMs(() => mcp(master.fleet, ["--version"], cliEnv))).ms)
    }
    releaseCli()
    const releaseMs: Array<number> = []
    const releaseFloorMs: Array<number> = []
    for (let i = 0; i < 5; i++) {
      releaseMs.push((await timedMs(() => runRelease(["ps", "--config", master.fleet.cliConfig]))).ms)
      releaseFloorMs.push((await timedMs(() => runRelease(["--version"]))).ms)
    }
    return { services: cold.a.services.length, unreachable: cold.a.unreachable.length, rpcColdMs: cold.ms, rpcWarmMs, cliMs, cliFloorMs, releaseMs, releaseFloorMs }
  } finally {
    poster.close()
    for (const close of closers) await close()
    await responders.close()
    await master.close()
  }
}

// ---------------------------------------------------------------------------------------------

const main = async () => {
  const started = performance.now()
  console.log(`bench/heartbeats${QUICK ? " --quick" : ""}: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), node ${process.version}`)
  console.log(
    `  load generator: raw ndjson RPC frames over node:https keep-alive (${SOCKETS} connections), each simulated agent with its own system token;` +
      ` register ${REGISTER_CONCURRENCY} in flight (budget ${REGISTER_BUDGET_MS / 1000} s); paced windows ${PACED_WINDOW_MS / 1000} s (<= ${MAX_IN_FLIGHT} in flight);` +
      ` saturate ${SATURATE_MS / 1000} s at ${SATURATE_CONCURRENCY} in flight`
  )
  console.log(`  rtt = client-observed round trip; server CPU = utime+stime delta of the server pid over the window, % of one core and ms per answered call`)
  console.log(`  bench CPU = this load generator; others = the rest of the machine (other processes, kernel) over the same window, % of one core`)

  if (ONLY_FANOUT) {
    const fan = await fanout()
    console.log(`mcp ps over ${FANOUT_NODES} x ${FANOUT_SERVICES}: ${fan.cliMs.map(f0).join(", ")} ms (floor mcp --version ${fan.cliFloorMs.map(f0).join(", ")} ms); release mcp ps ${fan.releaseMs.map(f0).join(", ")} ms (floor ${fan.releaseFloorMs.map(f0).join(", ")} ms); Ps RPC cold ${f0(fan.rpcColdMs)} ms, warm ${fan.rpcWarmMs.map(f0).join(", ")} ms; ${fan.services} services, ${fan.unreachable} unreachable`)
    return
  }

  // The floor: a scratch fleet only for its certificates.
  const refDir = mkdtempSync(join(tmpdir(), "mcp-bench-hb-ref-"))
  const refFleet = await prepare(refDir)
  const references: Array<ReferenceResult> = []
  try {
    for (const [name, file, path] of [
      ["node:https", join(repo, "bench/reference/https-server.mjs"), "/rpc"],
      ["@effect/rpc", join(repo, "bench/reference/rpc-server.ts"), "/rpc"]
    ] as const) {
      console.log(`\nReference: ${name} (${file.slice(repo.length)})`)
      const r = await reference(name, file, refFleet, path)
      references.push(r)
      printPhase(`${FIXED_RATE}/s`, r.fixed, `   start lag p99 ${f1(r.fixed.lagP99)} ms`)
      printPhase("saturate", r.saturate)
    }
  } finally {
    rmSync(refDir, { recursive: true, force: true })
  }
  const floor = references[0]!

  const results: Array<ScaleResult> = []
  for (const n of SIZES) {
    const names = Array.from({ length: n }, (_, i) => nodeName("sim", i))
    const master = await startMaster(`n${n}`, { interval: "10s", missThreshold: 100, probeTimeout: "1s" }, names)
    try {
      const idle = memory(master.daemon.pid)
      console.log(`\nN = ${n.toLocaleString("en-US")}  (master pid ${master.daemon.pid}, RSS at start ${f1(idle.rssMiB)} MiB)`)
      const stopProgress = progress(master.daemon.pid)
      const r = await scale(master, names).finally(stopProgress)
      results.push(r)
      printPhase("register", r.register, `   (${r.registered}/${n} registered)`)
      const loop = (p: MasterLoop) => `   master loop delay p99 ${bucket(p.loop.p99)} ms, max ${f1(p.loop.max)} ms`
      printPhase("paced", r.paced, `   offered ${f0(r.paced.offered)}/s, start lag p99 ${f1(r.paced.lagP99)} ms${loop(r.paced)}`)
      printPhase(`${FIXED_RATE}/s`, r.fixed, `   start lag p99 ${f1(r.fixed.lagP99)} ms${loop(r.fixed)}`)
      printPhase("saturate", r.saturate, loop(r.saturate))
      console.log(`  master RSS after paced ${f1(r.rssAfterPaced)} MiB, after saturate ${f1(r.rssAfterSaturate)} MiB (peak ${f1(r.hwm)} MiB); ${r.logLines} log lines`)
      console.log(`  GET /metrics ${f1(r.scrape.ms)} ms (${r.scrape.series} series, ${f1(r.scrape.bytes / 1024)} KiB); master event loop held at most ${f1(r.scrape.stallMs)} ms meanwhile`)
      if (r.registered < n) console.log(`  NOTE: only ${r.registered} of ${n} agents registered within the budget; the heartbeat phases used those.`)
    } catch (e) {
      console.log(`  N = ${n} failed: ${e instanceof Error ? e.message : String(e)}\n  master log tail:\n${master.tail()}`)
    } finally {
      await master.close()
    }
  }

  const detections: Array<{ readonly detector: string; readonly result: DetectResult }> = []
  const jitters: Array<{ readonly detector: string; readonly result: JitterResult }> = []
  const detectors = [["fixed", ""], ["phi", `detector = "phi"`]] as const
  if (!SKIP_DETECT) {
    for (const [detector, extra] of detectors) {
      console.log(`\nDetection (${detector}): silence -> unhealthy (master interval 1s, miss_threshold 3, probe_timeout 1s${extra === "" ? "" : `, ${extra}`}; ${DETECT_K} agents at a closed port; NodesList polled every 100 ms)`)
      const names = Array.from({ length: DETECT_K }, (_, i) => nodeName("quiet", i))
      const master = await startMaster(`detect-${detector}`, { interval: "1s", missThreshold: 3, probeTimeout: "1s", extra }, names)
      try {
        const d = await detect(master, names)
        detections.push({ detector, result: d })
        const u = d.toUnhealthy
        const s = d.toSuspect
        console.log(`  healthy while heartbeating: ${d.healthyBefore}/${d.k}; heartbeat failures ${d.hbFailures}`)
        console.log(`  silence -> unhealthy (ms): n ${u.length}  min ${f0(u[0] ?? NaN)}  p50 ${f0(pct(u, 0.5))}  p90 ${f0(pct(u, 0.9))}  max ${f0(u[u.length - 1] ?? NaN)}`)
        console.log(`  silence -> suspect seen by a poll (ms): n ${s.length}${s.length === 0 ? "" : `  min ${f0(s[0]!)}  p50 ${f0(pct(s, 0.5))}  max ${f0(s[s.length - 1]!)}`}`)
        if (d.missed.length > 0) console.log(`  never seen unhealthy: ${d.missed.join(", ")}`)
        console.log(detector === "fixed" ? `  expected about 3 x 1-1.1 s + probe time (+ up to 50 ms for the master's deadline rounds and 100 ms poll granularity)` : `  expected a little over one interval + probe time`)
      } catch (e) {
        console.log(`  detection failed: ${e instanceof Error ? e.message : String(e)}\n  master log tail:\n${master.tail()}`)
      } finally {
        await master.close()
      }
    }
    for (const [detector, extra] of detectors) {
      console.log(`\nJitter and loss (${detector}): ${DETECT_K} agents that answer probes, each heartbeat 0-${JITTER_MS} ms late and ${LOSS * 100}% lost, for ${JITTER_WINDOW_MS / 1000} s (master interval 1s, miss_threshold 3)`)
      const names = Array.from({ length: DETECT_K }, (_, i) => nodeName("lossy", i))
      const master = await startMaster(`jitter-${detector}`, { interval: "1s", missThreshold: 3, probeTimeout: "1s", extra }, names)
      const responders = await agentResponders(master.fleet, names)
      try {
        const j = await jitterAndLoss(master, names, responders.addresses)
        jitters.push({ detector, result: j })
        console.log(`  ${j.sent} heartbeats sent, ${j.lost} lost; suspected ${j.suspected} times (each settled by a probe); unhealthy verdicts ${j.unhealthy}${j.unhealthyNodes.length > 0 ? ` (${j.unhealthyNodes.join(", ")})` : ""}`)
      } catch (e) {
        console.log(`  jitter and loss failed: ${e instanceof Error ? e.message : String(e)}\n  master log tail:\n${master.tail()}`)
      } finally {
        await responders.close()
        await master.close()
      }
    }
  }

  let fan: FanoutResult | undefined
  if (!SKIP_FANOUT) console.log(`\nFan-out: mcp ps over ${FANOUT_NODES} agents x ${FANOUT_SERVICES} services (simulated agents answering Ps; fanout_timeout 2s)`)
  if (!SKIP_FANOUT) try {
    fan = await fanout()
    console.log(`  ${fan.services} services, ${fan.unreachable} nodes unreachable; Ps RPC cold ${f0(fan.rpcColdMs)} ms (new connections to every agent), warm ${fan.rpcWarmMs.map(f0).join(", ")} ms`)
    console.log(`  mcp ps (a CLI process each, the repository's bin): ${fan.cliMs.map(f0).join(", ")} ms; mcp --version (the floor) ${fan.cliFloorMs.map(f0).join(", ")} ms`)
    console.log(`  mcp ps (the release's executable, as installed): ${fan.releaseMs.map(f0).join(", ")} ms; mcp --version (the floor) ${fan.releaseFloorMs.map(f0).join(", ")} ms`)
  } catch (e) {
    console.log(`  fan-out failed: ${inspect(e, { depth: 4 })}`)
  }

  console.log(`\nSummary${QUICK ? " (--quick)" : ""}; floor = ${floor.name} (${floor.saturate.serverMsPerOp.toFixed(3)} ms CPU per call at saturation, p99 ${f1(floor.fixed.p99)} ms at ${FIXED_RATE}/s)`)
  const header = [
    "server", "registered", "reg/s", "reg ms CPU", "paced offered/s", "paced p99 ms",
    `${FIXED_RATE}/s absorbed`, `${FIXED_RATE}/s p50 ms`, `${FIXED_RATE}/s p99 ms`, "master loop p99/max", "generator loop p99/max", `${FIXED_RATE}/s ms CPU/hb`,
    "sat absorbed/s", "sat ms CPU/hb", "x floor", "RSS MiB"
  ]
  const ratio = (p: Phase) => `${(p.serverMsPerOp / floor.saturate.serverMsPerOp).toFixed(1)}x`
  const loopCell = (d: LoopDelay) => `${bucket(d.p99).replace(" ", "")}/${f1(d.max)}`
  const rows = [
    ...references.map((r) => [
      r.name, "-", "-", "-", "-", "-",
      f0(r.fixed.rate), f1(r.fixed.p50), f1(r.fixed.p99), "-", loopCell(generatorLoop(r.fixed)), r.fixed.serverMsPerOp.toFixed(3),
      f0(r.saturate.rate), r.saturate.serverMsPerOp.toFixed(3), ratio(r.saturate), "-"
    ]),
    ...results.map((r) => [
      `master N=${r.n.toLocaleString("en-US")}${UNMARKED ? " (unmarked)" : ""}`,
      String(r.registered), f0(r.register.rate), r.register.serverMsPerOp.toFixed(2), f0(r.paced.offered), f1(r.paced.p99),
      f0(r.fixed.rate), f1(r.fixed.p50), f1(r.fixed.p99), loopCell(r.fixed.loop), loopCell(generatorLoop(r.fixed)), r.fixed.serverMsPerOp.toFixed(3),
      f0(r.saturate.rate), r.saturate.serverMsPerOp.toFixed(3), ratio(r.saturate), f1(r.rssAfterSaturate)
    ])
  ]
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  console.log("  " + header.map((h, i) => pad(h, widths[i]!)).join(" | "))
  console.log("  " + widths.map((w) => "-".repeat(w)).join("-+-"))
  for (const row of rows) console.log("  " + row.map((c, i) => pad(c, widths[i]!)).join(" | "))
  if (fan !== undefined) {
    const median = (xs: ReadonlyArray<number>) => pct(sortNum(xs), 0.5)
    console.log(`  mcp ps over ${FANOUT_NODES} x ${FANOUT_SERVICES}: median ${f0(median(fan.cliMs))} ms (floor mcp --version ${f0(median(fan.cliFloorMs))} ms); release executable median ${f0(median(fan.releaseMs))} ms (floor ${f0(median(fan.releaseFloorMs))} ms); Ps RPC warm median ${f0(median(fan.rpcWarmMs))} ms, cold ${f0(fan.rpcColdMs)} ms`)
  }
  for (const { detector, result: d } of detections) {
    const u = d.toUnhealthy
    console.log(`  silence -> unhealthy, ${detector.padEnd(5)} (1 s interval, threshold 3, K=${d.k}): min ${f0(u[0] ?? NaN)} / p50 ${f0(pct(u, 0.5))} / p90 ${f0(pct(u, 0.9))} / max ${f0(u[u.length - 1] ?? NaN)} ms`)
  }
  for (const { detector, result: j } of jitters) {
    console.log(`  jitter ${JITTER_MS} ms + ${LOSS * 100}% loss, ${detector.padEnd(5)}: ${j.unhealthy} false unhealthy verdicts, ${j.suspected} suspicions settled by a probe (${j.sent} heartbeats, ${j.lost} lost, K=${j.k})`)
  }
  console.log(`  ms CPU/hb = server CPU time per answered call over the window; x floor = saturate ms CPU/hb over the floor's`)
  console.log(`  p50/p99 ms = round trips as the load generator saw them (its own pauses included); master loop p99/max = the master's own event-loop delay over the ${FIXED_RATE}/s phase (p99 as the bound of its bucket), ms; generator loop p99/max = this load generator's own, the same way: a round trip over 10 ms when neither loop was held is the machine's (both processes waiting for a core)`)
  // A phase during which the rest of the machine, or the hypervisor's other guests, took a good
  // part of a core shows a higher CPU per call and longer round trips than it costs: say which,
  // so that a figure set against a target is taken from a quiet run. Steal is looked at on its
  // own: a guest's process accounting charges stolen ticks partly to the process that was
  // running, so `others` alone misses some of it.
  const disturbed = [
    ...references.flatMap((r) => [[`${r.name} ${FIXED_RATE}/s`, r.fixed], [`${r.name} saturate`, r.saturate]] as const),
    ...results.flatMap((r) => {
      const name = `master N=${r.n.toLocaleString("en-US")}`
      return [[`${name} register`, r.register], [`${name} paced`, r.paced], [`${name} ${FIXED_RATE}/s`, r.fixed], [`${name} saturate`, r.saturate]] as const
    })
  ].filter(([, p]) => Math.max(p.othersCpu, p.stealCpu) >= DISTURBED_PCT)
  for (const [name, p] of disturbed) {
    console.log(`  disturbed: ${name} ran with ${f0(p.othersCpu)}% of a core used outside the bench (steal ${f0(p.stealCpu)}%); its CPU and time figures are inflated: run again when the machine is quiet`)
  }
  console.log(`  total bench time ${f0((performance.now() - started) / 1000)} s`)
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130))

await main()
