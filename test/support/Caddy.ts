/**
 * Test harness for the real Caddy: `caddy run` in the foreground with its admin API on a free
 * 127.0.0.1 port and its config/data in a private directory, killed by pid.
 */
import { Effect } from "effect"
import { writeFileSync } from "node:fs"
import * as path from "node:path"
import { freeTcpPort, privateDir, requireBinary, startManagedProcess } from "./ManagedProcess.js"

export interface CaddyInstance {
  readonly adminUrl: string
  readonly pid: number
  /** Stops Caddy and deletes its directory. */
  readonly dispose: () => Promise<void>
}

const answers = async (adminUrl: string): Promise<boolean> => {
  try {
    const res = await fetch(`${adminUrl}/config/`, { signal: AbortSignal.timeout(1000) })
    await res.text()
    return res.status === 200
  } catch {
    return false
  }
}

export const startCaddy = async (): Promise<CaddyInstance> => {
  const caddy = requireBinary("caddy", "the proxy integration tests", "Fix: run: bash scripts/setup-peers.sh (as root)")
  const adminPort = await freeTcpPort()
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const dir = privateDir("caddy")
  const configFile = path.join(dir, "initial.json")
  writeFileSync(configFile, JSON.stringify({ admin: { listen: `127.0.0.1:${adminPort}` } }))
  const caddyProcess = await startManagedProcess({
    name: "caddy",
    command: caddy,
    args: ["run", "--config", configFile],
    // Caddy keeps its autosave, certificates and locks under these; never the machine's own.
    env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: path.join(dir, "config"), XDG_DATA_HOME: path.join(dir, "data") },
    dir,
    ready: { awaiting: `its admin API to answer GET ${adminUrl}/config/ with 200`, check: () => answers(adminUrl) }
  })
  return { adminUrl, pid: caddyProcess.pid, dispose: caddyProcess.dispose }
}

/** A Caddy for the current scope. */
export const scopedCaddy = Effect.acquireRelease(Effect.promise(() => startCaddy()), (c) => Effect.promise(() => c.dispose()))
