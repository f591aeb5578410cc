/**
 * What packages/<pkg>/bin/<name>.js run: the bundle dist/<name>.mjs when `npm run build` made
 * one, else (or with MCP_FROM_SOURCE=1) the TypeScript sources through tsx. The bundle has its
 * version, commit and protocol baked in; for the sources they are computed here, on demand.
 * A bundle older than any source file is not run: the sources are, with a warning to rebuild.
 */
import { existsSync, readdirSync, statSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"

const repo = fileURLToPath(new URL("..", import.meta.url))

/** The newest modification time of a file under `dir` (0 when there is none). */
const newest = (dir) => {
  let latest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs)
  }
  return latest
}

/**
 * Whether a source was edited after the bundle was built: then running the bundle would run old
 * code behind the developer's back, so the sources run instead (an installed release has none).
 */
const stale = (buildStamp) => {
  const packages = join(repo, "packages")
  if (!existsSync(packages)) return false
  const built = statSync(buildStamp).mtimeMs
  return readdirSync(packages).some((pkg) => {
    const src = join(packages, pkg, "src")
    return existsSync(src) && newest(src) > built
  })
}

/** Whether dist/ holds the bundle `name` built after the last edit of any source. */
export const bundleIsFresh = (name) => {
  const stamp = join(repo, "dist", "BUILD")
  return existsSync(join(repo, "dist", `${name}.mjs`)) && existsSync(stamp) && !stale(stamp)
}

export const launch = async (name, sourceMain) => {
  const bundle = join(repo, "dist", `${name}.mjs`)
  const fresh = bundleIsFresh(name)
  if (existsSync(bundle) && !fresh && process.env.MCP_FROM_SOURCE !== "1") {
    process.stderr.write(`${name}: dist/ is older than the sources; running the sources (npm run build refreshes it)\n`)
  }
  if (process.env.MCP_FROM_SOURCE !== "1" && fresh) {
    await import(pathToFileURL(bundle).href)
    return
  }
  const { buildInfo } = await import("./build-info.mjs")
  globalThis.__mcpBuildInfo = buildInfo
  const { register } = await import("tsx/esm/api")
  register()
  await import(sourceMain.href)
}
