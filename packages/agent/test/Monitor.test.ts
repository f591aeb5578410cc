import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, Layer, Logger, Option, TestClock } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type ContainerInfo, ContainerRuntime, type ContainerSpec, LABEL_DEPLOY, LABEL_NODE, LABEL_SERVICE } from "../src/engine/ContainerRuntime.js"
import { Lifecycle } from "../src/lifecycle/Lifecycle.js"
import { MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import * as Monitor from "../src/monitor/Monitor.js"
import { Registry, type ServiceRow } from "../src/registry/Registry.js"
import { ServiceActors } from "../src/lifecycle/ServiceActors.js"
import { IMAGE, layerAgent, makePeers, settings, webService } from "./Harness.js"

const freshFile = () => join(mkdtempSync(join(tmpdir(), "mcp-monitor-")), "registry.db")

type Env = Monitor.Monitor | Lifecycle | Registry | ContainerRuntime | MemoryRuntimeControl | ServiceActors

interface LogEntry {
  readonly level: string
  readonly message: string
}

/** An agent core over memory adapters with a monitor running on the TestClock; logs are captured. */
const withMonitor = <A, E>(overrides: Partial<Monitor.MonitorConfig>, body: (logs: ReadonlyArray<LogEntry>) => Effect.Effect<A, E, Env>) =>
  Effect.gen(function* () {
    const peers = yield* makePeers({ switchesTraffic: false })
    const logs: Array<LogEntry> = []
    const capture = Logger.make(({ logLevel, message }) => {
      logs.push({ level: logLevel.label, message: String(Array.isArray(message) ? message[0] : message) })
    })
    const layer = Monitor.layer({ ...Monitor.defaultConfig, ...overrides }).pipe(Layer.provideMerge(layerAgent(peers, freshFile())))
    // The logger is replaced around the layer too, so the monitor's fiber logs into `logs`.
    return yield* Effect.scoped(Effect.provide(body(logs), layer)).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, capture)))
  })

/** Deploys `web` and returns its recorded container name. */
const deployWeb = (extra = "") =>
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    const registry = yield* Registry
    yield* lifecycle.deploy(webService("web", extra), { dryRun: false }, () => Effect.void)
    return (yield* registry.components("web"))[0]!.spec.name
  })

const monitorEvents = Effect.flatMap(Registry, (r) =>
  Effect.map(r.events(1000), (rows) => rows.filter((e) => e.kind === "drift" || e.kind === "flap").map((e) => `${e.kind}: ${e.message}`)))

const stateOf = (name: string) => Effect.flatMap(ContainerRuntime, (rt) => Effect.map(rt.inspect(name), (i) => i.state))

const kinds = (service?: string) => Effect.flatMap(Monitor.Monitor, (m) => Effect.map(m.findings(service), (fs) => fs.map((f) => f.kind).sort()))

const tick = TestClock.adjust("10 seconds")

const spec = (name: string, labels: Record<string, string>, image = IMAGE): ContainerSpec => ({
  name, image, cmd: undefined, env: [], volumes: [], ports: [], network: undefined, user: undefined, restart: undefined, labels
})

describe("monitor: pure parts", () => {
  it("backoff doubles from the initial delay up to the cap", () => {
    const delays: Array<number> = []
    let d = Duration.seconds(10)
    for (let i = 0; i < 8; i++) {
      delays.push(Duration.toSeconds(d))
      d = Monitor.nextDelay(d, Duration.minutes(5))
    }
    expect(delays).toEqual([10, 20, 40, 80, 160, 300, 300, 300])
  })

  it("a container of a deploy in flight is not unexpected; one of an older deploy is", () => {
    const service: ServiceRow = { name: "web", definition: webService("web"), active: true, deployId: "d2", deployedAt: "" }
    const info = (name: string, deploy: string): ContainerInfo => ({
      id: name, name, image: IMAGE, state: "running", restartCount: 0, startedAt: undefined, ports: [],
      labels: { [LABEL_SERVICE]: "web", [LABEL_DEPLOY]: deploy, [LABEL_NODE]: "n" }
    })
    const findings = Monitor.detectDrift({
      services: [service], components: [], containers: [info("web-new", "d3"), info("web-old", "d1")], openSagas: new Set(["d3"])
    })
    expect(findings.map((f) => [f.kind, f.container])).toEqual([["unexpected", "web-old"]])
  })

  it("a flap track counts restartCount growth of the same container only", () => {
    const c = (id: string, restartCount: number): ContainerInfo => ({
      id, name: "x", image: IMAGE, state: "running", restartCount, startedAt: undefined, ports: [], labels: {}
    })
    const first = Monitor.observe(undefined, "s", c("a", 7), 0, 600_000)
    expect(first.restarts).toEqual([]) // restarts before the monitor saw it happened at unknown times
    const grown = Monitor.observe(first, "s", c("a", 10), 1_000, 600_000)
    expect(grown.restarts).toEqual([1_000, 1_000, 1_000])
    const recreated = Monitor.observe(grown, "s", c("b", 2), 2_000, 600_000)
    expect(recreated.restarts).toHaveLength(3)
    expect(Monitor.observe(recreated, "s", c("b", 2), 700_000, 600_000).restarts).toEqual([])
  })
})

describe("monitor over memory adapters", () => {
  it.effect("a stopped container is one `stopped` finding and one event, not one per tick, until it runs again", () =>
    withMonitor({}, (logs) =>
      Effect.gen(function* () {
        const monitor = yield* Monitor.Monitor
        const runtime = yield* ContainerRuntime
        const name = yield* deployWeb()
        yield* tick
        expect(yield* monitor.findings()).toEqual([])

        yield* runtime.stop(name, 1)
        yield* tick
        expect(yield* kinds("web")).toEqual(["stopped"])
        expect(yield* monitorEvents).toEqual([`drift: web/web: container ${name} is exited; it should be running`])
        expect(yield* monitor.warnings("web")).toEqual([`web/web: container ${name} is exited; it should be running`])

        for (let i = 0; i < 6; i++) yield* tick
        expect(yield* monitorEvents).toHaveLength(1)
        expect(logs.filter((l) => l.message.includes("is exited"))).toHaveLength(1)
        expect(yield* stateOf(name)).toBe("exited") // reconcile is off: reported, not restarted

        yield* runtime.start(name)
        yield* tick
        expect(yield* monitor.findings()).toEqual([])
        expect((yield* monitorEvents).at(-1)).toBe(`drift: resolved: web/web: container ${name} is exited; it should be running`)
      })))

  it.effect("with reconcile on, a stopped container is restarted after the backoff, and a missing one recreated", () =>
    withMonitor({ reconcile: true }, () =>
      Effect.gen(function* () {
        const runtime = yield* ContainerRuntime
        const registry = yield* Registry
        const monitor = yield* Monitor.Monitor
        const name = yield* deployWeb()
        yield* tick

        yield* runtime.stop(name, 1)
        yield* tick // seen stopped: the restart waits 10 s
        yield* TestClock.adjust("9 seconds")
        expect(yield* stateOf(name)).toBe("exited")
        yield* TestClock.adjust("1 second")
        expect(yield* stateOf(name)).toBe("running")
        expect(yield* monitorEvents).toContain("drift: restarted web/web (it was stopped) after a 10s backoff; the next restart waits 20s")
        expect((yield* registry.components("web"))[0]!.restarts).toBe(1)
        yield* tick
        expect(yield* monitor.findings()).toEqual([])

        // Gone altogether: recreated from the recorded spec, after the doubled backoff.
        yield* runtime.remove(name)
        yield* tick
        expect(yield* kinds("web")).toEqual(["missing"])
        yield* TestClock.adjust("19 seconds")
        expect(yield* Effect.either(runtime.inspect(name))).toMatchObject({ _tag: "Left" })
        yield* TestClock.adjust("1 second")
        expect(yield* stateOf(name)).toBe("running")
        expect(yield* monitorEvents).toContain("drift: restarted web/web (it was missing) after a 20s backoff; the next restart waits 40s")
        const row = (yield* registry.components("web"))[0]!
        expect(row.restarts).toBe(2)
        expect(row.containerId).toBe((yield* runtime.inspect(name)).id)
      })))

  it.effect("a container the engine keeps restarting (policy always) is a flap, reported once", () =>
    withMonitor({}, () =>
      Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        const monitor = yield* Monitor.Monitor
        const name = yield* deployWeb(`restart = "always"`)
        yield* tick // baseline restartCount

        for (let i = 0; i < 5; i++) yield* control.exit(name, 1)
        yield* tick
        expect(yield* monitor.findings()).toEqual([]) // 5 is not more than flap_restarts = 5

        yield* control.exit(name, 1)
        yield* tick
        expect(yield* kinds("web")).toEqual(["flap"]) // and not stopped: the engine brought it back
        expect(yield* stateOf(name)).toBe("running")
        yield* control.exit(name, 1)
        yield* tick
        yield* tick
        expect(yield* monitorEvents).toEqual(["flap: web/web: restarted 6 times in the last 10m (more than 5)"])
        expect(yield* monitor.warnings("web")).toEqual(["web/web: restarted 7 times in the last 10m (more than 5)"])

        // Quiet for the window: the restarts age out.
        yield* TestClock.adjust("10 minutes")
        expect(yield* monitor.findings()).toEqual([])
        expect((yield* monitorEvents).at(-1)).toMatch(/^flap: resolved: web\/web: restarted/)
      })))

  it.effect("a crash-looping container the monitor restarts backs off 10 s, 20 s, 40 s... up to the cap, then resets when stable", () =>
    // A 1 s interval so the delays are measured to the second; short cap, window and stable time keep it quick.
    withMonitor({ reconcile: true, interval: "1 second", backoffMax: "1 minute", flapWindow: "5 minutes", stableAfter: "2 minutes" }, () =>
      Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        const monitor = yield* Monitor.Monitor
        const name = yield* deployWeb() // no restart policy: an exit leaves it exited
        yield* TestClock.adjust("1 second")

        const observed: Array<number> = []
        for (let i = 0; i < 6; i++) {
          yield* control.exit(name, 1)
          const from = yield* Clock.currentTimeMillis
          let steps = 0
          while ((yield* stateOf(name)) !== "running" && steps++ < 200) yield* TestClock.adjust("1 second")
          observed.push((yield* Clock.currentTimeMillis) - from)
        }
        const expected = [10, 20, 40, 60, 60, 60]
        // Each restart waits its backoff after the check (at most one interval) that saw the exit.
        observed.forEach((ms, i) => {
          expect(ms).toBeGreaterThanOrEqual(expected[i]! * 1000)
          expect(ms).toBeLessThanOrEqual(expected[i]! * 1000 + 1000)
        })
        const restarts = (yield* monitorEvents).filter((e) => e.startsWith("drift: restarted"))
        expect(restarts.map((e) => /after a (\S+) backoff/.exec(e)![1])).toEqual(["10s", "20s", "40s", "1m", "1m", "1m"])
        const backoff = Option.getOrThrow(yield* monitor.backoff("web", "web"))
        expect(Duration.toSeconds(backoff.delay)).toBe(60)
        expect(backoff.restarts).toBe(6)
        // The monitor's own restarts count towards flapping: 6 in 5 minutes is more than 5.
        yield* TestClock.adjust("1 second")
        expect(yield* kinds("web")).toEqual(["flap"])

        // Running for stable_after resets the backoff; by then the restarts have left the flap window too.
        yield* TestClock.adjust("110 seconds")
        expect(Option.isSome(yield* monitor.backoff("web", "web"))).toBe(true)
        yield* TestClock.adjust("15 seconds")
        expect(Option.isNone(yield* monitor.backoff("web", "web"))).toBe(true)
        expect(yield* monitor.findings()).toEqual([])
      })), 30_000)

  it.effect("containers of this node that the registry does not know, or of an older deploy, are unexpected", () =>
    withMonitor({}, () =>
      Effect.gen(function* () {
        const runtime = yield* ContainerRuntime
        const name = yield* deployWeb()
        yield* tick
        const node = settings.node
        yield* runtime.create(spec("ghost-web-1", { [LABEL_SERVICE]: "ghost", [LABEL_NODE]: node, [LABEL_DEPLOY]: "d-ghost" }))
        yield* runtime.create(spec("web-web-old", { [LABEL_SERVICE]: "web", [LABEL_NODE]: node, [LABEL_DEPLOY]: "d-old" }))
        yield* runtime.create(spec("other-node-1", { [LABEL_SERVICE]: "ghost", [LABEL_NODE]: "other-node", [LABEL_DEPLOY]: "x" }))
        yield* runtime.create(spec("unlabelled", { [LABEL_NODE]: node }))
        yield* tick
        const monitor = yield* Monitor.Monitor
        const found = (yield* monitor.findings()).map((f) => [f.kind, f.service, f.container])
        expect(found).toEqual([["unexpected", "ghost", "ghost-web-1"], ["unexpected", "web", "web-web-old"]])
        const events = yield* monitorEvents
        expect(events).toHaveLength(2)
        expect(events).toContain("drift: container ghost-web-1 claims service ghost, which this node's registry does not know")
        expect(events.some((e) => e.startsWith("drift: container web-web-old of web is from deploy d-old, not the current"))).toBe(true)
        expect(yield* stateOf(name)).toBe("running")
      })))

  it.effect("a recorded container running another image is wrong-image", () =>
    withMonitor({}, () =>
      Effect.gen(function* () {
        const runtime = yield* ContainerRuntime
        const control = yield* MemoryRuntimeControl
        const registry = yield* Registry
        const name = yield* deployWeb()
        yield* tick
        const recorded = (yield* registry.components("web"))[0]!.spec
        yield* control.addImage("localhost/other:v9")
        yield* runtime.remove(name)
        yield* runtime.start(yield* runtime.create({ ...recorded, image: "localhost/other:v9" }))
        yield* tick
        expect(yield* kinds("web")).toEqual(["wrong-image"])
        expect(yield* monitorEvents).toEqual([`drift: web/web: container ${name} runs localhost/other:v9, the registry records ${IMAGE}`])
      })))

  it.effect("a service an operator stopped is never restarted, even with a restart already waiting", () =>
    withMonitor({ reconcile: true }, () =>
      Effect.gen(function* () {
        const runtime = yield* ContainerRuntime
        const lifecycle = yield* Lifecycle
        const actors = yield* ServiceActors
        const registry = yield* Registry
        const monitor = yield* Monitor.Monitor
        const name = yield* deployWeb()
        yield* tick

        // The container stops, the monitor schedules a restart, then the operator stops the service.
        yield* runtime.stop(name, 1)
        yield* tick
        expect(yield* kinds("web")).toEqual(["stopped"])
        yield* actors.submit("web", lifecycle.stop("web"))
        yield* TestClock.adjust("15 minutes")
        expect(yield* stateOf(name)).toBe("exited")
        expect(yield* monitor.findings()).toEqual([]) // a stopped service's container should be stopped
        expect((yield* monitorEvents).filter((e) => e.includes("restarted"))).toEqual([])
        expect((yield* registry.components("web"))[0]!.restarts).toBe(0)

        // Started behind the agent's back: reported, and left alone.
        yield* runtime.start(name)
        yield* tick
        expect(yield* kinds("web")).toEqual(["running-while-stopped"])
        yield* TestClock.adjust("5 minutes")
        expect(yield* stateOf(name)).toBe("running")
        expect((yield* monitorEvents).filter((e) => e.includes("running-while") || e.includes("but the service was stopped"))).toHaveLength(1)
      })))
})
