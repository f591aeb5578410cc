// What a Podman engine has lost track of, found and stopped by the harness (test/support/Podman.ts):
// container processes (conmon, runc init, the container's own) and runc states of containers the
// engine does not list. The chaos run counts them as debris; its teardown kills them by pid.
import { spawnSync } from "node:child_process"
import { readFileSync, rmSync } from "node:fs"
import { dirname, join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { isRunning } from "./support/Reaper.js"
import {
  BUSYBOX_IMAGE,
  containerProcesses,
  containersConfPath,
  makePrivateStorage,
  type PrivateStorage,
  reapUnlisted,
  runcStates,
  storageFlags
} from "./support/Podman.js"

let storage: PrivateStorage | undefined
const podman = (...args: Array<string>) => {
  const r = spawnSync("podman", [...storageFlags(storage!), ...args], { encoding: "utf8", env: { ...process.env, CONTAINERS_CONF: containersConfPath() }, timeout: 60_000 })
  if (r.status !== 0) throw new Error(`podman ${args.join(" ")}: exit ${r.status}: ${r.stderr}`)
  return r.stdout.trim()
}
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const eventually = async (check: () => boolean, ms = 5000) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) return false
    await sleep(50)
  }
  return true
}

beforeAll(() => {
  storage = makePrivateStorage()
}, 120_000)

afterAll(() => {
  if (storage === undefined) return
  // Whatever a failed assertion left: every container of this storage, then the storage itself.
  reapUnlisted(storage, new Set())
  const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(`${storage!.root}/`) || m.startsWith(`${storage!.runroot}/`))
    .sort((a, b) => b.length - a.length)
  for (const m of mounts) spawnSync("umount", ["-l", m])
  rmSync(dirname(storage.root), { recursive: true, force: true })
}, 60_000)

describe("container processes the engine lost track of", () => {
  it("are found by storage and container, and only the unlisted ones are killed and their runc states deleted", async () => {
    // One created and never started (runc init waits on its fifo, as in the leak a chaos run
    // left), one running.
    const created = podman("create", "--name", "strays-created", BUSYBOX_IMAGE, "sleep", "1000")
    podman("init", created)
    const running = podman("run", "-d", "--name", "strays-running", BUSYBOX_IMAGE, "sleep", "1000")
    const ofContainer = (id: string) => containerProcesses(storage!).filter((p) => p.containerId === id)

    for (const [id, name] of [[created, "strays-created"], [running, "strays-running"]] as const) {
      const found = ofContainer(id)
      expect(found.filter((p) => p.kind === "conmon").map((p) => p.name), name).toEqual([name])
      // runc init for the created one, sleep for the running one: at least one in its cgroup.
      expect(found.filter((p) => p.kind === "container").length, name).toBeGreaterThanOrEqual(1)
      expect(runcStates(storage!)).toContain(id)
    }
    const createdPids = ofContainer(created).map((p) => p.pid)

    // The engine forgets the created one (it lists only the running one).
    const reaped = reapUnlisted(storage!, new Set([running]))
    expect(new Set(reaped.processes.map((p) => p.pid))).toEqual(new Set(createdPids))
    expect(reaped.states).toEqual([created])
    expect(await eventually(() => createdPids.every((pid) => !isRunning(pid))), `still running: ${createdPids.filter(isRunning).join(" ")}`).toBe(true)
    expect(runcStates(storage!)).not.toContain(created)
    // The listed one is untouched.
    expect(ofContainer(running).every((p) => isRunning(p.pid))).toBe(true)
    expect(podman("inspect", "--format", "{{.State.Status}}", running)).toBe("running")

    // The engine's whole record wiped (as after a lost /var/lib/containers database): nothing it
    // lists, so everything of the storage is a stray.
    const runningPids = ofContainer(running).map((p) => p.pid)
    rmSync(join(storage!.root, "libpod", "bolt_state.db"), { force: true })
    expect(podman("ps", "-a", "-q")).toBe("")
    const left = reapUnlisted(storage!, new Set())
    expect(new Set(left.processes.map((p) => p.pid))).toEqual(new Set(runningPids))
    expect(await eventually(() => runningPids.every((pid) => !isRunning(pid)))).toBe(true)
    expect(containerProcesses(storage!)).toEqual([])
    expect(runcStates(storage!)).toEqual([])
  }, 120_000)
})
