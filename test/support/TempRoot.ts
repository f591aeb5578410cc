/**
 * Vitest global setup for every project: one temporary directory per test run, made the TMPDIR
 * of the test workers and of every process they start (daemons, Podman, proxies), and removed
 * when the run ends, whether its tests passed, failed or were interrupted. Tests still remove
 * what they make; this catches what a failing test or a killed peer leaves behind, so a run
 * leaves nothing in /tmp.
 *
 * Every project's setup runs in the one vitest process: the first makes the directory and the
 * others reuse it (nesting one per project would push socket paths past the 108-byte limit of
 * unix sockets, and HAProxy's 97).
 */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

const MARK = "MCP_TEST_RUN_TMPDIR"

export default function setup(): () => void {
  if (process.env[MARK] !== undefined) return () => {}
  const previous = process.env["TMPDIR"]
  const root = mkdtempSync(join(tmpdir(), "mcp-run-"))
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
