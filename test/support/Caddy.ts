/**
 * Test harness for the real Caddy: `caddy run` in the foreground with its admin API on a free
 * 127.0.0.1 port and its config/data in a private directory, killed by pid.
 */
import { Effect } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"

export interface CaddyInstance {
  readonly adminUrl: string
  readonly pid: number
  /** Stops Caddy and deletes its directory. */
  readonly dispose: () => Promise<void>
}

const ensureCaddy = (): void => {
  const probe = spawnSync("caddy", ["version"], { encoding: "utf8" })
  if (probe.error !== undefined || probe.status !== 0) {
    throw new Error("caddy is not installed (needed for the proxy integration tests). Fix: run: bash scripts/setup-peers.sh (as root)")
  }
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const answers = async (adminUrl: string): Promise<boolean> => {
  try {
    const res = await fetch(`${adminUrl}/config/`, { signal: AbortSignal.timeout(1000) })
    await res.text()
    return res.status === 200
  } catch {
    return false
  }
}

const exited = (child: ChildProcess, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true)
    const timer = setTimeout(() => resolve(false), ms)
    child.once("exit", () => {
      clearTimeout(timer)
      resolve(true)
    })
  })

export const startCaddy = async (): Promise<CaddyInstance> => {
  ensureCaddy()
  const dir = mkdtempSync(path.join(tmpdir(), "mcp-caddy-"))
  const adminPort = await freePort()
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const configFile = path.join(dir, "initial.json")
  writeFileSync(configFile, JSON.stringify({ admin: { listen: `127.0.0.1:${adminPort}` } }))
  const child = spawn("caddy", ["run", "--config", configFile], {
    stdio: ["ignore", "pipe", "pipe"],
    // Caddy keeps its autosave, certificates and locks under these; never the machine's own.
    env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, "config"), XDG_DATA_HOME: path.join(dir, "data") }
  })
  let output = ""
  child.stdout?.on("data", (b: Buffer) => (output = (output + b.toString()).slice(-20_000)))
  child.stderr?.on("data", (b: Buffer) => (output = (output + b.toString()).slice(-20_000)))
  const spawnError = new Promise<Error>((resolve) => child.once("error", resolve))

  const dispose = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM")
      if (!(await exited(child, 5000))) {
        child.kill("SIGKILL")
        await exited(child, 5000)
      }
    }
    rmSync(dir, { recursive: true, force: true })
  }

  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    const failed = await Promise.race([spawnError, new Promise<undefined>((r) => setTimeout(() => r(undefined), 0))])
    if (failed !== undefined) {
      await dispose()
      throw new Error(`could not spawn caddy: ${failed.message}`)
    }
    if (child.exitCode !== null || child.signalCode !== null) {
      await dispose()
      throw new Error(`caddy exited (${child.exitCode ?? child.signalCode}) before its admin API answered on ${adminUrl}:\n${output}`)
    }
    if (await answers(adminUrl)) return { adminUrl, pid: child.pid ?? -1, dispose }
    await new Promise((r) => setTimeout(r, 50))
  }
  await dispose()
  throw new Error(`caddy's admin API did not answer on ${adminUrl} within 15 s; its output:\n${output}`)
}

/** A Caddy for the current scope. */
export const scopedCaddy = Effect.acquireRelease(Effect.promise(() => startCaddy()), (c) => Effect.promise(() => c.dispose()))
