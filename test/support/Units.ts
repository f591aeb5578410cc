/**
 * What the shipped systemd units (packaging/systemd) give their daemon besides the command line:
 * every `Environment=KEY=VALUE` line. The tests (LocalFleet) and bench/footprint.ts start the
 * daemons with the same environment, read from the files, so what they run and measure is the
 * daemon as installed, with one place to change it.
 */
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const repo = fileURLToPath(new URL("../..", import.meta.url))

export type DaemonUnit = "mcp-agent" | "mcp-master"

export const unitEnvironment = (unit: DaemonUnit): Record<string, string> => {
  const env: Record<string, string> = {}
  for (const line of readFileSync(join(repo, "packaging", "systemd", `${unit}.service`), "utf8").split("\n")) {
    const m = /^Environment=([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim())
    if (m !== null) env[m[1]!] = m[2]!.replace(/^"(.*)"$/, "$1")
  }
  return env
}

/**
 * The unit's Node flags as node command-line flags (for a daemon started as `node <bin>`): its
 * NODE_OPTIONS, and its MCP_NODE_FLAGS (those NODE_OPTIONS refuses, which the release's launcher
 * puts on Node's command line).
 */
export const unitNodeFlags = (unit: DaemonUnit): ReadonlyArray<string> => {
  const env = unitEnvironment(unit)
  return [env["NODE_OPTIONS"], env["MCP_NODE_FLAGS"]].flatMap((flags) => (flags ?? "").split(/\s+/)).filter((f) => f !== "")
}
