/**
 * One way for the test harnesses to run a real server as a child process: check the binary is
 * installed, find free 127.0.0.1 ports, give it a private directory under the run's TMPDIR, keep
 * the tail of its output, wait until it answers, and stop it by its pid. Every harness (Caddy,
 * HAProxy, Knot, PowerDNS, pebble, Podman, our own daemons) goes through here, so a failed start
 * always says the same things: the command, what was awaited, and what the server printed.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as dgram from "node:dgram"
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { recordChild } from "./Reaper.js"

// ---------------------------------------------------------------------------------------------
// Preconditions: binaries, ports, directories

/**
 * The absolute path of `binary`, or an error naming what needs it and how to install it. Looks in
 * /usr/sbin too: daemons live there and a non-root PATH often lacks it.
 */
export const requireBinary = (binary: string, neededFor: string, fix: string): string => {
  for (const dir of (process.env["PATH"] ?? "").split(":").concat(["/usr/sbin", "/usr/bin"])) {
    if (dir === "") continue
    const candidate = path.join(dir, binary)
    try {
      accessSync(candidate, constants.X_OK)
      if (statSync(candidate).isFile()) return candidate
    } catch {
      // not here
    }
  }
  throw new Error(`${binary} is not installed (needed for ${neededFor}). ${fix}`)
}

const bindsTcp = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = net.createServer()
    s.once("error", () => resolve(false))
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)))
  })

/**
 * The lowest port the kernel gives outgoing connections (Linux's ip_local_port_range, 32768 by
 * default): a port under it is never taken by a connection's own end.
 */
const ephemeralLow = (): number => {
  try {
    const low = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0])
    return Number.isInteger(low) ? low : 32768
  } catch {
    return 32768
  }
}
const FIRST_CHOSEN_PORT = 10_000
/** Ports this process handed out: each is free until its daemon binds it, so it is not drawn twice. */
const handedOut = new Set<number>()

/**
 * A free TCP port on 127.0.0.1, bound, then released for a daemon to bind: a race the tests
 * accept, made small. It is drawn under the ports the kernel gives outgoing connections: one the
 * kernel picked (listen on 0) is from the range it also gives the thousands of connections a run
 * opens, and any of them may take it before the daemon binds it (a fresh-clone run once failed
 * with EADDRINUSE in Dashboard.test.ts).
 */
export const freeTcpPort = async (): Promise<number> => {
  const low = ephemeralLow()
  if (low - FIRST_CHOSEN_PORT >= 1_000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = FIRST_CHOSEN_PORT + Math.floor(Math.random() * (low - FIRST_CHOSEN_PORT))
      if (handedOut.has(port) || !(await bindsTcp(port))) continue
      handedOut.add(port)
      return port
    }
  }
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as net.AddressInfo).port
      server.close(() => resolve(port))
    })
  })
}

const bindsUdp = (port: number): Promise<number | undefined> =>
  new Promise((resolve) => {
    const s = dgram.createSocket("udp4")
    s.once("error", () => {
      s.close()
      resolve(undefined)
    })
    s.bind(port, "127.0.0.1", () => {
      const bound = s.address().port
      s.close(() => resolve(bound))
    })
  })

/** A port free on 127.0.0.1 for both UDP and TCP (a DNS server listens on both). */
export const freeDnsPort = async (): Promise<number> => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await bindsUdp(0)
    if (port !== undefined && (await bindsTcp(port))) return port
  }
  throw new Error("no port on 127.0.0.1 is free for both UDP and TCP")
}

/**
 * A new directory under tmpdir(): TempRoot.ts makes that the run's own TMPDIR, so whatever a
 * killed test leaves behind is still removed at the end of the run.
 */
export const privateDir = (label: string): string => mkdtempSync(path.join(tmpdir(), `mcp-${label}-`))

export const removeDir = (dir: string): void => rmSync(dir, { recursive: true, force: true })

// ---------------------------------------------------------------------------------------------
// Orphan protection

/** Running children: their directory, and how to drop their record in the run's reap directory. */
const live = new Map<ChildProcess, { readonly dir: string | undefined; readonly forget: () => void }>()
let exitHookInstalled = false
let signalsLeftToCaller = false

/**
 * For a program (the quick start) that stops its children itself on SIGINT and SIGTERM, gracefully
 * (an agent then stops the proxy it runs): the signals no longer SIGKILL them here. Whatever still
 * runs when the process exits is SIGKILLed as before.
 */
export const leaveSignalsToCaller = (): void => {
  signalsLeftToCaller = true
}

/** SIGKILLs every child still running, by pid, and removes its directory; synchronous. */
const killLive = (): void => {
  for (const [child, { dir, forget }] of live) {
    try {
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL")
    } catch {
      // already gone
    }
    try {
      if (dir !== undefined) removeDir(dir)
      forget()
    } catch {
      // the run's teardown (TempRoot.ts) tries again
    }
  }
  live.clear()
}

/**
 * On any exit of the test process (process.exit, an uncaught error, a failed test file's worker
 * ending) SIGKILL every child still running and remove its directory: "exit" handlers must be
 * synchronous, so there is no grace period. SIGINT, SIGTERM and SIGHUP (Ctrl-C; tinypool stops a
 * vitest worker with SIGTERM) end a process without "exit" handlers: do the same, then die of the
 * signal as before (vitest workers turn process.exit into an error, so re-raise it instead).
 */
const installExitHook = (): void => {
  if (exitHookInstalled) return
  exitHookInstalled = true
  // First: a later "exit" listener that calls process.exit() again would skip the rest.
  process.prependListener("exit", killLive)
  const dieOf = (sig: NodeJS.Signals) => {
    const handler = () => {
      if (signalsLeftToCaller) return
      killLive()
      process.off(sig, handler)
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig)
    }
    return handler
  }
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) process.prependListener(sig, dieOf(sig))
  // A vitest worker whose vitest has gone (killed) is left waiting for work: stop with it.
  if (process.connected) {
    process.once("disconnect", () => {
      killLive()
      process.kill(process.pid, "SIGTERM")
    })
  }
}

/**
 * A test worker killed by a signal runs no "exit" handler. A detached shell polls this process
 * and, once it is gone, SIGKILLs the child's pid if that is still alive; it ends by itself
 * when the child does, and is killed (by its own pid) when the child is stopped.
 */
const watchdog = (childPid: number): ChildProcess => {
  const guard = spawn(
    "sh",
    ["-c", 'while kill -0 "$1" 2>/dev/null && kill -0 "$2" 2>/dev/null; do sleep 1; done; kill -0 "$1" 2>/dev/null || kill -9 "$2" 2>/dev/null', "mcp-watchdog", String(process.pid), String(childPid)],
    { detached: true, stdio: "ignore" }
  )
  // No sh: the exit hook still covers a normal exit, so say so and go on.
  guard.on("error", (e) => console.warn(`managed process: no watchdog for pid ${childPid} (${e.message}); only a normal exit of the test worker stops it`))
  guard.unref()
  return guard
}

// ---------------------------------------------------------------------------------------------
// The managed process

/** What "the server answers" means for one server. */
export type Readiness =
  | {
      /** For the error message, e.g. "GET http://127.0.0.1:1234/config/ to answer 200". */
      readonly awaiting: string
      /** Polled until it resolves true; should time out on its own (about 1 s). */
      readonly check: () => Promise<boolean>
      /** Pause between checks; default 50 ms. */
      readonly intervalMs?: number
    }
  | {
      readonly awaiting: string
      /** Ready once the output so far matches (for daemons that log "listening on"). */
      readonly output: RegExp
    }

export interface ManagedProcessOptions {
  /** How messages name it, e.g. "caddy" or "knotd (127.0.0.1:5300)". */
  readonly name: string
  readonly command: string
  readonly args?: ReadonlyArray<string>
  /** The whole environment; default this process's. */
  readonly env?: NodeJS.ProcessEnv
  readonly ready: Readiness
  /** How long to wait for `ready`; default 15 s. */
  readonly timeoutMs?: number
  /** Between SIGTERM and SIGKILL when stopping; default 5 s. */
  readonly graceMs?: number
  /** How much output to keep, in characters; default 20 000. Infinity keeps all of it. */
  readonly tailChars?: number
  /** A directory the process owns: removed by `dispose`, after the process has exited. */
  readonly dir?: string
}

export interface ManagedProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** The kept tail of stdout and stderr, interleaved as they arrived. */
  readonly output: () => string
  readonly running: () => boolean
  /** Resolves when the process has exited (at once if it already has). */
  readonly exited: Promise<void>
  /** Sends `signal` to the pid if the process is still running. */
  readonly signal: (signal: NodeJS.Signals) => void
  /** SIGTERM, SIGKILL after the grace period; resolves when it has exited. Safe to call again. */
  readonly stop: () => Promise<void>
  /** `stop`, then removes `dir`. Idempotent: later calls return the first call's promise. */
  readonly dispose: () => Promise<void>
}

/** Why a start failed, with everything needed to tell without rerunning. */
export class ManagedProcessError extends Error {
  constructor(
    readonly processName: string,
    readonly commandLine: string,
    readonly awaiting: string,
    readonly problem: string,
    readonly outputTail: string
  ) {
    super(
      `${processName} did not start: ${problem}\n` +
        `  awaiting: ${awaiting}\n` +
        `  command: ${commandLine}\n` +
        `  its output (tail):\n${outputTail.length === 0 ? "(none)" : outputTail}`
    )
    this.name = "ManagedProcessError"
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, "'\\''")}'`)

/**
 * Spawns the command and resolves once `ready` holds. If it cannot be spawned, exits first or is
 * not ready in time, it is stopped, its `dir` removed, and a ManagedProcessError thrown.
 */
export const startManagedProcess = async (options: ManagedProcessOptions): Promise<ManagedProcess> => {
  const args = options.args ?? []
  const commandLine = [options.command, ...args].map(quote).join(" ")
  const tailChars = options.tailChars ?? 20_000
  const graceMs = options.graceMs ?? 5000
  const timeoutMs = options.timeoutMs ?? 15_000
  const { awaiting } = options.ready

  const child = spawn(options.command, [...args], { env: options.env ?? process.env, stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  let outputChanged: () => void = () => {}
  const collect = (chunk: Buffer) => {
    output = output + chunk.toString("utf8")
    if (output.length > tailChars) output = output.slice(-tailChars)
    outputChanged()
  }
  child.stdout!.on("data", collect)
  child.stderr!.on("data", collect)

  const running = () => child.pid !== undefined && child.exitCode === null && child.signalCode === null
  // "exit", not "close": a grandchild holding the pipes open must not keep stop() waiting.
  const exited = new Promise<void>((resolve) => {
    child.once("exit", () => resolve())
    child.once("error", () => {
      if (child.pid === undefined) resolve() // never started, so no "exit" will come
    })
  })
  // "close" comes once the pipes are drained: the complete output, for an error message.
  const drained = new Promise<void>((resolve) => child.once("close", () => resolve()))
  const spawned = await new Promise<Error | undefined>((resolve) => {
    child.once("spawn", () => resolve(undefined))
    child.once("error", (e) => resolve(e))
  })
  const fail = (problem: string) => new ManagedProcessError(options.name, commandLine, awaiting, problem, output)
  if (spawned !== undefined) {
    if (options.dir !== undefined) removeDir(options.dir)
    throw fail(`could not spawn it: ${spawned.message}`)
  }
  const pid = child.pid!
  // Only a failed kill could emit "error" now; unhandled it would crash the test worker. The
  // process then shows as still running, and the warning says why.
  child.on("error", (e) => console.warn(`managed process ${options.name} (pid ${pid}): ${e.message}`))

  installExitHook()
  live.set(child, { dir: options.dir, forget: recordChild({ pid, name: options.name, dir: options.dir }) })
  const guard = watchdog(pid)
  void exited.then(() => {
    live.get(child)?.forget()
    live.delete(child)
    // By pid, and only the guard we started; it may well have ended already.
    if (guard.exitCode === null && guard.signalCode === null) guard.kill("SIGKILL")
  })

  const signal = (sig: NodeJS.Signals) => {
    if (running()) child.kill(sig) // ChildProcess.kill signals child.pid, never a name
  }
  const stop = async (): Promise<void> => {
    if (!running()) return exited
    signal("SIGTERM")
    if (await Promise.race([exited.then(() => true), sleep(graceMs).then(() => false)])) return
    signal("SIGKILL")
    await exited
  }
  let disposed: Promise<void> | undefined
  const dispose = () =>
    (disposed ??= stop().then(() => {
      if (options.dir !== undefined) removeDir(options.dir)
    }))

  const exitProblem = () =>
    `it exited (${child.exitCode !== null ? `code ${child.exitCode}` : `signal ${child.signalCode}`}) before it was ready`
  const deadline = Date.now() + timeoutMs
  let problem: string | undefined
  const { ready } = options
  if ("check" in ready) {
    for (;;) {
      if (!running()) {
        problem = exitProblem()
        break
      }
      if (await ready.check()) break
      if (Date.now() >= deadline) {
        problem = `not ready within ${timeoutMs} ms`
        break
      }
      await sleep(ready.intervalMs ?? 50)
    }
  } else {
    const outcome = await new Promise<"ready" | "exited" | "timeout">((resolve) => {
      const timer = setTimeout(() => resolve("timeout"), timeoutMs)
      const settle = (o: "ready" | "exited" | "timeout") => {
        clearTimeout(timer)
        outputChanged = () => {}
        resolve(o)
      }
      outputChanged = () => {
        if (ready.output.test(output)) settle("ready")
      }
      outputChanged()
      void exited.then(() => settle("exited"))
    })
    if (outcome === "exited") problem = exitProblem()
    if (outcome === "timeout") problem = `not ready within ${timeoutMs} ms`
  }
  if (problem !== undefined) {
    await dispose()
    await Promise.race([drained, sleep(1000)])
    throw fail(problem)
  }

  return { child, pid, output: () => output, running, exited, signal, stop, dispose }
}
