/**
 * The edge reconciler on its own: the master's database and an in-memory fleet (two workers, two
 * edge nodes) are set up by hand, one round (`runOnce`) runs, and the test reads what the round
 * asked of the fleet, what the edges and workers hold after it, the rows left in the master's
 * database, and the round's report. The reconciler's part in the cross-node saga's property is
 * in CrossNodeSaga.test.ts; its supervision (`run`, `status`) in Tree.test.ts.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors, type Routes } from "@mcp/domain"
import { Deferred, Effect, Fiber, Logger, LogLevel, Option, Stream } from "effect"
import { EdgeReconciler } from "../src/edge/EdgeReconciler.js"
import type { FleetCalls } from "../src/fleet/FleetCalls.js"
import { MasterDb } from "../src/db/MasterDb.js"
import { ServiceCoordinators } from "../src/services/ServiceCoordinators.js"
import { fakeFleet, type FleetState, newFleet, rawDefinition, seedNodes, setup } from "./CrossNodeHarness.js"

// ---------------------------------------------------------------------------------------------
// A fleet that records the calls that change something, and whose nodes can be unreachable.

interface Fleet {
  readonly state: FleetState
  /** "setup e1 alpha.example.com", "remove e1 alpha.example.com", "undeploy w1 alpha" */
  readonly calls: Array<string>
  /** Nodes every call to which fails as unreachable. */
  readonly down: Set<string>
}

const unreachable = (node: string) => new Errors.NodeUnreachable({ node, addresses: ["127.0.0.1:9"], reason: "connection refused (test)" })

const recordingFleet = (fleet: Fleet): FleetCalls => {
  const inner = fakeFleet(fleet.state)
  const reach = <A, E>(node: string, call: string | undefined, effect: Effect.Effect<A, E>) =>
    Effect.suspend((): Effect.Effect<A, E | Errors.NodeUnreachable> => {
      if (fleet.down.has(node)) return Effect.fail(unreachable(node))
      if (call !== undefined) fleet.calls.push(call)
      return effect
    })
  return {
    deploy: (worker, raw, dryRun) =>
      fleet.down.has(worker.name) ? Stream.fail(new Errors.PeerFailed({ peer: worker.name, operation: "deploy", reason: "unreachable", retryable: true })) : inner.deploy(worker, raw, dryRun),
    undeploy: (worker, service) => reach(worker.name, `undeploy ${worker.name} ${service}`, inner.undeploy(worker, service)),
    stop: (worker, service) => reach(worker.name, `stop ${worker.name} ${service}`, inner.stop(worker, service)),
    start: (worker, service) => reach(worker.name, `start ${worker.name} ${service}`, inner.start(worker, service)),
    proxyAddress: (worker) => reach(worker.name, undefined, inner.proxyAddress(worker)),
    setupEdgeRoute: (edge, request) => reach(edge.name, `setup ${edge.name} ${request.hostname}`, inner.setupEdgeRoute(edge, request)),
    removeEdgeRoute: (edge, hostname) => reach(edge.name, `remove ${edge.name} ${hostname}`, inner.removeEdgeRoute(edge, hostname)),
    listEdgeRoutes: (edge) => reach(edge.name, undefined, inner.listEdgeRoutes(edge))
  }
}

/** Runs `body` against a fresh master database (nodes w1, w2, e1, e2 known) and fleet. */
const withFleet = <A, E>(body: (fleet: Fleet) => Effect.Effect<A, E, MasterDb | EdgeReconciler | ServiceCoordinators>) => {
  const fleet: Fleet = { state: newFleet(), calls: [], down: new Set() }
  return Effect.gen(function* () {
    yield* seedNodes
    return yield* body(fleet)
  }).pipe(Effect.provide(setup(fleet.state, recordingFleet(fleet))), Logger.withMinimumLogLevel(LogLevel.None))
}

// ---------------------------------------------------------------------------------------------
// State.

/** The route an edge serves for `hostname`, forwarding to w1's proxy listener unless told otherwise. */
const route = (hostname: string, edgeNode: string, overrides: Partial<Routes.EdgeRoute> = {}): Routes.EdgeRoute => ({
  hostname: hostname as Routes.EdgeRoute["hostname"],
  edgeNode,
  workerNode: "w1",
  backendHostname: "10.0.0.1",
  backendPort: 8443,
  service: "alpha",
  certSerial: "100",
  certNotAfter: "2027-01-01T00:00:00.000Z",
  ...overrides
})

const onEdge = (fleet: Fleet, r: Routes.EdgeRoute) => fleet.state.edges.get(r.edgeNode)!.set(r.hostname, r)
const edge = (fleet: Fleet, name: string) => [...fleet.state.edges.get(name)!.values()]
const runs = (fleet: Fleet, worker: string, service: string) => fleet.state.workers.get(worker)!.set(service, rawDefinition(service, 1, 1))

const rows = Effect.flatMap(MasterDb, (db) => db.edgeRoutes)
const runOnce = Effect.flatMap(EdgeReconciler, (r) => r.runOnce)

// ---------------------------------------------------------------------------------------------

describe("EdgeReconciler.reconcileServicesNow (between rounds, after open sagas finish)", () => {
  it.effect("sets up the routes of the services named, and leaves the others for the next round", () =>
    withFleet((fleet) =>
      Effect.gen(function* () {
        const db = yield* MasterDb
        yield* db.place("alpha", "w1")
        yield* db.place("beta", "w2")
        yield* db.putEdgeRoute(route("alpha.example.com", "e1"), "active")
        yield* db.putEdgeRoute(route("beta.example.com", "e1", { service: "beta", workerNode: "w2" }), "active")
        yield* (yield* EdgeReconciler).reconcileServicesNow(["alpha"])
        expect(fleet.calls).toEqual(["setup e1 alpha.example.com"])
        expect(edge(fleet, "e1").map((r) => r.hostname)).toEqual(["alpha.example.com"])
      })))

  it.effect("a service whose saga is still open is not touched: its routes wait for the saga", () =>
    withFleet((fleet) =>
      Effect.gen(function* () {
        const db = yield* MasterDb
        yield* db.place("alpha", "w1")
        yield* db.putEdgeRoute(route("alpha.example.com", "e1"), "active")
        yield* db.beginSaga("s-1", "alpha", "start")
        yield* (yield* EdgeReconciler).reconcileServicesNow(["alpha"])
        expect(fleet.calls).toEqual([])
      })))
})

describe("EdgeReconciler.runOnce", () => {
  describe("active rows", () => {
    it.effect("an active row whose route is missing is set up on its edge, and the row takes the edge's answer", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w1")
          yield* db.putEdgeRoute(route("alpha.example.com", "e1", { certSerial: "lost" }), "active")

          const report = yield* runOnce

          expect(fleet.calls).toEqual(["setup e1 alpha.example.com"])
          const served = edge(fleet, "e1")
          expect(served.map((r) => [r.hostname, r.service, r.workerNode, r.backendHostname, r.backendPort])).toEqual([["alpha.example.com", "alpha", "w1", "10.0.0.1", 8443]])
          expect(edge(fleet, "e2")).toEqual([])
          expect(report).toEqual({ repairs: [{ hostname: "alpha.example.com", edgeNode: "e1", action: "set-up" }], retired: [], failures: [] })
          // The row now holds what the edge reports (its certificate), still active.
          expect(yield* rows).toEqual([{ route: served[0], state: "active" }])
          const events = yield* db.events(10)
          expect(events.map((e) => [e.node, e.service, e.message])).toContainEqual(["e1", "alpha", expect.stringContaining("alpha.example.com set-up")])
        })))

    it.effect("an active row whose edge route forwards elsewhere is set up again to the row's target", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w1")
          yield* db.putEdgeRoute(route("alpha.example.com", "e1"), "active")
          onEdge(fleet, route("alpha.example.com", "e1", { workerNode: "w2", backendHostname: "10.0.0.4" }))

          const report = yield* runOnce

          expect(fleet.calls).toEqual(["setup e1 alpha.example.com"])
          expect(edge(fleet, "e1").map((r) => [r.workerNode, r.backendHostname, r.backendPort])).toEqual([["w1", "10.0.0.1", 8443]])
          expect(report.repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "set-up" }])
          expect(report.failures).toEqual([])
        })))

    it.effect("an edge route that matches its row is left alone; a certificate the edge renewed is recorded in the row", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w1")
          yield* db.putEdgeRoute(route("alpha.example.com", "e1", { certSerial: "3" }), "active")
          const renewed = route("alpha.example.com", "e1", { certSerial: "7", certNotAfter: "2028-01-01T00:00:00.000Z" })
          onEdge(fleet, renewed)

          const report = yield* runOnce

          expect(fleet.calls).toEqual([])
          expect(report).toEqual({ repairs: [], retired: [], failures: [] })
          expect(edge(fleet, "e1")).toEqual([renewed])
          expect(yield* rows).toEqual([{ route: renewed, state: "active" }])
        })))

    it.effect("an edge that fails the set-up is reported, and the row is kept and set up next round", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w1")
          const wanted = route("alpha.example.com", "e1", { certSerial: "lost" })
          yield* db.putEdgeRoute(wanted, "active")
          fleet.state.armed.set("edge.setup", 1)

          const first = yield* runOnce

          expect(first.repairs).toEqual([])
          expect(first.failures).toEqual([{ target: "alpha.example.com on e1", reason: expect.stringContaining("injected fault") }])
          expect(edge(fleet, "e1")).toEqual([])
          expect(yield* rows).toEqual([{ route: wanted, state: "active" }])

          const second = yield* runOnce
          expect(second.failures).toEqual([])
          expect(second.repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "set-up" }])
          expect(edge(fleet, "e1").map((r) => r.hostname)).toEqual(["alpha.example.com"])
        })))
  })

  describe("removing rows", () => {
    it.effect("a removing row's route is removed from its edge, then the row is dropped", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.putEdgeRoute(route("alpha.example.com", "e1"), "removing")
          onEdge(fleet, route("alpha.example.com", "e1"))

          const report = yield* runOnce

          expect(fleet.calls).toEqual(["remove e1 alpha.example.com"])
          expect(edge(fleet, "e1")).toEqual([])
          expect(yield* rows).toEqual([])
          expect(report).toEqual({ repairs: [{ hostname: "alpha.example.com", edgeNode: "e1", action: "removed" }], retired: [], failures: [] })
        })))

    it.effect("a removing row whose route the edge does not list is still removed there, then forgotten", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.putEdgeRoute(route("alpha.example.com", "e1"), "removing")

          const report = yield* runOnce

          // The edge lists only routes that serve: one whose removal it could not finish is not
          // listed, yet still in its proxy. The removal is asked for all the same.
          expect(fleet.calls).toEqual(["remove e1 alpha.example.com"])
          expect(yield* rows).toEqual([])
          expect(report.repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "forgotten" }])
          expect(report.failures).toEqual([])
        })))

    it.effect("a removing row the edge does not list but cannot remove (its disk full) stays until the edge can", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.putEdgeRoute(route("alpha.example.com", "e1"), "removing")
          fleet.state.armed.set("edge.remove", 1)

          const first = yield* runOnce
          expect(first.failures).toEqual([{ target: "alpha.example.com on e1", reason: expect.stringContaining("injected fault") }])
          expect((yield* rows).map((r) => [r.route.hostname, r.state])).toEqual([["alpha.example.com", "removing"]])

          const second = yield* runOnce
          expect(second.failures).toEqual([])
          expect(fleet.calls).toEqual(["remove e1 alpha.example.com", "remove e1 alpha.example.com"])
          expect(yield* rows).toEqual([])
        })))

    it.effect("a removing row whose edge refuses the removal stays, is reported, and is removed next round", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.putEdgeRoute(route("alpha.example.com", "e1"), "removing")
          onEdge(fleet, route("alpha.example.com", "e1"))
          fleet.state.armed.set("edge.remove", 1)

          const first = yield* runOnce

          expect(first.repairs).toEqual([])
          expect(first.failures).toEqual([{ target: "alpha.example.com on e1", reason: expect.stringContaining("injected fault") }])
          expect(edge(fleet, "e1").map((r) => r.hostname)).toEqual(["alpha.example.com"])
          expect((yield* rows).map((r) => [r.route.hostname, r.state])).toEqual([["alpha.example.com", "removing"]])

          const second = yield* runOnce
          expect(second.failures).toEqual([])
          expect(edge(fleet, "e1")).toEqual([])
          expect(yield* rows).toEqual([])
        })))
  })

  describe("edge routes no row accounts for", () => {
    it.effect("are adopted as active rows when their service is placed (a master that lost its database)", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w1")
          const live = route("alpha.example.com", "e1")
          onEdge(fleet, live)

          const report = yield* runOnce

          expect(fleet.calls).toEqual([])
          expect(edge(fleet, "e1")).toEqual([live])
          expect(yield* rows).toEqual([{ route: live, state: "active" }])
          expect(report.repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "adopted" }])
        })))

    it.effect("are removed from the edge when their service is not placed, and no row is made", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          onEdge(fleet, route("alpha.example.com", "e1"))

          const report = yield* runOnce

          expect(fleet.calls).toEqual(["remove e1 alpha.example.com"])
          expect(edge(fleet, "e1")).toEqual([])
          expect(yield* rows).toEqual([])
          expect(report.repairs).toEqual([{ hostname: "alpha.example.com", edgeNode: "e1", action: "removed" }])
        })))

    it.effect("a route left on an edge its hostname moved away from is removed there and set up on the row's edge", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w1")
          yield* db.putEdgeRoute(route("alpha.example.com", "e2"), "active")
          onEdge(fleet, route("alpha.example.com", "e1"))

          const report = yield* runOnce

          expect([...fleet.calls].sort()).toEqual(["remove e1 alpha.example.com", "setup e2 alpha.example.com"])
          expect(edge(fleet, "e1")).toEqual([])
          expect(edge(fleet, "e2").map((r) => r.hostname)).toEqual(["alpha.example.com"])
          expect((yield* rows).map((r) => [r.route.hostname, r.route.edgeNode, r.state])).toEqual([["alpha.example.com", "e2", "active"]])
          expect([...report.repairs].sort((a, b) => a.edgeNode.localeCompare(b.edgeNode))).toEqual([
            { hostname: "alpha.example.com", edgeNode: "e1", action: "removed" },
            { hostname: "alpha.example.com", edgeNode: "e2", action: "set-up" }
          ])
        })))

    it.effect("a hostname another service's row took over on the same edge is re-pointed to that service, never removed", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("beta", "w2")
          yield* db.putEdgeRoute(route("shared.example.com", "e1", { service: "beta", workerNode: "w2", backendHostname: "10.0.0.4" }), "active")
          // alpha, no longer placed, still has the name on e1.
          onEdge(fleet, route("shared.example.com", "e1", { service: "alpha" }))

          const report = yield* runOnce

          expect(fleet.calls).toEqual(["setup e1 shared.example.com"])
          expect(edge(fleet, "e1").map((r) => [r.hostname, r.service, r.workerNode])).toEqual([["shared.example.com", "beta", "w2"]])
          expect((yield* rows).map((r) => [r.route.hostname, r.route.service, r.state])).toEqual([["shared.example.com", "beta", "active"]])
          expect(report.repairs).toEqual([{ hostname: "shared.example.com", edgeNode: "e1", action: "set-up" }])
        })))
  })

  describe("unreachable and unknown edges", () => {
    it.effect("an edge that cannot be listed is reported once; its rows are untouched and the other edge still converges", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w1")
          yield* db.place("beta", "w1")
          yield* db.putEdgeRoute(route("alpha.example.com", "e1"), "active")
          yield* db.putEdgeRoute(route("beta.example.com", "e1", { service: "beta" }), "removing")
          yield* db.putEdgeRoute(route("alpha.b.example.com", "e2"), "active")
          onEdge(fleet, route("beta.example.com", "e1", { service: "beta" }))
          fleet.down.add("e1")
          const before = yield* rows

          const report = yield* runOnce

          expect(report.failures).toEqual([{ target: "e1", reason: `cannot list edge routes: ${unreachable("e1").message}` }])
          expect(fleet.calls).toEqual(["setup e2 alpha.b.example.com"])
          expect(report.repairs).toEqual([{ hostname: "alpha.b.example.com", edgeNode: "e2", action: "set-up" }])
          const after = yield* rows
          expect(after.filter((r) => r.route.edgeNode === "e1")).toEqual(before.filter((r) => r.route.edgeNode === "e1"))

          // Back up: the next round finishes e1's work.
          fleet.down.delete("e1")
          const next = yield* runOnce
          expect(next.failures).toEqual([])
          expect(edge(fleet, "e1").map((r) => r.hostname)).toEqual(["alpha.example.com"])
          expect((yield* rows).map((r) => [r.route.hostname, r.state])).toEqual([["alpha.b.example.com", "active"], ["alpha.example.com", "active"]])
        })))

    it.effect("a row on an edge node the master does not know is reported with what to do, and kept", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w1")
          const orphan = route("alpha.example.com", "e9")
          yield* db.putEdgeRoute(orphan, "active")

          const report = yield* runOnce

          expect(fleet.calls).toEqual([])
          expect(report.repairs).toEqual([])
          expect(report.failures).toEqual([{ target: "alpha.example.com on e9", reason: expect.stringContaining("edge node e9 is not known to this master") }])
          expect(report.failures[0]!.reason).toContain("undeploy alpha")
          expect(yield* rows).toEqual([{ route: orphan, state: "active" }])
        })))
  })

  describe("old copies of moved services", () => {
    it.effect("the old copy is undeployed from its old node, its record dropped, and the round reports it retired", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          runs(fleet, "w1", "alpha")
          runs(fleet, "w2", "alpha")
          yield* db.place("alpha", "w2")
          yield* db.addStaleCopy("alpha", "w1")

          const report = yield* runOnce

          expect(fleet.calls).toEqual(["undeploy w1 alpha"])
          expect(fleet.state.workers.get("w1")!.has("alpha")).toBe(false)
          expect(fleet.state.workers.get("w2")!.has("alpha")).toBe(true)
          expect(yield* db.staleCopies).toEqual([])
          expect(report).toEqual({ repairs: [], retired: [{ service: "alpha", node: "w1" }], failures: [] })
          expect((yield* db.events(10)).map((e) => [e.node, e.service, e.message])).toContainEqual(["w1", "alpha", expect.stringContaining("old copy of alpha removed from w1")])
        })))

    it.effect("an old copy already gone from its node just has its record dropped", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          runs(fleet, "w2", "alpha")
          yield* db.place("alpha", "w2")
          yield* db.addStaleCopy("alpha", "w1")

          const report = yield* runOnce

          expect(yield* db.staleCopies).toEqual([])
          expect(report.retired).toEqual([{ service: "alpha", node: "w1" }])
          expect(report.failures).toEqual([])
        })))

    it.effect("an old copy on a node that cannot be reached is kept, reported, and removed once the node is back", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          runs(fleet, "w1", "alpha")
          runs(fleet, "w2", "alpha")
          yield* db.place("alpha", "w2")
          yield* db.addStaleCopy("alpha", "w1")
          fleet.down.add("w1")

          const first = yield* runOnce

          expect(first.retired).toEqual([])
          expect(first.failures).toEqual([{ target: "alpha on w1", reason: `cannot remove the old copy: ${unreachable("w1").message}` }])
          expect(yield* db.staleCopies).toEqual([{ service: "alpha", node: "w1" }])
          expect(fleet.state.workers.get("w1")!.has("alpha")).toBe(true)

          fleet.down.delete("w1")
          const second = yield* runOnce
          expect(second.failures).toEqual([])
          expect(second.retired).toEqual([{ service: "alpha", node: "w1" }])
          expect(fleet.state.workers.get("w1")!.has("alpha")).toBe(false)
          expect(yield* db.staleCopies).toEqual([])
        })))

    it.effect("a service placed back on its old node keeps the copy there; only the record is dropped", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          runs(fleet, "w1", "alpha")
          yield* db.place("alpha", "w1")
          yield* db.addStaleCopy("alpha", "w1")

          const report = yield* runOnce

          expect(fleet.calls).toEqual([])
          expect(fleet.state.workers.get("w1")!.has("alpha")).toBe(true)
          expect(yield* db.staleCopies).toEqual([])
          expect(report.failures).toEqual([])
        })))

    it.effect("an old copy on a node the master no longer knows is reported and kept", () =>
      withFleet((fleet) =>
        Effect.gen(function* () {
          const db = yield* MasterDb
          yield* db.place("alpha", "w2")
          yield* db.addStaleCopy("alpha", "w9")

          const report = yield* runOnce

          expect(fleet.calls).toEqual([])
          expect(report.retired).toEqual([])
          expect(report.failures).toEqual([{ target: "alpha on w9", reason: expect.stringContaining("node w9 is not known to this master") }])
          expect(yield* db.staleCopies).toEqual([{ service: "alpha", node: "w9" }])
        })))
  })

  it.effect("a service's repair waits for the deploy of it under way in its actor, and sees what that deploy recorded", () =>
    withFleet((fleet) =>
      Effect.gen(function* () {
        const db = yield* MasterDb
        const coordinators = yield* ServiceCoordinators
        // A deploy of alpha has set up its edge route and not yet recorded it: unaccounted, and
        // alpha not placed, the route would be removed by a repair that did not wait.
        const live = route("alpha.example.com", "e1")
        onEdge(fleet, live)
        const gate = yield* Deferred.make<void>()
        const started = yield* Deferred.make<void>()
        const deploying = yield* Effect.fork(coordinators.submit("alpha", Effect.gen(function* () {
          yield* Deferred.succeed(started, undefined)
          yield* Deferred.await(gate)
          yield* db.place("alpha", "w1")
          yield* db.putEdgeRoute(live, "active")
        })))
        yield* Deferred.await(started)

        const round = yield* Effect.fork(runOnce)
        // Until the round's repair of alpha is queued behind the deploy (or, were it not to wait, done).
        for (let i = 0; i < 1000; i++) {
          if (Option.isSome(yield* Fiber.poll(round))) break
          if ((yield* coordinators.stats).some((s) => s.key === "alpha" && s.pending > 0)) break
          yield* Effect.yieldNow()
        }
        yield* Deferred.succeed(gate, undefined)
        yield* Fiber.join(deploying)
        const report = yield* Fiber.join(round)

        expect(fleet.calls).toEqual([])
        expect(report.repairs).toEqual([])
        expect(edge(fleet, "e1")).toEqual([live])
        expect(yield* rows).toEqual([{ route: live, state: "active" }])
      })))
})
