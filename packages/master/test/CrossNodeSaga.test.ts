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
import { Deploy, Errors, PublicRoutes, type Routes, Validation } from "@mcp/domain"
import { Effect, Either, FastCheck as fc, Layer, Logger, LogLevel, Option, Stream } from "effect"
import * as CrossNodeSaga from "../src/services/CrossNodeSaga.js"
import { EdgeReconciler } from "../src/edge/EdgeReconciler.js"
import * as EdgeResolver from "../src/edge/EdgeResolver.js"
import { FleetCalls } from "../src/fleet/FleetCalls.js"
import { layerSqlite, MasterDb } from "../src/db/MasterDb.js"
import { ServiceCoordinators } from "../src/services/ServiceCoordinators.js"

const RUNS = Number(process.env["MCP_EDGE_SAGA_RUNS"] ?? "") || 300
const ZONE = "svc.mcp.internal"
const WORKER = { name: "w1", role: "worker", addresses: ["127.0.0.1:1"], arch: "x64", version: "test", nodeAddress: "10.0.0.1" } as const
const WORKER2 = { name: "w2", role: "worker", addresses: ["127.0.0.1:4"], arch: "x64", version: "test", nodeAddress: "10.0.0.4" } as const
const WORKERS = { w1: WORKER, w2: WORKER2 } as const
const EDGES = [
  { name: "e1", role: "edge", addresses: ["127.0.0.1:2"], arch: "x64", version: "test", nodeAddress: "10.0.0.2" },
  { name: "e2", role: "edge", addresses: ["127.0.0.1:3"], arch: "x64", version: "test", nodeAddress: "10.0.0.3" }
] as const

// ---------------------------------------------------------------------------------------------
// The in-memory fleet.

type Point = "worker.deploy" | "worker.undeploy" | "worker.address" | "edge.setup" | "edge.setup.lost" | "edge.remove" | "edge.list"
const POINTS: ReadonlyArray<Point> = ["worker.deploy", "worker.undeploy", "worker.address", "edge.setup", "edge.setup.lost", "edge.remove", "edge.list"]

interface FleetState {
  /** worker node -> service -> the definition it runs */
  readonly workers: Map<string, Map<string, unknown>>
  /** edge node -> hostname -> route */
  readonly edges: Map<string, Map<string, Routes.EdgeRoute>>
  /** armed failures: point -> how many calls fail */
  readonly armed: Map<Point, number>
  serial: number
}

const newFleet = (): FleetState => ({ workers: new Map([["w1", new Map()], ["w2", new Map()]]), edges: new Map(EDGES.map((e) => [e.name, new Map()])), armed: new Map(), serial: 0 })

const take = (state: FleetState, point: Point): boolean => {
  const left = state.armed.get(point) ?? 0
  if (left === 0) return false
  state.armed.set(point, left - 1)
  return true
}

/** The injected faults that fired during an operation (armed with `faults`, then partly or fully taken). */
const faultsHit = (state: FleetState, faults: Faults): ReadonlyArray<Point> =>
  faults.filter(([point, count]) => (state.armed.get(point) ?? 0) < count).map(([point]) => point)

const down = (node: string, operation: string) => new Errors.PeerFailed({ peer: `agent on ${node}`, operation, reason: "injected fault", retryable: true })

const fakeFleet = (state: FleetState): FleetCalls => ({
  deploy: (worker, raw, dryRun) =>
    Stream.suspend((): Stream.Stream<Deploy.DeployEvent, Errors.DeployFailed> => {
      if (dryRun) {
        return Stream.make(new Deploy.DeployPlanned({
          plan: { service: nameOf(raw), node: worker.name, placementReason: "", portsToAllocate: 1, images: [], routes: [], dnsRecords: [], edgeRoutes: [], changes: [] }
        }))
      }
      if (take(state, "worker.deploy")) return Stream.fail(new Errors.DeployFailed({ service: nameOf(raw), step: "start", reason: "injected fault", retryable: true }))
      state.workers.get(worker.name)!.set(nameOf(raw), raw)
      return Stream.make(new Deploy.DeployStep({ node: worker.name, step: "start", status: "done", detail: "started" }))
    }),
  undeploy: (worker, service) =>
    Effect.suspend((): Effect.Effect<void, Errors.PeerFailed | Errors.ServiceNotFound> => {
      if (take(state, "worker.undeploy")) return Effect.fail(down(worker.name, `undeploy ${service}`))
      if (!state.workers.get(worker.name)!.delete(service)) return Effect.fail(new Errors.ServiceNotFound({ service }))
      return Effect.void
    }),
  proxyAddress: (worker) => Effect.suspend(() => (take(state, "worker.address") ? Effect.fail(down(worker.name, "report its node address")) : Effect.succeed(worker.nodeAddress!))),
  setupEdgeRoute: (edge, request) =>
    Effect.suspend((): Effect.Effect<Routes.EdgeRoute, Errors.PeerFailed | Errors.NodeUnreachable> => {
      if (take(state, "edge.setup")) return Effect.fail(down(edge.name, `set up ${request.hostname}`))
      const routes = state.edges.get(edge.name)!
      const existing = routes.get(request.hostname)
      const route: Routes.EdgeRoute = {
        ...request,
        hostname: request.hostname as Routes.EdgeRoute["hostname"],
        edgeNode: edge.name,
        certSerial: existing?.certSerial ?? String(++state.serial),
        certNotAfter: "2027-01-01T00:00:00.000Z"
      }
      routes.set(request.hostname, route)
      // The agent was killed after doing the work, before answering.
      if (take(state, "edge.setup.lost")) return Effect.fail(new Errors.NodeUnreachable({ node: edge.name, addresses: [...edge.addresses], reason: "connection reset (injected)" }))
      return Effect.succeed(route)
    }),
  removeEdgeRoute: (edge, hostname) =>
    Effect.suspend(() => {
      if (take(state, "edge.remove")) return Effect.fail(down(edge.name, `remove ${hostname}`))
      state.edges.get(edge.name)!.delete(hostname)
      return Effect.void
    }),
  listEdgeRoutes: (edge) =>
    Effect.suspend(() => (take(state, "edge.list") ? Effect.fail(down(edge.name, "list edge routes")) : Effect.succeed([...state.edges.get(edge.name)!.values()])))
})

/** Every service running on any worker. */
const running = (state: FleetState) =>
  [...state.workers.entries()].flatMap(([node, services]) => [...services.entries()].map(([service, raw]) => ({ node, service, raw })))

const runsAnywhere = (state: FleetState, service: string) => running(state).some((r) => r.service === service)

function nameOf(raw: unknown): string {
  return (raw as { name: string }).name
}

// ---------------------------------------------------------------------------------------------
// Definitions: every hostname contains the service's name, so services never share one.
// `<s>.b.example.com` has a CNAME to edge node e2; other names fall back to the default, e1.

const SERVICES = ["alpha", "beta"] as const
const HOSTNAME_SETS: ReadonlyArray<(s: string) => ReadonlyArray<string>> = [
  () => [],
  (s) => [`${s}.example.com`],
  (s) => [`${s}.example.com`, `www-${s}.example.com`],
  (s) => [`${s}.b.example.com`],
  (s) => [`www-${s}.example.com`, `${s}.b.example.com`],
  // Outside the allowed domain: rejected before anything changes.
  (s) => [`${s}.example.org`]
]

const rawDefinition = (service: string, variant: number, version: number) => ({
  name: service,
  components: [{
    name: "web",
    image: `localhost/${service}:v${version}`,
    routes: [
      { name: "internal", port: 8443, mode: "l7" },
      ...HOSTNAME_SETS[variant]!(service).map((hostname, i) => ({ name: `public${i}`, port: 8443, mode: "l7", hostname, public: true }))
    ]
  }]
})

const publicHostnames = (raw: unknown): ReadonlyArray<string> =>
  PublicRoutes.publicRoutes(Either.getOrThrow(Validation.decodeDefinition(raw, { internalZone: ZONE }))).map((r) => r.hostname)

const dns = EdgeResolver.layerMemory({
  cname: Object.fromEntries(SERVICES.map((s) => [`${s}.b.example.com`, "e2.example.com"])),
  a: { "e2.example.com": ["10.0.0.3"] }
})

// ---------------------------------------------------------------------------------------------
// Harness: a fresh master database and fleet per run.

const setup = (state: FleetState) => {
  const base = Layer.mergeAll(
    Layer.succeed(FleetCalls, fakeFleet(state)),
    Layer.succeed(CrossNodeSaga.EdgeSettings, { internalZone: ZONE, allowedDomains: ["example.com"], defaultEdge: "e1" }),
    dns,
    ServiceCoordinators.Default,
    MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(":memory:")))
  )
  return Layer.mergeAll(CrossNodeSaga.layer, EdgeReconciler.Default).pipe(Layer.provideMerge(base))
}

const seedNodes = Effect.gen(function* () {
  const db = yield* MasterDb
  for (const n of [WORKER, WORKER2, ...EDGES]) yield* db.upsertNode(n as never, "config")
})

const deploy = (service: string, raw: unknown, worker: keyof typeof WORKERS = "w1") =>
  Effect.gen(function* () {
    const saga = yield* CrossNodeSaga.CrossNodeSaga
    const events: Array<Deploy.DeployEvent> = []
    const decoded = Validation.decodeDefinition(raw, { internalZone: ZONE })
    if (Either.isLeft(decoded)) return yield* Effect.die(new Error(`bad test definition: ${JSON.stringify(decoded.left)}`))
    const exit = yield* Effect.either(saga.deploy({ definition: decoded.right, raw, worker: WORKERS[worker] as never, placementReason: "test", dryRun: false }, (e) => Effect.sync(() => events.push(e))))
    return { exit, events, service }
  })

/** Undeploys from where the master placed it, as the master's handler does. */
const undeploy = (service: string) =>
  Effect.gen(function* () {
    const saga = yield* CrossNodeSaga.CrossNodeSaga
    const placed = yield* (yield* MasterDb).placement(service)
    if (Option.isNone(placed)) return Either.left(new Errors.ServiceNotFound({ service }))
    return yield* Effect.either(saga.undeploy(service, WORKERS[placed.value as keyof typeof WORKERS] as never))
  })

/** What the property is about, read from the fleet and the master database. */
const snapshot = (state: FleetState) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const rows = yield* db.edgeRoutes
    const edgeRoutes = [...state.edges.entries()].flatMap(([edge, routes]) => [...routes.values()].map((r) => ({ edge, route: r })))
    return { rows, edgeRoutes, placements: yield* db.placements }
  })

/** Holds after every operation, whatever failed. */
const checkAlways = (state: FleetState, context: string) =>
  Effect.gen(function* () {
    const { rows, edgeRoutes } = yield* snapshot(state)
    for (const { edge, route } of edgeRoutes) {
      const row = rows.find((r) => r.route.hostname === route.hostname && r.route.edgeNode === edge)
      expect(row, `${context}: edge ${edge} serves ${route.hostname} but the master has no row for it there`).toBeDefined()
    }
    const db = yield* MasterDb
    const stale = yield* db.staleCopies
    const placements = yield* db.placements
    for (const { node, service, raw } of running(state)) {
      // The old copy of a moved service, recorded for removal, is no longer the service.
      if (stale.some((c) => c.service === service && c.node === node)) continue
      expect(placements.find((p) => p.service === service)?.node, `${context}: ${service} runs on ${node} but is placed elsewhere, and is not recorded for removal`).toBe(node)
      for (const hostname of publicHostnames(raw)) {
        const row = rows.find((r) => r.route.hostname === hostname)
        expect(row?.state, `${context}: ${service} runs with public ${hostname} but the master does not want an edge route for it`).toBe("active")
      }
    }
  })

/** Holds once the reconciler has run with every edge reachable. */
const checkConverged = (state: FleetState, context: string) =>
  Effect.gen(function* () {
    const { rows, edgeRoutes, placements } = yield* snapshot(state)
    expect(rows.filter((r) => r.state === "removing").map((r) => r.route.hostname), `${context}: removals left`).toEqual([])
    const served = edgeRoutes.map(({ edge, route }) => `${route.hostname} ${edge} ${route.service} ${route.backendHostname}:${route.backendPort}`).sort()
    const wanted = rows.map((r) => `${r.route.hostname} ${r.route.edgeNode} ${r.route.service} ${r.route.backendHostname}:${r.route.backendPort}`).sort()
    expect(served, `${context}: edges hold exactly the master's active rows`).toEqual(wanted)
    for (const { route } of edgeRoutes) {
      expect(runsAnywhere(state, route.service), `${context}: edge route ${route.hostname} without its service on a worker`).toBe(true)
      expect(state.workers.get(route.workerNode)!.has(route.service), `${context}: edge route ${route.hostname} points at ${route.workerNode}, which does not run ${route.service}`).toBe(true)
    }
    const onWorker = [...new Set(running(state).flatMap((r) => publicHostnames(r.raw)))].sort()
    expect(edgeRoutes.map(({ route }) => route.hostname).sort(), `${context}: every public hostname on the worker is served, and nothing else`).toEqual(onWorker)
    for (const { node, service } of running(state)) expect(placements.find((p) => p.service === service)?.node, `${context}: ${service} runs on ${node} but is placed elsewhere`).toBe(node)
    expect(yield* (yield* MasterDb).staleCopies, `${context}: old copies left`).toEqual([])
  })

// ---------------------------------------------------------------------------------------------
// Operations.

type Faults = ReadonlyArray<readonly [Point, number]>
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
    yield* seedNodes
    const reconciler = yield* EdgeReconciler
    let version = 0
    for (const [i, op] of ops.entries()) {
      const context = `op ${i} ${JSON.stringify(op)}`
      state.armed.clear()
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
        const report = yield* reconciler.runOnce
        // Every node is known to the master: a round fails somewhere only where a fault fired.
        if (faultsHit(state, op.faults).length === 0) expect(report.failures, `${context}: reconcile round with no injected fault hit`).toEqual([])
      }
      state.armed.clear()
      yield* checkAlways(state, context)
    }
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
