/**
 * bench/heartbeats: how many agents one master can carry, and how fast it notices a silent one.
 *
 * 1. Scale. For N simulated agents (logical agents, each with its own node name, sharing a
 *    handful of in-process HTTPS clients) against ONE real `mcp-master` process spawned with
 *    LocalFleet (fresh data dir and process per N, heartbeat interval 10s, miss_threshold 100
 *    so nobody is probed):
 *      - register all N (bounded concurrency, bounded time);
 *      - paced: every agent heartbeats every 10 s (N/10 heartbeats/s offered, open loop) for a
 *        window; at most 256 in flight, a heartbeat that falls due while all are busy is skipped
 *        and counted (so an overloaded master shows as skips, not as a backlog in this process);
 *      - saturate: closed loop with bounded concurrency for a fixed duration ("as fast as it
 *        absorbs").
 *    Prints heartbeats/s absorbed, p50/p99 client-observed round trip, master CPU (utime+stime
 *    delta from /proc/<pid>/stat over the window, as % of one core) and master RSS after it.
 * 2. Detection. Master with interval 1s, miss_threshold 3, probe_timeout 1s; K=20 agents whose
 *    address is a closed port on 127.0.0.1 heartbeat every second, then go silent one by one;
 *    NodesList is polled every 100 ms until each shows "unhealthy".
 *
 * Figures only, no assertions. The load generator runs on the same machine as the master, so
 * both compete for the same cores; its own CPU is printed too.
 *
 *   node --import tsx bench/heartbeats.ts [--quick] [--sizes=100,1000] [--no-detect]
 *
 * A progress line goes to stderr every 5 s. Each master is killed when this process exits, and
 * by a small watchdog if this process dies without running exit handlers.
 */
import { Names } from "@mcp/domain"
import { ControlRpcs, MasterRpcs, Transport } from "@mcp/rpc"
import { Effect, Either, Fiber, Redacted } from "effect"
import { execSync, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { cpus, tmpdir } from "node:os"
import { join } from "node:path"
import { bins, type Daemon, type Fleet, freePort, prepare, spawnDaemon, writeMasterConfig } from "../test/support/LocalFleet.js"

const QUICK = process.argv.includes("--quick")
const sizesArg = process.argv.find((a) => a.startsWith("--sizes="))
const SIZES = sizesArg !== undefined
  ? sizesArg.slice("--sizes=".length).split(",").map(Number)
  : QUICK ? [100, 1_000] : [100, 1_000, 10_000]
const SKIP_DETECT = process.argv.includes("--no-detect")
const PACED_WINDOW_MS = QUICK ? 10_000 : 20_000
const SATURATE_MS = QUICK ? 5_000 : 10_000
const SATURATE_CONCURRENCY = 32
const REGISTER_CONCURRENCY = 32
const REGISTER_BUDGET_MS = QUICK ? 60_000 : 120_000
const AGENT_INTERVAL_MS = 10_000
const MAX_IN_FLIGHT = 256
const DRAIN_BUDGET_MS = 15_000
const CLIENTS = 4
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

/** Busy and total jiffies of the whole machine (all cores), from /proc/stat. */
const machineTicks = (): { busy: number; total: number } => {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number)
  const total = f.reduce((a, b) => a + b, 0)
  return { busy: total - f[3]! - f[4]!, total }
}

interface CpuUse {
  /** % of one core used by the master process over the window. */
  readonly masterPct: number
  /** % of one core used by this load generator. */
  readonly benchPct: number
  /** % of one core used by everything else on the machine (other processes, kernel). */
  readonly othersPct: number
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
const pad = (s: string, n: number) => s.padStart(n)

const describe = (e: unknown): string =>
  typeof e === "object" && e !== null && "_tag" in e
    ? `${String((e as { _tag: unknown })._tag)}${"message" in e ? `: ${String((e as { message: unknown }).message)}` : ""}`
    : String(e)

// ---------------------------------------------------------------------------------------------
// A master process per experiment.

interface Master {
  readonly fleet: Fleet
  readonly daemon: Daemon
  readonly port: number
  readonly ca: string
  readonly systemToken: string
  /** The last 8 KiB the master printed (its log), for when something goes wrong. */
  readonly tail: () => string
  readonly logLines: () => number
  readonly close: () => Promise<void>
}

const startMaster = async (label: string, heartbeat: { interval: string; missThreshold: number; probeTimeout: string }): Promise<Master> => {
  const dir = mkdtempSync(join(tmpdir(), `mcp-bench-hb-${label}-`))
  const fleet = await prepare(dir)
  const port = await freePort()
  const config = writeMasterConfig(fleet, { port, ...heartbeat })
  const daemon = await spawnDaemon(bins.master, config)
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
  for (const stream of [daemon.child.stdout!, daemon.child.stderr!]) {
    stream.removeAllListeners("data")
    stream.on("data", (d: Buffer) => {
      const s = d.toString()
      for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 10) lines++
      tail = (tail + s).slice(-8192)
    })
  }
  return {
    fleet,
    daemon,
    port,
    ca: readFileSync(join(fleet.caDir, "ca.crt"), "utf8"),
    systemToken: readFileSync(fleet.systemTokenFile, "utf8").trim(),
    tail: () => tail,
    logLines: () => lines,
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

const nodeName = (prefix: string, i: number) => Names.NodeName.make(`${prefix}-${String(i).padStart(5, "0")}`)

const controlClients = (master: Master, count: number) =>
  Effect.forEach(Array.from({ length: count }), () =>
    Transport.makeClient(ControlRpcs, { url: `https://127.0.0.1:${master.port}/control`, ca: master.ca, token: Redacted.make(master.systemToken) })
  )
type ControlClient = Effect.Effect.Success<ReturnType<typeof controlClients>>[number]

// ---------------------------------------------------------------------------------------------
// 1. Scale.

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
  readonly masterCpu: number
  readonly benchCpu: number
  readonly othersCpu: number
  /** Master CPU time per successful call, ms. */
  readonly masterMsPerOp: number
  readonly note: string
  readonly firstError: string | undefined
}

interface ScaleResult {
  readonly n: number
  readonly registered: number
  readonly register: Phase
  readonly paced: Phase & { readonly offered: number; readonly lagP99: number }
  readonly saturate: Phase
  readonly rssAfterPaced: number
  readonly rssAfterSaturate: number
  readonly hwm: number
  readonly logLines: number
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
          `  CPU master ${f0(cpu.masterPct)}% bench ${f0(cpu.benchPct)}% others ${f0(cpu.othersPct)}%` +
          `  master RSS ${f0(memory(pid).rssMiB)} MiB  bench heap ${f0(process.memoryUsage().heapUsed / 2 ** 20)} MiB\n`
      )
    } catch {
      // the master is gone; the main flow reports it
    }
  }, 5000)
  return () => clearInterval(timer)
}

class Recorder {
  readonly latencies: Array<number> = []
  ok = 0
  failed = 0
  unknown = 0
  firstError: string | undefined = undefined
  lastDone = 0
  record(ms: number, result: Either.Either<{ readonly known: boolean } | unknown, unknown>) {
    this.lastDone = performance.now()
    if (Either.isLeft(result)) {
      this.failed++
      this.firstError ??= describe(result.left)
      return
    }
    this.latencies.push(ms)
    const r = result.right
    if (typeof r === "object" && r !== null && "known" in r && r.known === false) this.unknown++
    else this.ok++
  }
  phase(attempted: number, ms: number, cpu: CpuUse, note: string): Phase {
    const s = sortNum(this.latencies)
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
      masterCpu: cpu.masterPct,
      benchCpu: cpu.benchPct,
      othersCpu: cpu.othersPct,
      masterMsPerOp: cpu.masterMs / Math.max(1, this.ok + this.unknown),
      note,
      firstError: this.firstError
    }
  }
}

const timed = <A, E>(rec: Recorder, eff: Effect.Effect<A, E>) =>
  Effect.suspend(() => {
    const t = performance.now()
    return Effect.either(eff).pipe(Effect.tap((r) => Effect.sync(() => rec.record(performance.now() - t, r))))
  })

const scale = (master: Master, n: number) =>
  Effect.gen(function* () {
    const clients = yield* controlClients(master, CLIENTS)
    const deadAddress = `127.0.0.1:${yield* Effect.promise(() => freePort())}`
    const names = Array.from({ length: n }, (_, i) => nodeName("sim", i))
    const client = (i: number): ControlClient => clients[i % clients.length]!
    const heartbeat = (i: number) => client(i).Heartbeat({ node: names[i]!, resources, services: [] })

    // --- register, bounded concurrency and time
    const reg = new Recorder()
    current = { label: "register", rec: reg }
    const registeredIdx: Array<number> = []
    const regCpu = cpuWindow(master.daemon.pid)
    const regStart = performance.now()
    const regDeadline = regStart + REGISTER_BUDGET_MS
    let attemptedReg = 0
    yield* Effect.forEach(
      names,
      (name, i) =>
        Effect.suspend(() => {
          if (performance.now() > regDeadline) return Effect.void
          attemptedReg++
          return timed(reg, client(i).Register({ info: { name, role: "worker", addresses: [deadAddress], arch: "x64", version: "bench" }, resources })).pipe(
            Effect.tap((r) => Effect.sync(() => Either.isRight(r) && registeredIdx.push(i)))
          )
        }),
      { concurrency: REGISTER_CONCURRENCY, discard: true }
    )
    const regMs = performance.now() - regStart
    const regPhase = reg.phase(attemptedReg, regMs, regCpu.end(), attemptedReg < n ? `stopped after the ${REGISTER_BUDGET_MS / 1000} s budget` : "")
    registeredIdx.sort((a, b) => a - b)
    const m = registeredIdx.length
    if (m === 0) return yield* Effect.die(new Error(`no agent registered (${reg.firstError}); master log tail:\n${master.tail()}`))

    // --- paced: each registered agent every AGENT_INTERVAL_MS, open loop, bounded in flight
    const offered = (m / AGENT_INTERVAL_MS) * 1000
    const total = Math.max(1, Math.floor((offered * PACED_WINDOW_MS) / 1000))
    const paced = new Recorder()
    current = { label: "paced", rec: paced }
    const lags: Array<number> = []
    // At most MAX_IN_FLIGHT heartbeats outstanding; one that falls due while all slots are busy
    // is skipped and counted (a backlog would only measure this process's queue).
    const inFlight = new Set<Fiber.RuntimeFiber<unknown>>()
    let skipped = 0
    const pacedCpu = cpuWindow(master.daemon.pid)
    const t0 = performance.now()
    let j = 0
    while (j < total) {
      const now = performance.now()
      while (j < total && t0 + (j * 1000) / offered <= now) {
        const scheduled = t0 + (j * 1000) / offered
        const idx = registeredIdx[j % m]!
        j++
        if (inFlight.size >= MAX_IN_FLIGHT) {
          skipped++
          continue
        }
        const fiber = yield* Effect.fork(Effect.suspend(() => {
          lags.push(performance.now() - scheduled)
          return timed(paced, heartbeat(idx))
        }))
        inFlight.add(fiber)
        fiber.addObserver(() => inFlight.delete(fiber))
      }
      yield* Effect.sleep("2 millis")
    }
    const scheduleEnd = performance.now()
    const drained = yield* Effect.timeout(Fiber.joinAll([...inFlight]), `${DRAIN_BUDGET_MS} millis`).pipe(Effect.either)
    const notes: Array<string> = []
    if (skipped > 0) notes.push(`${skipped} of ${total} due heartbeats skipped: ${MAX_IN_FLIGHT} already in flight`)
    if (Either.isLeft(drained)) {
      notes.push(`${inFlight.size} still in flight ${DRAIN_BUDGET_MS / 1000} s after the schedule ended; interrupted`)
      yield* Fiber.interruptAll([...inFlight])
    }
    const pacedNote = notes.join("; ")
    const pacedEnd = Math.max(paced.lastDone, scheduleEnd)
    const pacedCpuRes = pacedCpu.end()
    const pacedMs = pacedEnd - t0
    const rssAfterPaced = memory(master.daemon.pid).rssMiB
    const lagSorted = sortNum(lags)
    const pacedPhase = { ...paced.phase(total, pacedMs, pacedCpuRes, pacedNote), offered, lagP99: pct(lagSorted, 0.99) }

    // --- saturate: closed loop, bounded concurrency, fixed duration
    const sat = new Recorder()
    current = { label: "saturate", rec: sat }
    let next = 0
    const satCpu = cpuWindow(master.daemon.pid)
    const s0 = performance.now()
    const satEnd = s0 + SATURATE_MS
    let satAttempted = 0
    const worker = Effect.gen(function* () {
      while (performance.now() < satEnd) {
        const idx = registeredIdx[next++ % m]!
        satAttempted++
        yield* timed(sat, heartbeat(idx))
      }
    })
    yield* Effect.all(Array.from({ length: SATURATE_CONCURRENCY }, () => worker), { concurrency: "unbounded", discard: true })
    const satMs = performance.now() - s0
    const satPhase = sat.phase(satAttempted, satMs, satCpu.end(), `${SATURATE_CONCURRENCY} in flight`)
    const mem = memory(master.daemon.pid)

    return {
      n,
      registered: m,
      register: regPhase,
      paced: pacedPhase,
      saturate: satPhase,
      rssAfterPaced,
      rssAfterSaturate: mem.rssMiB,
      hwm: mem.hwmMiB,
      logLines: master.logLines()
    } satisfies ScaleResult
  }).pipe(Effect.scoped)

const printPhase = (label: string, p: Phase, extra = "") => {
  console.log(
    `  ${label.padEnd(9)} ${pad(String(p.ok), 6)} ok ${p.failed > 0 ? `${p.failed} failed ` : ""}${p.unknown > 0 ? `${p.unknown} unknown ` : ""}in ${f1(p.ms / 1000)} s` +
      ` -> ${f0(p.rate)}/s   rtt p50 ${f1(p.p50)} ms  p99 ${f1(p.p99)} ms  max ${f1(p.max)} ms` +
      `   master CPU ${f0(p.masterCpu)}% (${f1(p.masterMsPerOp)} ms/call)  bench CPU ${f0(p.benchCpu)}%  others ${f0(p.othersCpu)}%${extra}${p.note === "" ? "" : `   [${p.note}]`}`
  )
  if (p.firstError !== undefined) console.log(`            first error: ${p.firstError}`)
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

const detect = (master: Master) =>
  Effect.gen(function* () {
    const [control] = yield* controlClients(master, 1)
    const cli = yield* Transport.makeClient(MasterRpcs, {
      url: `https://127.0.0.1:${master.port}/master`,
      ca: master.ca,
      token: Redacted.make(master.fleet.operatorToken)
    })
    const deadAddress = `127.0.0.1:${yield* Effect.promise(() => freePort())}`
    const names = Array.from({ length: DETECT_K }, (_, i) => nodeName("quiet", i))
    yield* Effect.forEach(
      names,
      (name) => control!.Register({ info: { name, role: "worker", addresses: [deadAddress], arch: "x64", version: "bench" }, resources }),
      { concurrency: 8, discard: true }
    )

    const silentAt = new Map<string, number>()
    const unhealthyAt = new Map<string, number>()
    const suspectAt = new Map<string, number>()
    let hbFailures = 0
    const start = performance.now()
    // Agent i heartbeats at start + i*(1000/K) + k*1000 while that is before its stop time, so the
    // K agents go silent at moments spread over one interval.
    const agent = (i: number) =>
      Effect.gen(function* () {
        const phase = (i * 1000) / DETECT_K
        const stopAt = start + 4000 + phase
        for (let k = 0; ; k++) {
          const at = start + phase + k * 1000
          if (at > stopAt) break
          const wait = at - performance.now()
          if (wait > 0) yield* Effect.sleep(`${Math.round(wait)} millis`)
          const r = yield* Effect.either(control!.Heartbeat({ node: names[i]!, resources, services: [] }))
          if (Either.isLeft(r)) hbFailures++
          // Silence starts when the last heartbeat has been answered (the master handled it).
          silentAt.set(names[i]!, performance.now())
        }
      })

    let healthyBefore = 0
    const poller = Effect.gen(function* () {
      const limit = start + 4000 + 1000 + 20_000
      while (performance.now() < limit && unhealthyAt.size < DETECT_K) {
        const views = yield* Effect.either(cli.NodesList())
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
        yield* Effect.sleep("100 millis")
      }
    })

    const agents = Effect.all(names.map((_, i) => agent(i)), { concurrency: "unbounded", discard: true })
    yield* Effect.all([agents, poller], { concurrency: "unbounded", discard: true })
    return {
      k: DETECT_K,
      toUnhealthy: sortNum([...unhealthyAt.values()]),
      toSuspect: sortNum([...suspectAt.values()]),
      missed: names.filter((n) => !unhealthyAt.has(n)),
      healthyBefore,
      hbFailures
    } satisfies DetectResult
  }).pipe(Effect.scoped)

// ---------------------------------------------------------------------------------------------

const main = async () => {
  const started = performance.now()
  console.log(`bench/heartbeats${QUICK ? " --quick" : ""}: ${cpus().length} cores (${cpus()[0]?.model ?? "?"}), node ${process.version}`)
  console.log(
    `  scale: sizes ${SIZES.join(", ")}; master interval 10s, miss_threshold 100; ${CLIENTS} shared HTTPS clients (Transport.makeClient, as agents use);` +
      ` register ${REGISTER_CONCURRENCY} in flight (budget ${REGISTER_BUDGET_MS / 1000} s);` +
      ` paced window ${PACED_WINDOW_MS / 1000} s at N/10 per s (<= ${MAX_IN_FLIGHT} in flight); saturate ${SATURATE_MS / 1000} s at ${SATURATE_CONCURRENCY} in flight`
  )
  console.log(`  rtt = client-observed round trip; master CPU = utime+stime delta of the master pid over the window, % of one core; RSS read after the window`)
  console.log(`  bench CPU = this load generator; others = the rest of the machine (other processes, kernel) over the same window, % of one core`)

  const results: Array<ScaleResult> = []
  for (const n of SIZES) {
    const master = await startMaster(`n${n}`, { interval: "10s", missThreshold: 100, probeTimeout: "1s" })
    try {
      const idle = memory(master.daemon.pid)
      console.log(`\nN = ${n.toLocaleString("en-US")}  (master pid ${master.daemon.pid}, RSS at start ${f1(idle.rssMiB)} MiB)`)
      const stopProgress = progress(master.daemon.pid)
      const r = await Effect.runPromise(scale(master, n)).finally(stopProgress)
      results.push(r)
      printPhase("register", r.register, `   (${r.registered}/${n} registered)`)
      printPhase("paced", r.paced, `   offered ${f0(r.paced.offered)}/s, start lag p99 ${f1(r.paced.lagP99)} ms`)
      printPhase("saturate", r.saturate)
      console.log(`  master RSS after paced ${f1(r.rssAfterPaced)} MiB, after saturate ${f1(r.rssAfterSaturate)} MiB (peak ${f1(r.hwm)} MiB); ${r.logLines} log lines`)
      if (r.registered < n) console.log(`  NOTE: only ${r.registered} of ${n} agents registered within the budget; the heartbeat phases used those.`)
    } catch (e) {
      console.log(`  N = ${n} failed: ${e instanceof Error ? e.message : String(e)}\n  master log tail:\n${master.tail()}`)
    } finally {
      await master.close()
    }
  }

  console.log(`\nDetection: silence -> unhealthy (master interval 1s, miss_threshold 3, probe_timeout 1s; ${DETECT_K} agents at a closed port; NodesList polled every 100 ms)`)
  let detection: DetectResult | undefined
  const master = SKIP_DETECT ? undefined : await startMaster("detect", { interval: "1s", missThreshold: 3, probeTimeout: "1s" })
  if (master !== undefined) try {
    detection = await Effect.runPromise(detect(master))
    const u = detection.toUnhealthy
    const s = detection.toSuspect
    console.log(`  healthy while heartbeating: ${detection.healthyBefore}/${detection.k}; heartbeat failures ${detection.hbFailures}`)
    console.log(`  silence -> unhealthy (ms): n ${u.length}  min ${f0(u[0] ?? NaN)}  p50 ${f0(pct(u, 0.5))}  p90 ${f0(pct(u, 0.9))}  max ${f0(u[u.length - 1] ?? NaN)}`)
    console.log(`  silence -> suspect seen by a poll (ms): n ${s.length}${s.length === 0 ? "" : `  min ${f0(s[0]!)}  p50 ${f0(pct(s, 0.5))}  max ${f0(s[s.length - 1]!)}`}`)
    if (detection.missed.length > 0) console.log(`  never seen unhealthy: ${detection.missed.join(", ")}`)
    console.log(`  expected about 3 x 1 s + probe time (+ up to 100 ms poll granularity)`)
  } catch (e) {
    console.log(`  detection failed: ${e instanceof Error ? e.message : String(e)}\n  master log tail:\n${master.tail()}`)
  } finally {
    await master.close()
  }

  console.log(`\nSummary${QUICK ? " (--quick)" : ""}`)
  const header = ["N", "registered", "reg/s", "paced offered/s", "paced absorbed/s", "paced p50 ms", "paced p99 ms", "paced master CPU%", "sat absorbed/s", "sat p50 ms", "sat p99 ms", "sat master CPU%", "master ms/hb", "others CPU%", "RSS MiB"]
  const rows = results.map((r) => [
    r.n.toLocaleString("en-US"),
    String(r.registered),
    f0(r.register.rate),
    f0(r.paced.offered),
    f0(r.paced.rate),
    f1(r.paced.p50),
    f1(r.paced.p99),
    f0(r.paced.masterCpu),
    f0(r.saturate.rate),
    f1(r.saturate.p50),
    f1(r.saturate.p99),
    f0(r.saturate.masterCpu),
    f1(r.saturate.masterMsPerOp),
    f0(r.saturate.othersCpu),
    f1(r.rssAfterSaturate)
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
  console.log("  " + header.map((h, i) => pad(h, widths[i]!)).join(" | "))
  console.log("  " + widths.map((w) => "-".repeat(w)).join("-+-"))
  for (const row of rows) console.log("  " + row.map((c, i) => pad(c, widths[i]!)).join(" | "))
  if (detection !== undefined) {
    const u = detection.toUnhealthy
    console.log(`  silence -> unhealthy (1 s interval, threshold 3, K=${detection.k}): min ${f0(u[0] ?? NaN)} / p50 ${f0(pct(u, 0.5))} / p90 ${f0(pct(u, 0.9))} / max ${f0(u[u.length - 1] ?? NaN)} ms`)
  }
  console.log(`  master ms/hb = master CPU time per absorbed heartbeat in the saturate window; others CPU% = load on the machine not from master or bench (saturate window)`)
  console.log(`  total bench time ${f0((performance.now() - started) / 1000)} s`)
}

for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130))

await main()
