/**
 * Test harness for the real HAProxy: a private directory with the agent-owned config (written by
 * HaproxyRoutes.ensureConfig), started in the foreground as master + worker and killed by pid.
 */
import { Effect } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import * as HaproxyRoutes from "../../packages/agent/src/proxy/HaproxyRoutes.js"

export interface HaproxyInstance {
  /** What the agent would pass to HaproxyRoutes.make; listeners bind 127.0.0.1. */
  readonly options: HaproxyRoutes.Options
  readonly pid: () => number
  /** Kills the running HAProxy (its pid) and waits for it to exit. */
  readonly stop: () => Promise<void>
  /** Starts HAProxy again from the same directory (after `stop`). */
  readonly start: () => Promise<void>
  /** Stops it and deletes its directory. */
  readonly dispose: () => Promise<void>
}

const ensureHaproxy = (): void => {
  const probe = spawnSync("haproxy", ["-v"], { encoding: "utf8" })
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error(
      "haproxy is not installed (needed for the proxy integration tests). Fix: run: bash scripts/setup-peers.sh (as root)"
    )
  }
}

/** True when the runtime API answers `show info`. */
const answers = (socketPath: string): Promise<boolean> =>
  new Promise((resolve) => {
    const socket = net.createConnection({ path: socketPath })
    let out = ""
    socket.setTimeout(1000, () => socket.destroy())
    socket.on("connect", () => socket.write("show info\n"))
    socket.on("data", (b: Buffer) => (out += b.toString()))
    socket.on("error", () => resolve(false))
    socket.on("close", () => resolve(/^Pid:/m.test(out)))
  })

const exited = (child: ChildProcess, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true)
    const timer = setTimeout(() => resolve(false), ms)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

export interface HaproxySettings {
  readonly backendCaFile?: string
  /** Where listeners bind; default 127.0.0.1. */
  readonly bindAddress?: string
  /** Runs HAProxy under this command prefix, e.g. inside a network namespace (Netns.prefix). */
  readonly prefix?: ReadonlyArray<string>
}

export const startHaproxy = async (settings: HaproxySettings = {}): Promise<HaproxyInstance> => {
  ensureHaproxy()
  const root = mkdtempSync(path.join(tmpdir(), "mcp-haproxy-"))
  const options: HaproxyRoutes.Options = {
    dir: path.join(root, "proxy"),
    masterSocket: path.join(root, "master.sock"),
    statsSocket: path.join(root, "stats.sock"),
    // Abstract socket names are global to the network namespace: one prefix per instance.
    abnsPrefix: `mcp-test-${randomBytes(5).toString("hex")}`,
    bindAddress: settings.bindAddress ?? "127.0.0.1",
    ...(settings.backendCaFile === undefined ? {} : { backendCaFile: settings.backendCaFile })
  }
  await Effect.runPromise(HaproxyRoutes.ensureConfig(options))

  let child: ChildProcess | undefined
  let output = ""

  const stop = async (): Promise<void> => {
    const running = child
    child = undefined
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return
    running.kill("SIGTERM")
    if (!(await exited(running, 5000))) {
      running.kill("SIGKILL")
      await exited(running, 5000)
    }
  }

  const start = async (): Promise<void> => {
    if (child !== undefined) throw new Error("HAProxy is already running")
    const [file, ...args] = [...(settings.prefix ?? []), ...HaproxyRoutes.haproxyCommand(options)]
    output = ""
    const started = spawn(file!, args, { stdio: ["ignore", "pipe", "pipe"] })
    child = started
    started.stdout?.on("data", (b: Buffer) => (output = (output + b.toString()).slice(-20_000)))
    started.stderr?.on("data", (b: Buffer) => (output = (output + b.toString()).slice(-20_000)))
    const spawnError = new Promise<Error>((resolve) => started.once("error", resolve))
    const deadline = Date.now() + 15_000
    while (Date.now() < deadline) {
      const failed = await Promise.race([spawnError, new Promise<undefined>((r) => setTimeout(() => r(undefined), 0))])
      if (failed !== undefined) {
        await stop()
        throw new Error(`could not spawn haproxy: ${failed.message}`)
      }
      if (started.exitCode !== null || started.signalCode !== null) {
        child = undefined
        throw new Error(`haproxy exited (${started.exitCode ?? started.signalCode}) before answering on ${options.statsSocket}:\n${output}`)
      }
      if (await answers(options.statsSocket)) return
      await new Promise((r) => setTimeout(r, 20))
    }
    await stop()
    throw new Error(`haproxy did not answer on ${options.statsSocket} within 15 s; its output:\n${output}`)
  }

  const dispose = async (): Promise<void> => {
    await stop()
    rmSync(root, { recursive: true, force: true })
  }

  try {
    await start()
  } catch (e) {
    rmSync(root, { recursive: true, force: true })
    throw e
  }
  return { options, pid: () => child?.pid ?? -1, stop, start, dispose }
}

/** A HAProxy for the current scope. */
export const scopedHaproxy = (settings: HaproxySettings = {}) =>
  Effect.acquireRelease(Effect.promise(() => startHaproxy(settings)), (h) => Effect.promise(() => h.dispose()))
