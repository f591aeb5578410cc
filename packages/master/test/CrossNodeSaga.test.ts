/**
 * The cross-node saga (deploy: worker, then edge routes, then the master's record; undeploy:
 * edge routes, then worker) and the edge reconciler, over an in-memory fleet (one worker, two
 * edge nodes) whose calls fail on demand, and a real SQLite master database.
 *
 * Property: after every operation, every route on an edge is one the master has a row for, and
 * every public hostname of a service running on the worker has an `active` row; after the
 * sequence and one reconcile round with no faults, edges hold exactly the active rows, every
 * edge route's service runs on the worker, and every public hostname on the worker is served.
 *
 * MCP_EDGE_SAGA_RUNS overrides the number of runs (default 300).
 */
import { describe, expect, it } from "@effect/vitest"
import { type Deploy, Validation } from "@mcp/domain"
import { Effect, Either, Exit, FastCheck as fc, Fiber, Logger, LogLevel, Option, Stream } from "effect"
import * as CrossNodeSaga from "../src/services/CrossNodeSaga.js"
import { EdgeReconciler } from "../src/edge/EdgeReconciler.js"
import { MasterDb } from "../src/db/MasterDb.js"
import type { FleetCalls } from "../src/fleet/FleetCalls.js"
import {
  checkAlways,
  checkConverged,
  deploy,
  edgeList,
  type Faults,
  fakeFleet,
  faultsHit,
  type FleetState,
  HOSTNAME_SETS,
  lifecycle,
  newFleet,
  POINTS,
  rawDefinition,
  running,
  runsAnywhere,
  seedNodes,
  SERVICES,
  setup,
  snapshot,
  undeploy,
  WORKER,
  WORKERS,
  ZONE
} from "./CrossNodeHarness.js"

const RUNS = Number(process.env["MCP_EDGE_SAGA_RUNS"] ?? "") || 300

/**
 * Lets the event loop run between generated runs: a run is all in memory on the TestClock, and
 * thousands of them in a row would keep the worker from answering vitest (a "Timeout calling
 * onTaskUpdate" error at MCP_EDGE_SAGA_RUNS=5000).
 */
const breathe = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

// ---------------------------------------------------------------------------------------------
// Operations.

type Op =
  | { readonly kind: "deploy"; readonly service: string; readonly variant: number; readonly node: keyof typeof WORKERS; readonly faults: Faults }
  | { readonly kind: "undeploy"; readonly service: string; readonly faults: Faults }
  | { readonly kind: "reconcile"; readonly faults: Faults }

const faultsArb: fc.Arbitrary<Faults> = fc.oneof(
  { weight: 2, arbitrary: fc.constant([]) },
  { weight: 3, arbitrary: fc.uniqueArray(fc.tuple(fc.constantFrom(...POINTS), fc.integer({ min: 1, max: 3 })), { minLength: 1, maxLength: 3, selector: ([p]) => p }) }
)
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({
    kind: fc.constant("deploy" as const),
    service: fc.constantFrom(...SERVICES),
    variant: fc.integer({ min: 0, max: HOSTNAME_SETS.length - 1 }),
    // Mostly w1; a deploy to w2 of a service placed on w1 is a move.
    node: fc.constantFrom<keyof typeof WORKERS>("w1", "w1", "w2"),
    faults: faultsArb
  }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("undeploy" as const), service: fc.constantFrom(...SERVICES), faults: faultsArb }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reconcile" as const), faults: faultsArb }) }
)

const runScenario = (ops: ReadonlyArray<Op>) => {
  const state = newFleet()
  return Effect.gen(function* () {
    yield* breathe
    yield* seedNodes
    const reconciler = yield* EdgeReconciler
    const saga = yield* CrossNodeSaga.CrossNodeSaga
    let version = 0
    for (const [i, op] of ops.entries()) {
      const context = `op ${i} ${JSON.stringify(op)}`
      state.armed.clear()
      // A deploy finishes an undeploy its worker did not answer first; finished here, the
      // deploy's own rollback is checked against the state it found.
      if (op.kind === "deploy") yield* saga.retryOpen
      for (const [point, count] of op.faults) state.armed.set(point, count)
      const before = yield* snapshot(state)
      const workerBefore = running(state)
      const staleBefore = yield* (yield* MasterDb).staleCopies
      const placedBefore = "service" in op ? before.placements.find((p) => p.service === op.service)?.node : undefined
      if (op.kind === "deploy") {
        const raw = rawDefinition(op.service, op.variant, ++version)
        const { exit } = yield* deploy(op.service, raw, op.node)
        if (op.variant === HOSTNAME_SETS.length - 1) {
          // Rejected before any node was asked: nothing changed anywhere.
          expect(Either.isLeft(exit) && exit.left._tag, context).toBe("InvalidDefinition")
          expect(yield* snapshot(state), `${context}: a rejected deploy changed something`).toEqual(before)
          expect(running(state), context).toEqual(workerBefore)
        } else if (Either.isRight(exit)) {
          expect(state.workers.get(op.node)!.get(op.service), `${context}: deployed`).toEqual(raw)
          expect((yield* snapshot(state)).placements.find((p) => p.service === op.service)?.node, `${context}: placed where deployed`).toBe(op.node)
        } else {
          // Hostnames always contain their service's name (never taken by another service) and
          // every node is reachable unless a fault says otherwise: a failure needs a fault that fired.
          expect(faultsHit(state, op.faults), `${context}: deploy failed with no injected fault hit: ${exit.left._tag}: ${exit.left.message}`).not.toEqual([])
          expect(["DeployFailed", "PeerFailed", "NodeUnreachable"], `${context}: ${exit.left.message}`).toContain(exit.left._tag)
          if (exit.left._tag === "DeployFailed") {
            // Rolled back on every node: the worker runs what it ran before, and the master's record is as it was.
            expect((yield* snapshot(state)).placements, `${context}: placements after a rolled-back deploy`).toEqual(before.placements)
            const copyAfter = running(state).filter((r) => r.service === op.service && r.node === op.node)
            const copyBefore = workerBefore.filter((r) => r.service === op.service && r.node === op.node)
            // An old copy recorded for removal (a move back to its node) may be gone with the rollback.
            const stale = staleBefore.some((c) => c.service === op.service && c.node === op.node)
            if (!(stale && copyAfter.length === 0)) expect(copyAfter, `${context}: ${op.service} on ${op.node} after a rolled-back deploy`).toEqual(copyBefore)
          }
        }
      } else if (op.kind === "undeploy") {
        const exit = yield* undeploy(op.service)
        if (Either.isRight(exit)) {
          const stale = (yield* (yield* MasterDb).staleCopies).filter((c) => c.service === op.service).map((c) => c.node)
          expect(running(state).filter((r) => r.service === op.service && !stale.includes(r.node)), `${context}: still on a worker after undeploy`).toEqual([])
          // Removals an unreachable edge deferred stay recorded as `removing`, for the reconciler.
          expect((yield* (yield* MasterDb).edgeRoutesOf(op.service)).filter((r) => r.state === "active").map((r) => r.route.hostname), `${context}: routes still wanted after undeploy`).toEqual([])
          expect((yield* snapshot(state)).placements.some((p) => p.service === op.service), `${context}: still placed after undeploy`).toBe(false)
        } else if (placedBefore === undefined) {
          // The model knows it is not deployed: the only failure allowed.
          expect(exit.left._tag, `${context}: undeploy of a service that is not placed`).toBe("ServiceNotFound")
        } else {
          expect(faultsHit(state, op.faults), `${context}: undeploy failed with no injected fault hit: ${exit.left._tag}: ${exit.left.message}`).not.toEqual([])
        }
      } else {
        // The master's periodic work: sagas left open asked again, then the edges reconciled.
        yield* saga.retryOpen
        const report = yield* reconciler.runOnce
        // Every node is known to the master: a round fails somewhere only where a fault fired.
        if (faultsHit(state, op.faults).length === 0) expect(report.failures, `${context}: reconcile round with no injected fault hit`).toEqual([])
      }
      state.armed.clear()
      yield* checkAlways(state, context)
    }
    yield* saga.retryOpen
    expect(yield* (yield* MasterDb).sagasIn("running"), `after ${ops.length} ops: sagas left open once every worker answers`).toEqual([])
    const last = yield* reconciler.runOnce
    expect(last.failures, `after ${ops.length} ops: the last reconcile round has no fault to hit`).toEqual([])
    yield* checkConverged(state, `after ${ops.length} ops`)
  }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
}

describe("cross-node saga", () => {
  it.effect("deploys a public route through the edge and undeploys it from both nodes", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const raw = rawDefinition("alpha", 4, 1)
      const { exit, events } = yield* deploy("alpha", raw)
      expect(Either.isRight(exit)).toBe(true)
      expect([...state.edges.get("e1")!.keys()]).toEqual(["www-alpha.example.com"])
      expect([...state.edges.get("e2")!.keys()]).toEqual(["alpha.b.example.com"])
      const route = state.edges.get("e2")!.get("alpha.b.example.com")!
      // The edge forwards to the worker's proxy listener, never a container's host port.
      expect([route.backendHostname, route.backendPort, route.workerNode]).toEqual(["10.0.0.1", 8443, "w1"])
      expect(events.filter((e) => e._tag === "DeployStep" && e.step === "edge-resolve").map((e) => (e as Deploy.DeployStep).node)).toEqual(["e1", "e2"])
      expect(Either.isRight(yield* undeploy("alpha"))).toBe(true)
      expect(running(state).length + state.edges.get("e1")!.size + state.edges.get("e2")!.size).toBe(0)
      expect(yield* (yield* MasterDb).edgeRoutes).toEqual([])
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a dry run names the edge node of each public hostname and changes nothing", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const saga = yield* CrossNodeSaga.CrossNodeSaga
      const raw = rawDefinition("alpha", 4, 1)
      const events: Array<Deploy.DeployEvent> = []
      const definition = Either.getOrThrow(Validation.decodeDefinition(raw, { internalZone: ZONE }))
      yield* saga.deploy({ definition, raw, worker: WORKER as never, placementReason: "test", dryRun: true }, (e) => Effect.sync(() => events.push(e)))
      const plan = events.find((e): e is Deploy.DeployPlanned => e._tag === "DeployPlanned")?.plan
      expect(plan?.edgeRoutes).toEqual([{ hostname: "www-alpha.example.com", edgeNode: "e1" }, { hostname: "alpha.b.example.com", edgeNode: "e2" }])
      expect(running(state)).toEqual([])
      expect(yield* (yield* MasterDb).edgeRoutes).toEqual([])
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("an edge that fails mid-setup leaves nothing on the worker, and its half-made route is removed", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      state.armed.set("edge.setup.lost", 1)
      const { exit, events } = yield* deploy("alpha", rawDefinition("alpha", 1, 1))
      expect(Either.isLeft(exit) && exit.left._tag).toBe("DeployFailed")
      expect(Either.isLeft(exit) && exit.left.message).toContain("edge route alpha.example.com on e1")
      expect(running(state)).toEqual([])
      expect(state.edges.get("e1")!.size).toBe(0)
      expect(events.some((e) => e._tag === "DeployStep" && e.status === "compensated" && e.node === "w1")).toBe(true)
      expect(yield* (yield* MasterDb).placements).toEqual([])
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a deploy whose worker cannot be rolled back now stays open and is rolled back later; one refused for good rolls forward", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const db = yield* MasterDb
      // The edge fails, and undoing the worker fails in a way worth retrying: open, nothing placed.
      state.armed.set("edge.setup", 1)
      state.armed.set("worker.undeploy", 2)
      const { exit } = yield* deploy("alpha", rawDefinition("alpha", 1, 1))
      expect(Either.isLeft(exit) && exit.left.message).toContain("could not roll it back now")
      expect((yield* db.sagasIn("running")).map((s) => s.kind)).toEqual(["deploy"])
      expect(yield* db.placements).toEqual([])
      yield* (yield* CrossNodeSaga.CrossNodeSaga).retryOpen
      expect(yield* db.sagasIn("running")).toEqual([])
      expect(running(state)).toEqual([])
      // Refused for good: the worker keeps the new definition, and the master records it so.
      state.armed.set("edge.setup", 1)
      state.armed.set("worker.undeploy.refused", 2)
      const second = yield* deploy("alpha", rawDefinition("alpha", 1, 2))
      expect(Either.isLeft(second.exit) && second.exit.left.message).toContain("stays deployed on w1")
      expect((yield* db.placements).map((p) => `${p.service} ${p.node}`)).toEqual(["alpha w1"])
      expect(yield* db.sagasIn("running")).toEqual([])
      expect((yield* (yield* EdgeReconciler).runOnce).failures).toEqual([])
      yield* checkConverged(state, "after the roll forward")
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("an edge that cannot be reached to undo its route gets it removed by the reconciler", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      state.armed.set("edge.setup.lost", 1)
      state.armed.set("edge.remove", 1)
      const { exit } = yield* deploy("alpha", rawDefinition("alpha", 1, 1))
      expect(Either.isLeft(exit)).toBe(true)
      expect(running(state)).toEqual([])
      expect((yield* (yield* MasterDb).edgeRoutes).map((r) => r.state)).toEqual(["removing"])
      const report = yield* (yield* EdgeReconciler).runOnce
      expect(report.repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "removed" }])
      expect(state.edges.get("e1")!.size).toBe(0)
      expect(yield* (yield* MasterDb).edgeRoutes).toEqual([])
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("undeploy with its edge down fails without touching the worker", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 1))).exit)).toBe(true)
      state.armed.set("edge.remove", 1)
      const exit = yield* undeploy("alpha")
      expect(Either.isLeft(exit) && exit.left.message).toContain("nothing was undeployed")
      expect(runsAnywhere(state, "alpha")).toBe(true)
      expect(state.edges.get("e1")!.has("alpha.example.com")).toBe(true)
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a hostname outside the allowed domains is rejected naming the field, before any node is asked", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const { exit } = yield* deploy("alpha", rawDefinition("alpha", 5, 1))
      expect(Either.isLeft(exit) && exit.left._tag).toBe("InvalidDefinition")
      const problems = Either.isLeft(exit) && exit.left._tag === "InvalidDefinition" ? exit.left.problems : []
      expect(problems.map((p) => p.path)).toEqual(["components[0].routes[1].hostname"])
      expect(problems[0]!.message).toContain("[edge] allowed_domains")
      expect(running(state)).toEqual([])
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a public hostname another service publishes is refused, and that service's route is kept", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 1))).exit)).toBe(true)
      const thief = { ...rawDefinition("beta", 0, 1), components: [{ ...rawDefinition("beta", 0, 1).components[0]!, routes: [{ name: "public0", port: 8443, mode: "l7", hostname: "alpha.example.com", public: true }] }] }
      const { exit } = yield* deploy("beta", thief)
      const problems = Either.isLeft(exit) && exit.left._tag === "InvalidDefinition" ? exit.left.problems : []
      expect(problems.map((p) => p.message)).toEqual([expect.stringContaining("already published by service alpha")])
      expect(runsAnywhere(state, "beta")).toBe(false)
      expect(state.edges.get("e1")!.get("alpha.example.com")?.service).toBe("alpha")
      expect((yield* (yield* MasterDb).edgeRoute("alpha.example.com")).pipe(Option.map((r) => r.route.service))).toEqual(Option.some("alpha"))
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a moved service leaves its old node once the new one serves; an unreachable old node is retried", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 1), "w1")).exit)).toBe(true)
      state.armed.set("worker.undeploy", 1)
      const { exit, events } = yield* deploy("alpha", rawDefinition("alpha", 1, 2), "w2")
      expect(Either.isRight(exit)).toBe(true)
      expect(events.some((e) => e._tag === "DeployStep" && e.step === "move" && e.status === "failed")).toBe(true)
      expect(state.edges.get("e1")!.get("alpha.example.com")?.workerNode).toBe("w2")
      expect(running(state).map((r) => r.node).sort()).toEqual(["w1", "w2"])
      expect(yield* (yield* MasterDb).staleCopies).toEqual([{ service: "alpha", node: "w1" }])
      const report = yield* (yield* EdgeReconciler).runOnce
      expect(report.retired).toEqual([{ service: "alpha", node: "w1" }])
      expect(running(state).map((r) => r.node)).toEqual(["w2"])
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect.prop(
    "no edge route without its service and no public service without its edge route, whatever fails",
    [fc.array(opArb, { minLength: 1, maxLength: 12 })],
    ([ops]) => runScenario(ops),
    { timeout: 300_000, fastCheck: { numRuns: RUNS } }
  )
})

// ---------------------------------------------------------------------------------------------
// A master killed mid-saga: the fleet call at a chosen index never returns to the master (the
// master's fiber is interrupted there, before the call or after the agent did the work), and the
// next start's `recover` finishes or undoes the saga from the journal alone.

interface Crash {
  /** The index of the fleet call the master dies at, counted from the start of the operation. */
  readonly at: number
  /** Dies after the agent did the call's work (the answer is lost) instead of before. */
  readonly after: boolean
}

type CrashOp =
  | { readonly kind: "deploy"; readonly service: string; readonly variant: number; readonly node: keyof typeof WORKERS; readonly crash: Crash | undefined }
  | { readonly kind: "undeploy"; readonly service: string; readonly crash: Crash | undefined }

const crashArb: fc.Arbitrary<Crash | undefined> = fc.option(fc.record({ at: fc.integer({ min: 0, max: 6 }), after: fc.boolean() }), { nil: undefined, freq: 4 })
const crashOpArb: fc.Arbitrary<CrashOp> = fc.oneof(
  { weight: 3, arbitrary: fc.record({
    kind: fc.constant("deploy" as const),
    service: fc.constantFrom(...SERVICES),
    // Not the variant outside the allowed domains: it is refused before any saga begins.
    variant: fc.integer({ min: 0, max: HOSTNAME_SETS.length - 2 }),
    node: fc.constantFrom<keyof typeof WORKERS>("w1", "w1", "w2"),
    crash: crashArb
  }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("undeploy" as const), service: fc.constantFrom(...SERVICES), crash: crashArb }) }
)

/** The fake fleet, with the master dying at call `crash.at` of the current operation. */
const dyingFleet = (state: FleetState, plan: { crash: Crash | undefined; calls: number }): FleetCalls => {
  const inner = fakeFleet(state)
  const dies = () => {
    const i = plan.calls++
    return plan.crash !== undefined && plan.crash.at === i ? plan.crash : undefined
  }
  const gate = <A, E>(call: Effect.Effect<A, E>) =>
    Effect.suspend(() => {
      const crash = dies()
      return crash === undefined ? call : crash.after ? Effect.zipRight(Effect.exit(call), Effect.interrupt) : Effect.interrupt
    })
  return {
    deploy: (worker, raw, dryRun) =>
      Stream.suspend(() => {
        const crash = dies()
        if (crash === undefined) return inner.deploy(worker, raw, dryRun)
        const work = crash.after ? Stream.drain(inner.deploy(worker, raw, dryRun)).pipe(Stream.catchAll(() => Stream.empty)) : Stream.empty
        return Stream.concat(work, Stream.fromEffect(Effect.interrupt))
      }),
    undeploy: (worker, service) => gate(inner.undeploy(worker, service)),
    stop: (worker, service) => gate(inner.stop(worker, service)),
    start: (worker, service) => gate(inner.start(worker, service)),
    proxyAddress: (worker) => gate(inner.proxyAddress(worker)),
    setupEdgeRoute: (edge, request) => gate(inner.setupEdgeRoute(edge, request)),
    removeEdgeRoute: (edge, hostname) => gate(inner.removeEdgeRoute(edge, hostname)),
    listEdgeRoutes: (edge) => gate(inner.listEdgeRoutes(edge))
  }
}

const runCrashScenario = (ops: ReadonlyArray<CrashOp>) => {
  const state = newFleet()
  const plan = { crash: undefined as Crash | undefined, calls: 0 }
  return Effect.gen(function* () {
    yield* breathe
    yield* seedNodes
    const db = yield* MasterDb
    const saga = yield* CrossNodeSaga.CrossNodeSaga
    let version = 0
    for (const [i, op] of ops.entries()) {
      const context = `op ${i} ${JSON.stringify(op)}`
      plan.crash = op.crash
      plan.calls = 0
      const raw = op.kind === "deploy" ? rawDefinition(op.service, op.variant, ++version) : undefined
      const run = op.kind === "deploy" ? Effect.asVoid(deploy(op.service, raw, op.node)) : Effect.asVoid(undeploy(op.service))
      const exit = yield* Effect.flatMap(Effect.fork(run), Fiber.await)
      plan.crash = undefined
      if (Exit.isInterrupted(exit)) {
        // The master restarts: what the journal shows open is finished or undone (a master killed
        // at a read before the saga began left none).
        expect((yield* db.sagasIn("running")).length, `${context}: open sagas after the kill`).toBeLessThanOrEqual(1)
        yield* saga.recover
        expect(yield* db.sagasIn("running"), `${context}: sagas left open after recovery`).toEqual([])
        if (op.kind === "deploy") {
          // Not half-done: either the deploy is whole (placed where it runs, with this definition)
          // or the service is back where and as it was.
          const placed = Option.getOrUndefined(yield* db.placement(op.service))
          const stored = Option.getOrUndefined(yield* db.definition(op.service))
          if (placed === op.node && JSON.stringify(stored) === JSON.stringify(raw)) {
            expect(state.workers.get(op.node)!.get(op.service), `${context}: recorded as deployed but not running`).toEqual(raw)
          } else {
            expect(running(state).some((r) => JSON.stringify(r.raw) === JSON.stringify(raw)), `${context}: rolled back but the new definition still runs`).toBe(false)
          }
        }
      } else {
        expect(Exit.isSuccess(exit), `${context}: ${Exit.isFailure(exit) ? String(exit.cause) : ""}`).toBe(true)
      }
      yield* checkAlways(state, context)
    }
    const last = yield* (yield* EdgeReconciler).runOnce
    expect(last.failures, `after ${ops.length} ops: reconcile failures`).toEqual([])
    yield* checkConverged(state, `after ${ops.length} ops`)
  }).pipe(Effect.provide(setup(state, dyingFleet(state, plan))), Logger.withMinimumLogLevel(LogLevel.None))
}

describe("a master killed mid-saga", () => {
  it.effect.prop(
    "after the next start's recovery no saga is open, no deploy is half-done, and a reconcile round converges the edges",
    [fc.array(crashOpArb, { minLength: 1, maxLength: 8 })],
    ([ops]) => runCrashScenario(ops),
    { timeout: 300_000, fastCheck: { numRuns: RUNS } }
  )
})

// ---------------------------------------------------------------------------------------------
// Stop and start carry the service's public edge routes: a stopped service is not published.

const served = (state: FleetState) => [...state.edges.entries()].flatMap(([edge, routes]) => [...routes.keys()].map((h) => `${h} ${edge}`)).sort()

describe("stop and start", () => {
  it.effect("stop takes the service's public routes off its edges; start sets them up again", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const db = yield* MasterDb
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 4, 1))).exit)).toBe(true)
      const published = ["alpha.b.example.com e2", "www-alpha.example.com e1"]
      expect(served(state)).toEqual(published)

      const stopped = yield* lifecycle("alpha", "stop")
      expect(Either.isRight(stopped) && stopped.right.active).toBe(false)
      expect(running(state)).toEqual([])
      expect(served(state), "no edge answers for a stopped service").toEqual([])
      expect(yield* edgeList, "mcp edge list").toEqual([])
      expect(yield* db.edgeRoutes).toEqual([])
      // Still deployed: placed, and its hostnames still its own.
      expect((yield* db.placements).map((p) => p.service)).toEqual(["alpha"])
      // The reconciler does not put the routes of a stopped service back.
      expect((yield* (yield* EdgeReconciler).runOnce).repairs).toEqual([])
      yield* checkConverged(state, "after stop")

      const started = yield* lifecycle("alpha", "start")
      expect(Either.isRight(started) && started.right.active).toBe(true)
      expect(served(state)).toEqual(published)
      expect((yield* edgeList).sort()).toEqual(published)
      const route = state.edges.get("e2")!.get("alpha.b.example.com")!
      expect([route.backendHostname, route.backendPort, route.workerNode]).toEqual(["10.0.0.1", 8443, "w1"])
      expect((yield* db.edgeRoute("alpha.b.example.com")).pipe(Option.map((r) => r.route.certSerial)), "the record holds the edge's certificate").toEqual(Option.some(route.certSerial))
      expect(yield* db.sagasIn("running")).toEqual([])
      yield* checkConverged(state, "after start")
      // Stop and start again: idempotent on the worker, and the same routes.
      expect(Either.isRight(yield* lifecycle("alpha", "start"))).toBe(true)
      expect(served(state)).toEqual(published)
      yield* checkConverged(state, "after a second start")
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a stop whose edge cannot be reached stops the service, says so, and the reconciler removes the route", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const db = yield* MasterDb
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 1))).exit)).toBe(true)
      state.armed.set("edge.remove", 1)
      const exit = yield* lifecycle("alpha", "stop")
      expect(Either.isLeft(exit) && exit.left._tag).toBe("PeerFailed")
      expect(Either.isLeft(exit) && exit.left.message).toContain("alpha is stopped on w1, but its edge route alpha.example.com on e1")
      expect(Either.isLeft(exit) && exit.left.message).toContain("reconciler")
      expect(running(state)).toEqual([])
      // Recorded for removal: not listed as published, and the reconciler finishes it.
      expect((yield* db.edgeRoutes).map((r) => `${r.route.hostname} ${r.state}`)).toEqual(["alpha.example.com removing"])
      expect(yield* edgeList).toEqual([])
      yield* checkAlways(state, "after a stop with its edge down")
      const report = yield* (yield* EdgeReconciler).runOnce
      expect(report.repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "removed" }])
      expect(served(state)).toEqual([])
      yield* checkConverged(state, "after the reconciler")
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a start whose edge cannot be reached runs the service, says so, and the reconciler sets the route up", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 1))).exit)).toBe(true)
      expect(Either.isRight(yield* lifecycle("alpha", "stop"))).toBe(true)
      state.armed.set("edge.setup", 1)
      const exit = yield* lifecycle("alpha", "start")
      expect(Either.isLeft(exit) && exit.left._tag).toBe("PeerFailed")
      expect(Either.isLeft(exit) && exit.left.message).toContain("alpha is running on w1, but its edge route alpha.example.com on e1")
      expect(runsAnywhere(state, "alpha")).toBe(true)
      expect(yield* edgeList).toEqual(["alpha.example.com e1"])
      yield* checkAlways(state, "after a start with its edge down")
      const report = yield* (yield* EdgeReconciler).runOnce
      expect(report.repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "set-up" }])
      yield* checkConverged(state, "after the reconciler")
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a stop or start its worker refuses changes nothing on the edges", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const db = yield* MasterDb
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 1))).exit)).toBe(true)
      state.armed.set("worker.stop", 1)
      const stop = yield* lifecycle("alpha", "stop")
      expect(Either.isLeft(stop) && stop.left._tag).toBe("PeerFailed")
      expect(served(state)).toEqual(["alpha.example.com e1"])
      expect(yield* edgeList).toEqual(["alpha.example.com e1"])
      expect(Either.isRight(yield* lifecycle("alpha", "stop"))).toBe(true)
      state.armed.set("worker.start", 1)
      expect(Either.isLeft(yield* lifecycle("alpha", "start"))).toBe(true)
      expect(served(state)).toEqual([])
      expect(yield* db.edgeRoutes).toEqual([])
      expect(yield* db.sagasIn("running")).toEqual([])
      yield* checkConverged(state, "after the refusals")
      // A service the master has not placed: the typed error, nothing asked.
      const unknown = yield* lifecycle("beta", "start")
      expect(Either.isLeft(unknown) && unknown.left._tag).toBe("ServiceNotFound")
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a stop or start whose worker's answer is lost stays open, holds the edge routes, and is finished once the worker answers", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const db = yield* MasterDb
      const saga = yield* CrossNodeSaga.CrossNodeSaga
      const reconciler = yield* EdgeReconciler
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 1))).exit)).toBe(true)

      // The agent stopped it, then died before answering.
      state.armed.set("worker.stop.lost", 1)
      const stop = yield* lifecycle("alpha", "stop")
      expect(Either.isLeft(stop) && stop.left._tag).toBe("PeerFailed")
      expect(Either.isLeft(stop) && stop.left.message).toContain("whether it stopped alpha is not known yet")
      expect(running(state)).toEqual([])
      expect((yield* db.sagasIn("running")).map((s) => s.kind)).toEqual(["stop"])
      // Not undone (the worker did stop), and the reconciler leaves its routes to it.
      const held = yield* reconciler.runOnce
      expect(held.repairs).toEqual([])
      expect(held.failures.map((f) => f.target)).toEqual(["alpha"])
      // Once the worker answers: the stop finished, its edge route gone.
      yield* saga.retryOpen
      expect(yield* db.sagasIn("running")).toEqual([])
      expect((yield* reconciler.runOnce).repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "removed" }])
      yield* checkConverged(state, "after the stop was finished")

      // A stop that failed in a way worth retrying (its agent may finish it): open too, until it is done.
      expect(Either.isRight(yield* lifecycle("alpha", "start"))).toBe(true)
      state.armed.set("worker.stop.failed", 1)
      const failed = yield* lifecycle("alpha", "stop")
      expect(Either.isLeft(failed) && failed.left.message).toContain("did not finish it")
      expect((yield* db.sagasIn("running")).map((s) => s.kind)).toEqual(["stop"])
      yield* saga.retryOpen
      expect(yield* db.sagasIn("running")).toEqual([])
      expect(running(state)).toEqual([])
      yield* reconciler.runOnce
      yield* checkConverged(state, "after the failed stop was finished")

      // A start whose answer is lost, then a stop: the start is finished first, then the stop runs.
      state.armed.set("worker.start.lost", 1)
      const start = yield* lifecycle("alpha", "start")
      expect(Either.isLeft(start) && start.left.message).toContain("whether it started alpha is not known yet")
      expect(runsAnywhere(state, "alpha")).toBe(true)
      const again = yield* lifecycle("alpha", "stop")
      expect(Either.isRight(again) && again.right.active).toBe(false)
      expect(yield* db.sagasIn("running")).toEqual([])
      expect(served(state)).toEqual([])
      yield* checkConverged(state, "after the start was finished and the stop ran")
      const events = (yield* db.events(100)).filter((e) => e.service === "alpha").map((e) => e.message)
      expect(events.filter((m) => m.startsWith("the ")), "the recoveries are recorded").toEqual([
        "the stop left open: finished: stopped on w1, its edge routes left to the reconciler",
        "the stop left open: finished: stopped on w1, its edge routes left to the reconciler",
        "the start left open: finished: running on w1, its edge routes left to the reconciler"
      ])
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("an undeploy whose worker does not answer stays open with its edge routes off; new work on the service asks the worker first", () => {
    const state = newFleet()
    return Effect.gen(function* () {
      yield* seedNodes
      const db = yield* MasterDb
      const reconciler = yield* EdgeReconciler
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 1))).exit)).toBe(true)

      state.armed.set("worker.undeploy.unreachable", 1)
      const exit = yield* undeploy("alpha")
      expect(Either.isLeft(exit) && exit.left._tag).toBe("PeerFailed")
      expect(Either.isLeft(exit) && exit.left.message).toContain("whether it undeployed alpha is not known yet")
      // Still placed and running, its public route off and not put back by the reconciler.
      expect(runsAnywhere(state, "alpha")).toBe(true)
      expect((yield* db.placements).map((p) => p.service)).toEqual(["alpha"])
      expect(served(state)).toEqual([])
      yield* reconciler.runOnce
      expect(served(state)).toEqual([])

      // New work waits for it: refused while the worker still does not answer, nothing changed.
      state.armed.set("worker.undeploy.unreachable", 1)
      const start = yield* lifecycle("alpha", "start")
      expect(Either.isLeft(start) && start.left.message).toContain("an earlier change of alpha is not finished")
      expect(runsAnywhere(state, "alpha")).toBe(true)
      // Once it answers, the undeploy is finished first: the stop finds nothing to stop.
      const stop = yield* lifecycle("alpha", "stop")
      expect(Either.isLeft(stop) && stop.left._tag).toBe("ServiceNotFound")
      expect(running(state)).toEqual([])
      expect(yield* db.placements).toEqual([])
      expect(yield* db.sagasIn("running")).toEqual([])

      // The agent undeployed, then died before answering: the retry finds it gone and commits.
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 1, 2))).exit)).toBe(true)
      state.armed.set("worker.undeploy.lost", 1)
      expect(Either.isLeft(yield* undeploy("alpha"))).toBe(true)
      expect(running(state)).toEqual([])
      // An undeploy asked for again is done by the one finished first.
      expect(Either.isRight(yield* undeploy("alpha"))).toBe(true)
      expect(yield* db.placements).toEqual([])
      expect((yield* reconciler.runOnce).failures).toEqual([])
      yield* checkConverged(state, "after the undeploys were finished")
    }).pipe(Effect.provide(setup(state)), Logger.withMinimumLogLevel(LogLevel.None))
  })

  it.effect("a master killed after asking the worker finishes the stop, then the start, at its next start", () => {
    const state = newFleet()
    // The master dies at the given fleet call of the operation, after the agent did the work.
    const plan = { crash: undefined as Crash | undefined, calls: 0 }
    const killedAt = (at: number, operation: "stop" | "start") =>
      Effect.gen(function* () {
        plan.crash = { at, after: true }
        plan.calls = 0
        const exit = yield* Effect.flatMap(Effect.fork(lifecycle("alpha", operation)), Fiber.await)
        plan.crash = undefined
        expect(Exit.isInterrupted(exit), `${operation}: the master was killed`).toBe(true)
        const db = yield* MasterDb
        expect((yield* db.sagasIn("running")).map((s) => s.kind)).toEqual([operation])
        yield* (yield* CrossNodeSaga.CrossNodeSaga).recover
        expect(yield* db.sagasIn("running")).toEqual([])
        yield* checkAlways(state, `after the ${operation} was recovered`)
        expect((yield* (yield* EdgeReconciler).runOnce).failures).toEqual([])
        yield* checkConverged(state, `after the ${operation} was recovered and reconciled`)
      })
    return Effect.gen(function* () {
      yield* seedNodes
      expect(Either.isRight((yield* deploy("alpha", rawDefinition("alpha", 4, 1))).exit)).toBe(true)
      // Stop: the worker's stop is call 0.
      yield* killedAt(0, "stop")
      expect(running(state)).toEqual([])
      expect(served(state)).toEqual([])
      // Start: the worker's proxy address is call 0, its start call 1.
      yield* killedAt(1, "start")
      expect(runsAnywhere(state, "alpha")).toBe(true)
      expect(served(state)).toEqual(["alpha.b.example.com e2", "www-alpha.example.com e1"])
    }).pipe(Effect.provide(setup(state, dyingFleet(state, plan))), Logger.withMinimumLogLevel(LogLevel.None))
  })
})
