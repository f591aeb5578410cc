/**
 * Containers of ours that an engine lost track of: their processes (conmon, `runc init`, the
 * container's own) and runc's states, found by where they live (a private storage, or a run's
 * root holding such storages) rather than by asking the engine, which no longer knows them. A
 * Podman killed in the middle of a start leaves such (test/EngineStrays.test.ts); so does a test
 * run that dies with containers running. Killed by pid only, never by name.
 */
import { spawnSync } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import * as path from "node:path"

/**
 * A process of a container of ours: the container's `conmon`, or a process in the container's
 * cgroup (`runc init` waiting for the start, then the container's own).
 */
export interface ContainerProcess {
  readonly pid: number
  readonly containerId: string
  /** The container's name, as its conmon was told; undefined when only the cgroup was found. */
  readonly name: string | undefined
  readonly kind: "conmon" | "container"
}

/**
 * Where containers of ours show: `paths`, directories one of which each of their conmons names
 * in its command line (a private storage's root, runroot and tmpdir, or a run's root that holds
 * such storages); `bundles`, the directory their runc bundles are under.
 */
export interface Place {
  readonly paths: ReadonlyArray<string>
  readonly bundles: string
}

/** A run's root (or any directory) that private storages were made under. */
export const placeUnder = (dir: string): Place => ({ paths: [dir], bundles: dir })

/** runc's state root as root (Podman passes no other): one entry per container runc created and did not delete. */
export const RUNC_STATE_ROOT = "/run/runc"

/**
 * Ids of the containers of `place` that runc still keeps a state for under RUNC_STATE_ROOT: its
 * bundle is there. Every running or created container has one; a removed container whose runtime
 * was never told to delete it (its process killed under it) keeps one too.
 */
export const runcStates = (place: Place): Array<string> => {
  let ids: Array<string>
  try {
    ids = readdirSync(RUNC_STATE_ROOT)
  } catch {
    return []
  }
  return ids.filter((id) => {
    try {
      const state = JSON.parse(readFileSync(path.join(RUNC_STATE_ROOT, id, "state.json"), "utf8")) as { config?: { labels?: Array<string> } }
      return (state.config?.labels ?? []).some((l) => l.startsWith(`bundle=${place.bundles}/`))
    } catch {
      // Written or deleted meanwhile: not one to judge now.
      return false
    }
  })
}

/**
 * Every container process of `place`, whether or not an engine still lists its container: a
 * conmon is found by its command line (it names the place's directories), the others by their
 * cgroup (`libpod-<id>`, or `libpod-<id>.scope` under systemd, for the ids of those conmons and
 * of runc's states there; `states`: those read already). One pass over /proc; processes that
 * end meanwhile are left out.
 */
export const containerProcesses = (place: Place, states: ReadonlyArray<string> = runcStates(place)): Array<ContainerProcess> => {
  const ours = (arg: string) => place.paths.some((d) => arg.startsWith(`${d}/`))
  const conmons: Array<ContainerProcess> = []
  const inCgroup: Array<{ pid: number; containerId: string }> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
      if (path.basename(argv[0] ?? "") === "conmon" && argv.some(ours)) {
        const after = (flag: string) => argv[argv.indexOf(flag) + 1]
        const id = after("-c")
        if (id !== undefined && argv.includes("-c")) conmons.push({ pid, containerId: id, name: argv.includes("-n") ? after("-n") : undefined, kind: "conmon" })
        continue
      }
      const cgroup = /\/libpod-([0-9a-f]{64})(?:\.scope)?(?:\/|$)/m.exec(readFileSync(`/proc/${pid}/cgroup`, "utf8"))
      if (cgroup !== null) inCgroup.push({ pid, containerId: cgroup[1]! })
    } catch {
      // Ended meanwhile.
    }
  }
  const ids = new Set([...conmons.map((c) => c.containerId), ...states])
  const nameOf = new Map(conmons.map((c) => [c.containerId, c.name]))
  return [
    ...conmons,
    ...inCgroup.filter((p) => ids.has(p.containerId)).map((p) => ({ ...p, name: nameOf.get(p.containerId), kind: "container" as const }))
  ]
}

/** Container processes and runc states of a place, whatever an engine lists. */
export interface EngineLeftovers {
  readonly processes: ReadonlyArray<ContainerProcess>
  readonly states: ReadonlyArray<string>
}

/**
 * Scans `place` for its container processes and runc states. Scan first, then ask the engine
 * for its list: a container the engine lists only after the scan (just created) is then not
 * taken for one it lost; the other order would call it a stray.
 */
export const scanLeftovers = (place: Place): EngineLeftovers => {
  const states = runcStates(place)
  return { processes: containerProcesses(place, states), states }
}

/** What of `scanned` has an id the engine's list (`listed`, full ids, taken after the scan) does not hold. */
export const unlisted = (scanned: EngineLeftovers, listed: ReadonlySet<string>): EngineLeftovers => ({
  processes: scanned.processes.filter((p) => !listed.has(p.containerId)),
  states: scanned.states.filter((id) => !listed.has(id))
})

/**
 * What an engine has lost track of at `place`, stopped: scans, then asks `listIds` for the
 * engine's list (full container ids), then kills by pid the processes of ids it does not hold
 * and deletes their runc states (`runc delete --force`, only for those ids). Returns what it
 * found; throws when a kill or a delete failed (what is left is then named).
 */
export const reapUnlisted = (place: Place, listIds: () => ReadonlySet<string>): EngineLeftovers => {
  const found = unlisted(scanLeftovers(place), listIds())
  const failures: Array<string> = []
  for (const p of found.processes) {
    try {
      process.kill(p.pid, "SIGKILL")
    } catch (e) {
      // Ended meanwhile is what was wanted; anything else (EPERM) leaves it running.
      if ((e as NodeJS.ErrnoException).code !== "ESRCH") failures.push(`kill ${p.kind} pid ${p.pid}: ${String(e)}`)
    }
  }
  for (const id of found.states) {
    const r = spawnSync("runc", ["--root", RUNC_STATE_ROOT, "delete", "--force", id], { encoding: "utf8", timeout: 10_000 })
    if (r.error !== undefined || r.status !== 0) failures.push(`runc delete --force ${id}: ${r.error?.message ?? `exit ${r.status}: ${r.stderr.trim()}`}`)
  }
  if (failures.length > 0) throw new Error(`could not stop what the engine lost track of under ${place.bundles}: ${failures.join("; ")}`)
  return found
}
