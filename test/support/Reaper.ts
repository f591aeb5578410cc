/**
 * The run's record of the peers test workers start, so that what a crashed or killed worker leaves
 * running is still stopped. ManagedProcess writes one file per child under `<run root>/reap/`
 * (its pid, the pid's start time, its name and directory) and deletes it once the child has
 * exited. `reapRun` (TempRoot's teardown, its "exit" hook when vitest is interrupted, and the next
 * run's sweep of a killed run) SIGKILLs each recorded pid still running, by pid and only if its
 * start time still matches (never a reused pid), kills by pid the containers still running in
 * private Podman storages under the run root (EngineLeftovers: no engine is left to stop them),
 * removes its directory, and lazily unmounts what is still mounted under the run root (a private
 * Podman storage) so that the root can be removed.
 * Never by process name. Synchronous throughout: it runs inside "exit" handlers.
 */
import { spawnSync } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { placeUnder, reapUnlisted } from "./EngineLeftovers.js"

/** Set by TempRoot.ts in the vitest process, inherited by its workers. */
export const RUN_ROOT_ENV = "MCP_TEST_RUN_TMPDIR"
const REAP = "reap"

interface Recorded {
  readonly pid: number
  readonly startTime: string | undefined
  readonly name: string
  readonly dir: string | undefined
  /** The test worker that started it. */
  readonly owner: number
}

/** Field 22 of /proc/<pid>/stat (clock ticks after boot), or undefined when there is no such pid. */
export const startTimeOf = (pid: number): string | undefined => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    // The command name (field 2) may hold spaces and parentheses: count from after its ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]
  } catch {
    return undefined
  }
}

/** The pid exists and is not a zombie (killed, not yet waited for by its parent). */
export const isRunning = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z"
  } catch {
    return false
  }
}

/**
 * Records a child in the current run's reap directory; returns the function that forgets it.
 * Outside a vitest run (no run root) there is nothing to record in.
 */
export const recordChild = (child: { readonly pid: number; readonly name: string; readonly dir: string | undefined }): (() => void) => {
  const root = process.env[RUN_ROOT_ENV]
  if (root === undefined) return () => {}
  const dir = join(root, REAP)
  const file = join(dir, `${child.pid}.json`)
  try {
    mkdirSync(dir, { recursive: true })
    const record: Recorded = { ...child, startTime: startTimeOf(child.pid), owner: process.pid }
    writeFileSync(file, JSON.stringify(record))
  } catch (e) {
    console.warn(`could not record ${child.name} (pid ${child.pid}) for clean-up: ${e instanceof Error ? e.message : String(e)}`)
  }
  return () => rmSync(file, { force: true })
}

/** Lazily unmounts every mount at or below `root`, deepest first. */
export const unmountUnder = (root: string): void => {
  let mounts: Array<string>
  try {
    mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => (l.split(" ")[4] ?? "").replace(/\\040/g, " "))
  } catch {
    return
  }
  for (const m of mounts.filter((m) => m === root || m.startsWith(`${root}/`)).sort((a, b) => b.length - a.length)) {
    spawnSync("umount", ["-l", m])
  }
}

/**
 * Stops what the run at `root` recorded and is still running, removes their directories and
 * unmounts what is mounted below `root`. Returns one line per process it had to kill.
 */
export const reapRun = (root: string): Array<string> => {
  const killed: Array<string> = []
  const dir = join(root, REAP)
  const records: Array<{ readonly file: string; readonly record: Recorded }> = []
  try {
    for (const name of readdirSync(dir).filter((n) => n.endsWith(".json"))) {
      try {
        records.push({ file: join(dir, name), record: JSON.parse(readFileSync(join(dir, name), "utf8")) as Recorded })
      } catch {
        // half written by a worker that died then: its pid's own watchdog stops it
      }
    }
  } catch {
    // nothing was recorded
  }
  for (const { record } of records) {
    if (Number.isInteger(record.pid) && record.pid > 1 && isRunning(record.pid) && startTimeOf(record.pid) === record.startTime) {
      try {
        process.kill(record.pid, "SIGKILL")
        killed.push(`${record.name} (pid ${record.pid}, started by test worker ${record.owner})`)
      } catch {
        // gone meanwhile
      }
    }
  }
  // Containers of the private storages under the root outlive their engine (a conmon is no
  // child of it), and no engine is left to list them: each one found there is killed by pid.
  try {
    const left = reapUnlisted(placeUnder(root), () => new Set())
    for (const p of left.processes) killed.push(`container ${p.name ?? p.containerId.slice(0, 12)}: ${p.kind === "conmon" ? "its conmon" : "a process of it"} (pid ${p.pid})`)
  } catch (e) {
    console.warn(e instanceof Error ? e.message : String(e))
  }
  unmountUnder(root)
  for (const { file, record } of records) {
    try {
      if (record.dir !== undefined) rmSync(record.dir, { recursive: true, force: true, maxRetries: 3 })
      rmSync(file, { force: true })
    } catch (e) {
      console.warn(`could not remove ${record.dir ?? file}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  return killed
}
