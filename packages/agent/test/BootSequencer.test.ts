/**
 * The boot sequencer over memory peers and a real SQLite registry, on the TestClock: services
 * are deployed, the engine loses their containers (a reboot), and the sequencer brings them
 * back stage by stage. Health is scripted through the memory engine's `exec` answer, so a
 * stage's checks pass only when the test says its services are ready. The same scenarios
 * against a real engine and agent are in the top-level test/BootSequencer.test.ts.
 */
import { FetchHttpClient } from "@effect/platform"
import { SqlClient } from "@effect/sql"
import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Fiber, Layer, Option, TestClock } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BootSequencer, type Stage } from "../src/boot/BootSequencer.js"
import { ContainerRuntime, LABEL_SERVICE } from "../src/engine/ContainerRuntime.js"
import { MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import { Lifecycle } from "../src/lifecycle/Lifecycle.js"
import { Registry } from "../src/registry/Registry.js"
import { layerAgent, makePeers, webService } from "./Harness.js"

const freshFile = () => join(mkdtempSync(join(tmpdir(), "mcp-boot-")), "registry.db")

type Env = BootSequencer | Lifecycle | Registry | ContainerRuntime | MemoryRuntimeControl | SqlClient.SqlClient

/**
 * Runs `body` with a boot sequencer over a fresh agent core. The sequencer's HTTP checks need an
 * HttpClient: provided here whether or not the core already brings one.
 */
const withBoot = <A, E>(body: (ready: Set<string>) => Effect.Effect<A, E, Env>) =>
  Effect.gen(function* () {
    const peers = yield* makePeers({ switchesTraffic: false })
    const layer = BootSequencer.Default.pipe(
      Layer.provideMerge(layerAgent(peers, freshFile())),
      Layer.provideMerge(FetchHttpClient.layer)
    )
    // The services whose `exec` health answer is "ready"; every other exec fails.
    const ready = new Set<string>()
    return yield* Effect.scoped(Effect.provide(
      Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        yield* control.scriptExec((spec) => (ready.has(spec.labels[LABEL_SERVICE] ?? "") ? { exitCode: 0, output: "" } : { exitCode: 1, output: "not ready" }))
        return yield* body(ready)
      }),
      layer
    ))
  })

/** Deploys each service, then makes the engine lose every container, as a reboot may. */
const deployThenLoseContainers = (definitions: ReadonlyArray<ReturnType<typeof webService>>, ready: Set<string>) =>
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    for (const d of definitions) {
      ready.add(d.name)
      yield* lifecycle.deploy(d, { dryRun: false }, () => Effect.void)
    }
    ready.clear()
    yield* loseContainers
  })

const loseContainers = Effect.gen(function* () {
  const runtime = yield* ContainerRuntime
  const control = yield* MemoryRuntimeControl
  for (const c of yield* control.containers) yield* runtime.remove(c.spec.name)
})

/** A stage gated on an `exec` check of each of its services (the test's `ready` set). */
const stage = (name: string, services: ReadonlyArray<string>, options: { readonly timeout?: Duration.DurationInput; readonly onFailure?: "wait" | "continue"; readonly exec?: boolean } = {}): Stage => ({
  name,
  services,
  timeout: Duration.decode(options.timeout ?? "10 seconds"),
  onFailure: options.onFailure ?? "wait",
  checks: options.exec === false ? [] : services.map((service) => ({ service, kind: "exec" as const, command: ["ready?"] }))
})

const runBoot = (stages: ReadonlyArray<Stage>, options: { readonly checkInterval?: Duration.DurationInput; readonly restartAfter?: number } = {}) =>
  Effect.flatMap(BootSequencer, (boot) =>
    Effect.fork(boot.run({ stages, checkInterval: Duration.decode(options.checkInterval ?? "1 second"), restartAfter: options.restartAfter ?? 2 })))

// ---------------------------------------------------------------------------------------------
// Reading the outcome.

/** Whether a container of the service is running in the engine. */
const isRunning = (service: string) =>
  Effect.map(Effect.flatMap(MemoryRuntimeControl, (c) => c.containers), (all) => all.some((c) => c.spec.labels[LABEL_SERVICE] === service && c.info.state === "running"))

const stageStates = Effect.flatMap(BootSequencer, (boot) => Effect.map(boot.status, (s) => Object.fromEntries(s.stages.map((x) => [x.name, x.state]))))
const stageOf = (name: string) => Effect.flatMap(BootSequencer, (boot) => Effect.map(boot.status, (s) => s.stages.find((x) => x.name === name)!))

const bootEvents = Effect.flatMap(Registry, (r) => Effect.map(r.events(1000), (all) => all.filter((e) => e.kind === "boot").map((e) => e.message)))

/** Lets forked fibers run, without moving the clock. */
const settle = Effect.gen(function* () {
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
  yield* TestClock.adjust(0)
  for (let i = 0; i < 20; i++) yield* Effect.yieldNow()
})

/** Moves the clock in steps (100 ms unless told), letting every woken fiber run between steps. */
const advance = (duration: Duration.DurationInput, step = 100) =>
  Effect.gen(function* () {
    const millis = Duration.toMillis(duration)
    for (let done = 0; done < millis; done += step) {
      yield* TestClock.adjust(Math.min(step, millis - done))
      yield* settle
    }
  })

/** Moves the clock in steps until `condition` holds, failing the test after `within`. */
const until = <E, R>(what: string, condition: Effect.Effect<boolean, E, R>, within: Duration.DurationInput = "2 minutes", step = 100) =>
  Effect.gen(function* () {
    const deadline = Duration.toMillis(within)
    yield* settle
    for (let waited = 0; !(yield* condition); waited += step) {
      if (waited >= deadline) return yield* Effect.die(new Error(`not within ${Duration.format(within)}: ${what}`))
      yield* TestClock.adjust(step)
      yield* settle
    }
  })

const allUp = (names: ReadonlyArray<string>) => Effect.map(stageStates, (s) => names.every((n) => s[n] === "up"))

// ---------------------------------------------------------------------------------------------

// Each test takes about a second alone; on a loaded 2-core CI machine, next to the Podman tests, 5 s is not enough.
describe("BootSequencer", { timeout: 30_000 }, () => {
  it.effect("brings stages up in order: a stage's services start only once the stage before it is healthy", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("dns"), webService("core"), webService("app")], ready)
        yield* runBoot([stage("dns", ["dns"]), stage("core", ["core"]), stage("apps", ["app"])])

        yield* until("dns started", isRunning("dns"))
        yield* advance("3 seconds")
        // dns runs but is not healthy yet: nothing of the later stages has started.
        expect(yield* stageStates).toEqual({ dns: "starting", core: "waiting", apps: "waiting" })
        expect([yield* isRunning("core"), yield* isRunning("app")]).toEqual([false, false])

        ready.add("dns")
        yield* until("dns up", allUp(["dns"]))
        yield* until("core started", isRunning("core"))
        yield* advance("3 seconds")
        expect(yield* stageStates).toEqual({ dns: "up", core: "starting", apps: "waiting" })
        expect(yield* isRunning("app")).toBe(false)

        ready.add("core")
        ready.add("app")
        yield* until("every stage up", allUp(["dns", "core", "apps"]))
        expect(yield* isRunning("app")).toBe(true)
        const events = yield* bootEvents
        expect(events.filter((e) => e.endsWith(" is up"))).toEqual(["stage dns is up", "stage core is up", "stage apps is up"])
      })))

  it.effect("a stage is gated on its services' own declared health checks when the stage names none", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        const healthChecked = (name: string) => webService(name, `[components.health]\nkind = "exec"\ncommand = ["ready?"]\ninterval = "1s"\ntimeout = "1s"\nretries = 1`)
        yield* deployThenLoseContainers([healthChecked("dns"), webService("app")], ready)
        yield* runBoot([stage("dns", ["dns"], { exec: false }), stage("apps", ["app"], { exec: false })])

        yield* until("dns started", isRunning("dns"))
        yield* advance("5 seconds")
        const dns = yield* stageOf("dns")
        expect(dns.state).toBe("starting")
        expect(dns.checks.map((c) => [c.service, c.ok, c.detail])).toEqual([["dns", false, expect.stringContaining("not ready")]])
        expect(yield* isRunning("app")).toBe(false)

        ready.add("dns")
        // app declares no check: it is gated on its container running.
        yield* until("every stage up", allUp(["dns", "apps"]))
        expect(yield* isRunning("app")).toBe(true)
      })))

  it.effect("a stage that never gets healthy fails at its timeout, says why, holds back the later stages, and is retried until it is up", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("dns"), webService("app")], ready)
        yield* runBoot([stage("dns", ["dns"], { timeout: "5 seconds" }), stage("apps", ["app"], { exec: false })])

        yield* until("dns failed", Effect.map(stageOf("dns"), (s) => s.state === "failed"), "6 seconds")
        const failed = yield* stageOf("dns")
        expect(failed.lastError).toMatch(/^not up within 5s: dns exec: .*not ready/)
        expect(yield* bootEvents).toContainEqual(expect.stringMatching(/^stage dns failed: dns exec: .*not ready/))

        // Retried, with backoff, for as long as it takes; apps never starts meanwhile.
        yield* advance("2 minutes", 500)
        const retried = yield* stageOf("dns")
        expect(retried.attempts).toBeGreaterThan(2)
        expect(["retrying", "failed"]).toContain(retried.state)
        expect((yield* stageOf("apps")).state).toBe("waiting")
        expect(yield* isRunning("app")).toBe(false)

        ready.add("dns")
        yield* until("every stage up", allUp(["dns", "apps"]), "3 minutes", 500)
        expect(yield* isRunning("app")).toBe(true)
        expect((yield* stageOf("dns")).lastError).toBeUndefined()
      })), 60_000)

  it.effect("a stage set to continue on failure lets the next stage start once its timeout has passed, not before", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("dns"), webService("app")], ready)
        yield* runBoot([stage("dns", ["dns"], { timeout: "4 seconds", onFailure: "continue" }), stage("apps", ["app"], { exec: false })])

        yield* until("dns started", isRunning("dns"))
        yield* advance("3 seconds")
        expect(yield* isRunning("app")).toBe(false)
        expect((yield* stageOf("apps")).state).toBe("waiting")

        yield* until("apps up", allUp(["apps"]), "5 seconds")
        expect((yield* stageOf("dns")).state).toBe("failed")
        expect(yield* isRunning("app")).toBe(true)
        expect(yield* bootEvents).toContain("stage dns did not come up; continuing as configured")
      })))

  it.effect("a stage naming a service this node does not run cannot come up, and says the service is not deployed", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("app")], ready)
        yield* runBoot([stage("dns", ["ghost"], { timeout: "2 seconds", exec: false }), stage("apps", ["app"], { exec: false })])

        yield* until("dns failed", Effect.map(stageOf("dns"), (s) => s.state === "failed"), "3 seconds")
        const dns = yield* stageOf("dns")
        expect(dns.checks.map((c) => [c.service, c.ok, c.detail])).toEqual([["ghost", false, "service ghost is not deployed on this node"]])
        expect(dns.lastError).toContain("service ghost is not deployed on this node")
        yield* advance("10 seconds")
        expect(yield* isRunning("app")).toBe(false)
      })))

  it.effect("a service the operator stopped is neither started nor waited for", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("dns"), webService("app")], ready)
        yield* Effect.flatMap(Lifecycle, (l) => l.stop("dns"))
        yield* runBoot([stage("dns", ["dns"]), stage("apps", ["app"], { exec: false })])

        yield* until("every stage up", allUp(["dns", "apps"]), "10 seconds")
        expect(yield* isRunning("dns")).toBe(false)
        expect(yield* isRunning("app")).toBe(true)
        expect((yield* stageOf("dns")).checks.map((c) => [c.service, c.ok])).toEqual([["dns", true]])
      })))

  it.effect("services in no stage come up last, after every configured stage", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("dns"), webService("extra")], ready)
        yield* runBoot([stage("dns", ["dns"])])

        yield* until("dns started", isRunning("dns"))
        yield* advance("3 seconds")
        expect((yield* Effect.flatMap(BootSequencer, (b) => b.status)).stages.map((s) => [s.name, s.services, s.state])).toEqual([
          ["dns", ["dns"], "starting"],
          ["unstaged", ["extra"], "waiting"]
        ])
        expect(yield* isRunning("extra")).toBe(false)

        ready.add("dns")
        yield* until("every stage up", allUp(["dns", "unstaged"]))
        expect(yield* isRunning("extra")).toBe(true)
      })))

  it.effect("an engine that lost every container is reported as such; one that kept some is not", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("dns"), webService("app")], ready)
        ready.add("dns")
        const first = yield* runBoot([stage("dns", ["dns"]), stage("apps", ["app"], { exec: false })])
        yield* until("every stage up", allUp(["dns", "apps"]))
        expect((yield* bootEvents).filter((e) => e.includes("engine has none"))).toEqual([
          "the engine has none of the registry's 2 containers (engine reset?); recovering them in stage order"
        ])
        yield* Fiber.interrupt(first)

        // A second boot with the containers still there: no such report.
        const second = yield* runBoot([stage("dns", ["dns"]), stage("apps", ["app"], { exec: false })])
        yield* advance("3 seconds")
        expect((yield* bootEvents).filter((e) => e.includes("engine has none"))).toHaveLength(1)
        yield* Fiber.interrupt(second)
      })))

  it.effect("an earlier stage's service that keeps failing its checks is restarted, and the later stages are re-gated behind it", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("dns"), webService("app")], ready)
        ready.add("dns")
        ready.add("app")
        yield* runBoot([stage("dns", ["dns"]), stage("apps", ["app"])], { checkInterval: "1 second", restartAfter: 3 })
        yield* until("every stage up", allUp(["dns", "apps"]))
        const restarts = Effect.flatMap(Registry, (r) => Effect.map(r.components("dns"), (cs) => cs.map((c) => c.restarts)))
        expect(yield* restarts).toEqual([0])

        // Runs of failures below the threshold, each ended by a passing check: nothing happens.
        // (1.5 s holds one or two checks: each run stays under 3, the three together reach it.)
        for (let i = 0; i < 3; i++) {
          ready.delete("dns")
          yield* advance("1.5 seconds")
          ready.add("dns")
          yield* advance("1.5 seconds")
        }
        expect(yield* restarts).toEqual([0])
        expect(yield* stageStates).toEqual({ dns: "up", apps: "up" })

        // Three in a row: dns is restarted, apps waits behind it until dns is healthy again.
        ready.delete("dns")
        yield* until("dns restarted", Effect.map(restarts, (r) => r[0] === 1), "10 seconds")
        expect(yield* bootEvents).toContain("stage dns: dns failed 3 checks in a row; restarting, then re-gating the later stages")
        yield* advance("3 seconds")
        expect((yield* stageOf("apps")).state).toBe("waiting")

        ready.add("dns")
        yield* until("every stage up again", allUp(["dns", "apps"]))
        expect(yield* restarts).toEqual([1])
        const app = Effect.flatMap(Registry, (r) => Effect.map(r.components("app"), (cs) => cs.map((c) => c.restarts)))
        expect(yield* app).toEqual([0])
      })))

  it.effect("a service deployed after the sequence started is supervised from the next check on, and restarted when it keeps failing", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        const healthChecked = (name: string) => webService(name, `[components.health]\nkind = "exec"\ncommand = ["ready?"]\ninterval = "1s"\ntimeout = "1s"\nretries = 1`)
        const restartsOf = (service: string) => Effect.flatMap(Registry, (r) => Effect.map(r.components(service), (cs) => cs.map((c) => c.restarts)))
        const stagesNow = Effect.flatMap(BootSequencer, (b) => Effect.map(b.status, (s) => s.stages.map((x) => [x.name, x.services, x.state])))
        yield* deployThenLoseContainers([webService("dns")], ready)
        ready.add("dns")
        // "late" is named by the apps stage but not deployed yet: the stage gives up on it at its timeout.
        yield* runBoot([stage("dns", ["dns"]), stage("apps", ["late"], { timeout: "2 seconds", onFailure: "continue" })], { checkInterval: "1 second", restartAfter: 3 })
        yield* until("dns up, apps failed", Effect.map(stageStates, (s) => s.dns === "up" && s.apps === "failed"))
        // Supervised while absent, it is not restarted: there is nothing to restart.
        yield* advance("10 seconds")
        expect((yield* bootEvents).filter((e) => e.includes("restart"))).toEqual([])
        expect(yield* stagesNow).toEqual([["dns", ["dns"], "up"], ["apps", ["late"], "failed"]])

        // Deployed now, with "extra", which no stage names: both are picked up at the next check.
        const lifecycle = yield* Lifecycle
        ready.add("late")
        ready.add("extra")
        yield* lifecycle.deploy(webService("late"), { dryRun: false }, () => Effect.void)
        yield* lifecycle.deploy(healthChecked("extra"), { dryRun: false }, () => Effect.void)
        // The implicit last stage appears with it, and is gated as at boot.
        yield* until("unstaged up", allUp(["unstaged"]), "10 seconds")
        expect(yield* stagesNow).toEqual([["dns", ["dns"], "up"], ["apps", ["late"], "failed"], ["unstaged", ["extra"], "up"]])
        yield* advance("2 seconds")
        expect((yield* stageOf("apps")).checks.map((c) => [c.service, c.ok])).toEqual([["late", true]])
        expect((yield* stageOf("unstaged")).checks.map((c) => [c.service, c.ok])).toEqual([["extra", true]])

        // Failing its checks three in a row, each is restarted.
        ready.delete("extra")
        yield* until("extra restarted", Effect.map(restartsOf("extra"), (r) => r[0] === 1), "10 seconds")
        expect(yield* bootEvents).toContain("stage unstaged: extra failed 3 checks in a row; restarting, then re-gating the later stages")
        ready.add("extra")
        ready.delete("late")
        yield* until("late restarted", Effect.map(restartsOf("late"), (r) => r[0] === 1), "10 seconds")
        expect(yield* bootEvents).toContain("stage apps: late failed 3 checks in a row; restarting, then re-gating the later stages")
        ready.add("late")
        yield* until("every stage up", allUp(["dns", "apps", "unstaged"]), "1 minute")
        expect(yield* restartsOf("dns")).toEqual([0])
      })))

  it.effect("a service undeployed after the sequence started is dropped from supervision, not restarted", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("dns"), webService("app"), webService("extra"), webService("other")], ready)
        for (const s of ["dns", "app", "extra", "other"]) ready.add(s)
        yield* runBoot([stage("dns", ["dns"]), stage("apps", ["app"], { onFailure: "continue" })], { checkInterval: "1 second", restartAfter: 2 })
        yield* until("every stage up", allUp(["dns", "apps", "unstaged"]))
        expect((yield* stageOf("unstaged")).services).toEqual(["extra", "other"])

        const lifecycle = yield* Lifecycle
        yield* lifecycle.undeploy("app")
        yield* lifecycle.undeploy("extra")
        yield* advance("10 seconds")
        // Nothing restarted or re-gated: the stage naming app says it is not deployed; the implicit stage no longer lists extra.
        expect((yield* bootEvents).filter((e) => e.includes("restart"))).toEqual([])
        expect(yield* stageStates).toEqual({ dns: "up", apps: "up", unstaged: "up" })
        expect((yield* stageOf("apps")).checks.map((c) => [c.service, c.ok, c.detail])).toEqual([["app", false, "service app is not deployed on this node"]])
        expect((yield* stageOf("unstaged")).services).toEqual(["other"])
        expect((yield* stageOf("unstaged")).checks.map((c) => c.service)).toEqual(["other"])

        // The last service of the implicit stage gone: so is the stage.
        yield* lifecycle.undeploy("other")
        yield* advance("3 seconds")
        expect(Object.keys(yield* stageStates)).toEqual(["dns", "apps"])
        expect((yield* bootEvents).filter((e) => e.includes("restart"))).toEqual([])
      })))

  it.effect("a service whose stored definition cannot be read is still recreated from its recorded containers, gated on them running", () =>
    withBoot((ready) =>
      Effect.gen(function* () {
        yield* deployThenLoseContainers([webService("core"), webService("app")], ready)
        // A definition this agent cannot read (an older format, a damaged row).
        const sql = yield* SqlClient.SqlClient
        yield* sql`UPDATE services SET definition = ${JSON.stringify({ format: "v0", containers: [{ image: "web" }] })} WHERE name = ${"core"}`
        yield* runBoot([stage("core", ["core"], { exec: false }), stage("apps", ["app"], { exec: false })])

        yield* until("every stage up", allUp(["core", "apps"]), "30 seconds")
        expect(yield* isRunning("core")).toBe(true)
        expect(yield* isRunning("app")).toBe(true)
        expect(Option.isSome(yield* Effect.flatMap(Registry, (r) => r.service("core")))).toBe(true)
      })))
})
