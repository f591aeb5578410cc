// A failed or interrupted test run leaves no peers behind: a process that started peers through
// the harness (ManagedProcess, Podman) and then throws, gets SIGTERM/SIGINT/SIGHUP or SIGKILL,
// and a child vitest run whose test fails, whose worker is killed or crashes, or which is itself
// stopped with SIGTERM: afterwards every peer's pid is gone and its directory removed.
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import type { PeersReport } from "./fixtures/cleanup/peers.js"
import { isRunning, reapRun, RUN_ROOT_ENV } from "./support/Reaper.js"

const repo = fileURLToPath(new URL("..", import.meta.url))
const fixtures = join(repo, "test", "fixtures", "cleanup")

// Podman refuses a runroot over 50 characters, so the runs here get their root beside this run's
// (as short as a real one), not inside it; owned by this process, so a later run sweeps it.
const base = process.env[RUN_ROOT_ENV] === undefined ? tmpdir() : dirname(process.env[RUN_ROOT_ENV])

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** Polls until `check` holds; false after `ms`. */
const eventually = async (check: () => boolean, ms = 5000): Promise<boolean> => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) return false
    await sleep(50)
  }
  return true
}

/** This process's environment without the marks of the vitest run it is in. */
const cleanEnv = (extra: Record<string, string>): NodeJS.ProcessEnv => {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^VITEST/.test(k) && k !== RUN_ROOT_ENV && k !== "TEST") env[k] = v
  return { ...env, ...extra }
}

interface Ended {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly output: string
}

const run = (child: ChildProcess): Promise<Ended> => {
  let output = ""
  child.stdout?.on("data", (d: Buffer) => (output += d.toString()))
  child.stderr?.on("data", (d: Buffer) => (output += d.toString()))
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal, output })))
}

const readReport = async (file: string, ended: () => boolean, output: () => string): Promise<PeersReport> => {
  if (!(await eventually(() => existsSync(file) || ended(), 90_000)) || !existsSync(file)) {
    throw new Error(`the peers never started:\n${output()}`)
  }
  return JSON.parse(readFileSync(file, "utf8")) as PeersReport
}

const expectGone = async (report: PeersReport, output: string) => {
  expect(report.containers.length, "the fixture's container has its conmon and a process").toBeGreaterThanOrEqual(2)
  const alive = () => [...report.pids, ...report.containers].filter(isRunning)
  expect(await eventually(() => alive().length === 0), `still running: ${alive().join(" ")}\n${output}`).toBe(true)
  for (const dir of report.dirs) expect(existsSync(dir), `${dir} is left\n${output}`).toBe(false)
}

describe("a test process that dies with peers running", () => {
  // Its own run root, as TempRoot.ts makes one; the "teardown" is reapRun and removing the root.
  const dieWith = async (how: string) => {
    const root = mkdtempSync(join(base, "mcp-run-"))
    writeFileSync(join(root, "owner.pid"), String(process.pid))
    const reportFile = join(tmpdir(), `cleanup-${how}.json`)
    const child = spawn(process.execPath, ["--import", "tsx", join(fixtures, "die.ts"), how], {
      cwd: repo,
      env: cleanEnv({ TMPDIR: root, [RUN_ROOT_ENV]: root, MCP_CLEANUP_REPORT: reportFile }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let ended = false
    const exit = run(child).finally(() => (ended = true))
    let output = ""
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()))
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()))
    const report = await readReport(reportFile, () => ended, () => output)
    const result = await exit
    return { root, report, result, output }
  }

  for (const how of ["throw", "SIGTERM", "SIGINT", "SIGHUP"] as const) {
    it.concurrent(`${how}: its exit hook kills the peers by pid and removes their directories`, async () => {
      const { root, report, result, output } = await dieWith(how)
      if (how === "throw") expect(result.code).toBe(1)
      else expect(result.signal).toBe(how)
      // Before any teardown: the process itself stopped them (not the 1 s watchdog: no waiting).
      expect(report.pids.filter(isRunning), output).toEqual([])
      expect(await eventually(() => report.pids.filter(isRunning).length === 0)).toBe(true)
      for (const dir of report.dirs.slice(0, 2)) expect(existsSync(dir), `${dir} is left\n${output}`).toBe(false)
      expect(readdirSync(join(root, "reap"))).toEqual([])
      // No recorded peer was left for the teardown; the container, which no peer stops, was.
      const killed = reapRun(root)
      expect(killed.filter((k) => !k.startsWith("container ")), output).toEqual([])
      expect(killed.length).toBe(report.containers.length)
      rmSync(root, { recursive: true })
      await expectGone(report, output)
    })
  }

  it.concurrent("SIGKILL: the run's teardown kills the recorded pids and removes their directories", async () => {
    const { root, report, result, output } = await dieWith("SIGKILL")
    expect(result.signal).toBe("SIGKILL")
    expect(readdirSync(join(root, "reap")).sort()).toEqual(report.pids.map((p) => `${p}.json`).sort())
    reapRun(root)
    rmSync(root, { recursive: true })
    await expectGone(report, output)
  })
})

describe("a child vitest run that fails or is interrupted with peers running", () => {
  const vitest = join(repo, "node_modules", "vitest", "vitest.mjs")

  const childRun = async (how: "fail" | "hang", interrupt?: (child: ChildProcess, report: PeersReport) => void) => {
    const reportFile = join(mkdtempSync(join(tmpdir(), "cleanup-")), "report.json")
    const child = spawn(process.execPath, [vitest, "run", "--config", join(fixtures, "vitest.config.ts")], {
      cwd: repo,
      env: cleanEnv({ TMPDIR: base, MCP_CLEANUP_REPORT: reportFile, MCP_CLEANUP_HOW: how, CI: "1" }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    let ended = false
    let output = ""
    child.stdout!.on("data", (d: Buffer) => (output += d.toString()))
    child.stderr!.on("data", (d: Buffer) => (output += d.toString()))
    const exit = run(child).finally(() => (ended = true))
    const report = await readReport(reportFile, () => ended, () => output)
    interrupt?.(child, report)
    const result = await exit
    await expectGone(report, output)
    // The child's run root (where its peers' directories were) is gone too.
    expect(existsSync(dirname(report.dirs[0]!)), output).toBe(false)
    return { result, output }
  }

  it.concurrent("a failing test file: the worker's exit hook and the teardown stop its peers", async () => {
    const { result, output } = await childRun("fail")
    expect(result.code, output).toBe(1)
    expect(output).toContain("this test fails with its peers running")
  })

  it.concurrent("SIGTERM to the worker", async () => {
    const { result, output } = await childRun("hang", (_, report) => process.kill(report.owner, "SIGTERM"))
    expect(result.code, output).not.toBe(0)
  })

  it.concurrent("SIGKILL to the worker (a crash): the teardown kills what it recorded", async () => {
    const { result, output } = await childRun("hang", (_, report) => process.kill(report.owner, "SIGKILL"))
    expect(result.code, output).not.toBe(0)
  })

  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    it.concurrent(`${sig} to vitest itself: it kills the recorded peers as it exits`, async () => {
      const { result, output } = await childRun("hang", (child) => child.kill(sig))
      expect(result.code ?? result.signal, output).not.toBe(0)
    })
  }
})
