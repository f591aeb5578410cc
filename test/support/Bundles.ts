/**
 * Vitest global setup for the integration project: the tests there start the binaries
 * (packages/<pkg>/bin/), which run the bundles in dist/ when those were built after the last
 * change to any source and the TypeScript sources otherwise. So that these tests check the
 * programs as they ship, this builds dist/ first (`npm run build`, seconds) unless it is current.
 * MCP_FROM_SOURCE=1 runs them on the sources instead, as the binaries do.
 */
import { execFileSync } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const repo = fileURLToPath(new URL("../..", import.meta.url))

export default async function setup(): Promise<void> {
  if (process.env["MCP_FROM_SOURCE"] === "1") return
  const launch = (await import(pathToFileURL(join(repo, "scripts", "launch.mjs")).href)) as { bundleIsFresh: (name: string) => boolean }
  if (["mcp", "mcp-agent", "mcp-master"].every(launch.bundleIsFresh)) return
  console.log("integration tests: dist/ is missing or older than the sources; building it (npm run build)")
  execFileSync(process.execPath, [join(repo, "scripts", "build.mjs")], { stdio: "inherit" })
}
