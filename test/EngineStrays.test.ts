// What a Podman engine loses track of. The harness (test/support/Podman.ts) finds container
// processes (conmon, runc init, the container's own) and runc states of containers the engine
// does not list: the chaos run counts them as debris and its teardown kills them by pid. And the
// agent's removal leaves none behind for a container whose start Podman was killed in the middle of.
import { Effect, Metric } from "effect"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as DockerRuntime from "../packages/agent/src/engine/DockerRuntime.js"
import { testSpec } from "../packages/agent/test/ContainerRuntimeContract.js"
import { isRunning } from "./support/Reaper.js"
import * as Leftovers from "./support/EngineLeftovers.js"
import {
  BUSYBOX_IMAGE,
  containersConfPath,
  makePrivateStorage,
  type PodmanService,
  type PrivateStorage,
  startPodmanService,
  storageFlags,
  storagePlace
} from "./support/Podman.js"

let storage: PrivateStorage | undefined
/** Another private storage, whose containers no reaping of `storage` may touch. */
let other: PrivateStorage | undefined
const podmanOn = (s: PrivateStorage) => (...args: Array<string>) => {
  const r = spawnSync("podman", [...storageFlags(s), ...args], { encoding: "utf8", env: { ...process.env, CONTAINERS_CONF: containersConfPath() }, timeout: 60_000 })
  if (r.status !== 0) throw new Error(`podman ${args.join(" ")}: exit ${r.status}: ${r.stderr}`)
  return r.stdout.trim()
}
const podman = (...args: Array<string>) => podmanOn(storage!)(...args)
const containerProcesses = (s: PrivateStorage) => Leftovers.containerProcesses(storagePlace(s))
const runcStates = (s: PrivateStorage) => Leftovers.runcStates(storagePlace(s))
const reapUnlisted = (s: PrivateStorage, listIds: () => ReadonlySet<string>) => Leftovers.reapUnlisted(storagePlace(s), listIds)
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))
const eventually = async (check: () => boolean, ms = 5000, everyMs = 50) => {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) return false
    await sleep(everyMs)
  }
  return true
}

beforeAll(() => {
  storage = makePrivateStorage()
  other = makePrivateStorage()
}, 120_000)

afterAll(() => {
  for (const s of [storage, other]) {
    if (s === undefined) continue
    // Whatever a failed assertion left: every container of the storage, then the storage itself.
    try {
      reapUnlisted(s, () => new Set())
    } catch (e) {
      console.warn(`engine strays clean-up: ${String(e)}`)
    }
    const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")[4] ?? "")
      .filter((m) => m.startsWith(`${s.root}/`) || m.startsWith(`${s.runroot}/`))
      .sort((a, b) => b.length - a.length)
    for (const m of mounts) spawnSync("umount", ["-l", m])
    rmSync(dirname(s.root), { recursive: true, force: true })
  }
}, 60_000)

describe("container processes the engine lost track of", () => {
  it("are found by storage and container, and only the unlisted ones are killed and their runc states deleted", async () => {
    // One created and never started (runc init waits on its fifo, as in the leak a chaos run
    // left), one running.
    const created = podman("create", "--name", "strays-created", BUSYBOX_IMAGE, "sleep", "1000")
    podman("init", created)
    const running = podman("run", "-d", "--name", "strays-running", BUSYBOX_IMAGE, "sleep", "1000")
    const elsewhere = podmanOn(other!)("run", "-d", "--name", "strays-elsewhere", BUSYBOX_IMAGE, "sleep", "1000")
    const elsewherePids = containerProcesses(other!).map((p) => p.pid)
    expect(elsewherePids.length).toBeGreaterThanOrEqual(2)
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
    const reaped = reapUnlisted(storage!, () => new Set([running]))
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
    const left = reapUnlisted(storage!, () => new Set())
    expect(new Set(left.processes.map((p) => p.pid))).toEqual(new Set(runningPids))
    expect(await eventually(() => runningPids.every((pid) => !isRunning(pid)))).toBe(true)
    expect(containerProcesses(storage!)).toEqual([])
    expect(runcStates(storage!)).toEqual([])
    // Another storage's container, never listed here, was not touched.
    expect(elsewherePids.every(isRunning)).toBe(true)
    expect(runcStates(other!)).toEqual([elsewhere])
    expect(podmanOn(other!)("inspect", "--format", "{{.State.Status}}", elsewhere)).toBe("running")
  }, 120_000)
})

describe("the agent's removal of a container whose start the engine was killed in", () => {
  it("leaves no conmon, runc init or runc state behind (Podman then calls it created and forgot runc's)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcp-strays-"))
    let service: PodmanService | undefined
    try {
      service = await startPodmanService({ storage: storage!, dir })
      // The window (conmon has run runc create, Podman has not saved it) is tens of ms: a kill
      // right after the container's conmon appears lands in it most of the time. Tried until
      // three kills landed in it: each then had a live conmon Podman no longer knew of.
      let landed = 0
      for (let attempt = 0; attempt < 20 && landed < 3; attempt++) {
        const runtime = await Effect.runPromise(DockerRuntime.make(service.socketPath))
        const id = await Effect.runPromise(runtime.create(testSpec(BUSYBOX_IMAGE, { cmd: ["sleep", "1000"] })))
        const start = Effect.runPromiseExit(runtime.start(id))
        // Polled as often as a scan allows: the window opens when conmon appears.
        expect(await eventually(() => containerProcesses(storage!).some((p) => p.containerId === id && p.kind === "conmon"), 10_000, 1), "conmon never appeared").toBe(true)
        await sleep(attempt % 3 * 5)
        process.kill(service.pid, "SIGKILL")
        await service.stop()
        await start
        service = await startPodmanService({ storage: storage!, dir })
        const state = podman("inspect", "--format", "{{.State.Status}}", id)
        const forgotten = state === "created" && containerProcesses(storage!).some((p) => p.containerId === id)
        if (forgotten) landed++
        await Effect.runPromise(runtime.remove(id))
        expect(podman("ps", "-a", "-q", "--no-trunc")).not.toContain(id)
        const left = () => containerProcesses(storage!).filter((p) => p.containerId === id)
        expect(await eventually(() => left().length === 0, 3000), `attempt ${attempt} (state ${state}${forgotten ? ", forgotten" : ""}): left ${JSON.stringify(left())}`).toBe(true)
        expect(runcStates(storage!)).not.toContain(id)
      }
      expect(landed, "no kill landed in the window where Podman forgets runc's container").toBeGreaterThan(0)
      // Each of them went through the init that makes Podman delete runc's container.
      const released = await Effect.runPromise(Metric.value(Metric.tagged(DockerRuntime.createdInits, "result", "released")))
      expect(released.count).toBeGreaterThanOrEqual(landed)
    } finally {
      await service?.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }, 300_000)
})
