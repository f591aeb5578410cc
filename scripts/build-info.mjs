/**
 * What `mcp version` and `--version` print: the version (package.json), the git commit
 * ("unknown" outside a checkout; "-dirty" with uncommitted changes to tracked files) and the
 * protocol version (PROTOCOL_VERSION in packages/rpc/src/Protocol.ts). scripts/build.mjs bakes
 * these into the bundles; the bins compute them when they run the sources.
 */
import { execFileSync } from "node:child_process"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export const repo = fileURLToPath(new URL("..", import.meta.url))

const git = (args) => execFileSync("git", args, { cwd: repo, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 5000 }).trim()

export const buildInfo = () => {
  // MCP_BUILD_VERSION labels a build with another version than package.json's (a pre-release,
  // a test's second build); it must be a plain version string.
  const label = process.env["MCP_BUILD_VERSION"]
  if (label !== undefined && !/^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$/.test(label)) throw new Error(`MCP_BUILD_VERSION=${label} is not a version like 1.2.3 or 1.2.3-rc.1`)
  const version = label ?? JSON.parse(readFileSync(join(repo, "package.json"), "utf8")).version
  let commit = "unknown"
  try {
    commit = git(["rev-parse", "--short=12", "HEAD"])
    if (git(["status", "--porcelain", "--untracked-files=no"]) !== "") commit += "-dirty"
  } catch {
    // not a git checkout (a tarball), or no git: "unknown"
  }
  const match = /export const PROTOCOL_VERSION\s*=\s*(\d+)/.exec(readFileSync(join(repo, "packages/rpc/src/Protocol.ts"), "utf8"))
  if (match === null) throw new Error("cannot find PROTOCOL_VERSION in packages/rpc/src/Protocol.ts")
  return { version, commit, protocol: Number(match[1]) }
}
