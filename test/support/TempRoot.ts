/**
 * Vitest global setup for every project: one temporary directory per test run, made the TMPDIR
 * of the test workers and of every process they start (daemons, Podman, proxies), and removed
 * when the run ends, whether its tests passed, failed or were interrupted. Tests still remove
 * what they make; this catches what a failing test or a killed peer leaves behind, so a run
 * leaves nothing in /tmp.
 *
 * Every project's setup runs in the one vitest process: the first makes the directory and the
 * others reuse it (nesting one per project would push socket paths past the 108-byte limit of
 * unix sockets, and HAProxy's 97). A run that is killed cannot clean up, so each directory names
 * the process that owns it, and the next run removes those whose owner is gone.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const MARK = "MCP_TEST_RUN_TMPDIR"
const PREFIX = "mcp-run-"
const OWNER = "owner.pid"

const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** Removes the run directories of earlier runs that were killed before their teardown. */
const sweepKilledRuns = (base: string) => {
  for (const name of readdirSync(base)) {
    if (!name.startsWith(PREFIX)) continue
    const dir = join(base, name)
    let owner: number
    try {
      owner = Number(readFileSync(join(dir, OWNER), "utf8"))
    } catch {
      continue // not ours, or still being made
    }
    if (Number.isInteger(owner) && owner > 0 && !alive(owner)) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
      } catch (e) {
        console.warn(`could not remove ${dir}, left by a killed test run: ${e instanceof Error ? e.message : String(e)}`)
      }
    }
  }
}

export default function setup(): () => void {
  if (process.env[MARK] !== undefined) return () => {}
  const previous = process.env["TMPDIR"]
  const base = tmpdir()
  sweepKilledRuns(base)
  const root = mkdtempSync(join(base, PREFIX))
  writeFileSync(join(root, OWNER), String(process.pid))
  process.env["TMPDIR"] = root
  process.env[MARK] = root
  return () => {
    if (previous === undefined) delete process.env["TMPDIR"]
    else process.env["TMPDIR"] = previous
    delete process.env[MARK]
    try {
      rmSync(root, { recursive: true, force: true, maxRetries: 3 })
    } catch (e) {
      // Say it rather than fail the run: the tests' verdict stands, the leftover is named.
      console.warn(`could not remove the test run's temporary directory ${root}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
}
