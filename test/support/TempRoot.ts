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
 *
 * Peers the workers start are recorded in the directory (Reaper.ts): the teardown, an "exit" hook
 * (vitest ends the process at once on SIGINT/SIGTERM, skipping the teardown) and the next run's
 * sweep SIGKILL, by pid, those a crashed or killed worker left running, then remove the directory.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { constants, tmpdir } from "node:os"
import { join } from "node:path"
import { reapRun, RUN_ROOT_ENV } from "./Reaper.js"

const MARK = RUN_ROOT_ENV
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
      for (const k of reapRun(dir)) console.warn(`killed ${k}, left running by a killed test run`)
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
  let done = false
  const finish = () => {
    if (done) return
    done = true
    for (const k of reapRun(root)) console.warn(`killed ${k}: still running at the end of the test run`)
    try {
      rmSync(root, { recursive: true, force: true, maxRetries: 3 })
    } catch (e) {
      // Say it rather than fail the run: the tests' verdict stands, the leftover is named.
      console.warn(`could not remove the test run's temporary directory ${root}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  // Interrupted (SIGINT, SIGTERM, SIGHUP), vitest exits without its teardown, and its own "exit"
  // listener calls process.exit() again, which skips the listeners after it: so go first.
  process.prependOnceListener("exit", finish)
  const onSignal = (sig: "SIGINT" | "SIGTERM" | "SIGHUP") => () => {
    finish()
    process.exitCode ??= 128 + constants.signals[sig]
    process.exit()
  }
  const signals = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((sig) => [sig, onSignal(sig)] as const)
  for (const [sig, handler] of signals) process.prependOnceListener(sig, handler)
  return () => {
    for (const [sig, handler] of signals) process.off(sig, handler)
    if (previous === undefined) delete process.env["TMPDIR"]
    else process.env["TMPDIR"] = previous
    delete process.env[MARK]
    process.off("exit", finish)
    finish()
  }
}
