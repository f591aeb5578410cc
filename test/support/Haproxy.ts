/**
 * Test harness for the real HAProxy: a private directory with the agent-owned config (written by
 * HaproxyRoutes.ensureConfig), started in the foreground as master + worker and killed by pid.
 */
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import { mkdirSync } from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import * as HaproxyRoutes from "../../packages/agent/src/proxy/HaproxyRoutes.js"
import { layerPlatform } from "../../packages/agent/test/Platform.js"
import { type ManagedProcess, privateDir, removeDir, requireBinary, startManagedProcess } from "./ManagedProcess.js"

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

export interface HaproxySettings {
  readonly backendCaFile?: string
  /** Where listeners bind; default 127.0.0.1. */
  readonly bindAddress?: string
  /** Runs HAProxy under this command prefix, e.g. inside a network namespace (Netns.prefix). */
  readonly prefix?: ReadonlyArray<string>
  /**
   * Runs on the agent's (empty) proxy directory before anything is written to it, e.g. to mount
   * a small filesystem there. Whatever it mounts, the caller unmounts before `dispose`.
   */
  readonly prepareDir?: (dir: string) => Promise<void>
}

export const startHaproxy = async (settings: HaproxySettings = {}): Promise<HaproxyInstance> => {
  requireBinary("haproxy", "the proxy integration tests", "Fix: run: bash scripts/setup-peers.sh (as root)")
  const root = privateDir("haproxy")
  const options: HaproxyRoutes.Options = {
    dir: path.join(root, "proxy"),
    masterSocket: path.join(root, "master.sock"),
    statsSocket: path.join(root, "stats.sock"),
    // Abstract socket names are global to the network namespace: one prefix per instance.
    abnsPrefix: `mcp-test-${randomBytes(5).toString("hex")}`,
    bindAddress: settings.bindAddress ?? "127.0.0.1",
    ...(settings.backendCaFile === undefined ? {} : { backendCaFile: settings.backendCaFile })
  }

  // The directory outlives one process: `stop` and `start` restart HAProxy on the same config.
  let running: ManagedProcess | undefined

  const stop = async (): Promise<void> => {
    const current = running
    running = undefined
    await current?.stop()
  }

  const start = async (): Promise<void> => {
    if (running !== undefined) throw new Error("HAProxy is already running")
    const [file, ...args] = [...(settings.prefix ?? []), ...HaproxyRoutes.haproxyCommand(options)]
    running = await startManagedProcess({
      name: "haproxy",
      command: file!,
      args,
      ready: { awaiting: `its runtime API on ${options.statsSocket} to answer "show info"`, check: () => answers(options.statsSocket), intervalMs: 20 }
    })
  }

  const dispose = async (): Promise<void> => {
    await stop()
    removeDir(root)
  }

  try {
    if (settings.prepareDir !== undefined) {
      mkdirSync(options.dir, { mode: 0o700 })
      await settings.prepareDir(options.dir)
    }
    await Effect.runPromise(HaproxyRoutes.ensureConfig(options).pipe(Effect.provide(layerPlatform)))
    await start()
  } catch (e) {
    try {
      removeDir(root)
    } catch (removal) {
      // A mount prepareDir made is still there (its caller unmounts it): the start's error matters more.
      console.warn(`HAProxy harness: could not remove ${root}: ${String(removal)}`)
    }
    throw e
  }
  return { options, pid: () => running?.pid ?? -1, stop, start, dispose }
}

/** A HAProxy for the current scope. */
export const scopedHaproxy = (settings: HaproxySettings = {}) =>
  Effect.acquireRelease(Effect.promise(() => startHaproxy(settings)), (h) => Effect.promise(() => h.dispose()))
