/**
 * The test harness shared by the cross-node saga and edge reconciler tests: an in-memory fleet
 * (two workers, two edge nodes) whose calls fail on demand, the definitions the tests deploy, the
 * layers over a real SQLite master database, and the checks of what the fleet and the master hold.
 */
import { expect } from "@effect/vitest"
import { Deploy, Errors, PublicRoutes, type Routes, type Status, Validation } from "@mcp/domain"
import { Saga } from "@mcp/rpc"
import { Effect, Either, Layer, Option, Schedule, Stream } from "effect"
import * as CrossNodeSaga from "../src/services/CrossNodeSaga.js"
import { EdgeReconciler } from "../src/edge/EdgeReconciler.js"
import * as EdgeResolver from "../src/edge/EdgeResolver.js"
import { FleetCalls } from "../src/fleet/FleetCalls.js"
import { layerSqlite, MasterDb } from "../src/db/MasterDb.js"
import { ServiceCoordinators } from "../src/services/ServiceCoordinators.js"

export const ZONE = "svc.mcp.internal"
export const WORKER = { name: "w1", role: "worker", addresses: ["127.0.0.1:1"], arch: "x64", version: "test", nodeAddress: "10.0.0.1" } as const
export const WORKER2 = { name: "w2", role: "worker", addresses: ["127.0.0.1:4"], arch: "x64", version: "test", nodeAddress: "10.0.0.4" } as const
export const WORKERS = { w1: WORKER, w2: WORKER2 } as const
export const EDGES = [
  { name: "e1", role: "edge", addresses: ["127.0.0.1:2"], arch: "x64", version: "test", nodeAddress: "10.0.0.2" },
  { name: "e2", role: "edge", addresses: ["127.0.0.1:3"], arch: "x64", version: "test", nodeAddress: "10.0.0.3" }
] as const

// ---------------------------------------------------------------------------------------------
// The in-memory fleet.

export type Point =
  | "worker.deploy" | "worker.deploy.lost" | "worker.undeploy" | "worker.undeploy.refused" | "worker.undeploy.lost" | "worker.undeploy.unreachable" | "worker.address"
  | "edge.setup" | "edge.setup.lost" | "edge.remove" | "edge.list"
  | "worker.stop" | "worker.stop.failed" | "worker.stop.lost" | "worker.start" | "worker.start.lost"
// Stop and start have their own tests; the property's operations never arm them.
export const POINTS: ReadonlyArray<Point> = ["worker.deploy", "worker.deploy.lost", "worker.undeploy", "worker.undeploy.lost", "worker.undeploy.unreachable", "worker.address", "edge.setup", "edge.setup.lost", "edge.remove", "edge.list"]
export type Faults = ReadonlyArray<readonly [Point, number]>

export interface FleetState {
  /** worker node -> service -> the definition it runs */
  readonly workers: Map<string, Map<string, unknown>>
  /** edge node -> hostname -> route */
  readonly edges: Map<string, Map<string, Routes.EdgeRoute>>
  /** armed failures: point -> how many calls fail */
  readonly armed: Map<Point, number>
  /** "node/service" of the services stopped on their worker (still deployed there) */
  readonly stopped: Set<string>
  serial: number
}

export const newFleet = (): FleetState => ({ workers: new Map([["w1", new Map()], ["w2", new Map()]]), edges: new Map(EDGES.map((e) => [e.name, new Map()])), armed: new Map(), stopped: new Set(), serial: 0 })

export const take = (state: FleetState, point: Point): boolean => {
  const left = state.armed.get(point) ?? 0
  if (left === 0) return false
  state.armed.set(point, left - 1)
  return true
}

/** The injected faults that fired during an operation (armed with `faults`, then partly or fully taken). */
export const faultsHit = (state: FleetState, faults: Faults): ReadonlyArray<Point> =>
  faults.filter(([point, count]) => (state.armed.get(point) ?? 0) < count).map(([point]) => point)

export const down = (node: string, operation: string) => new Errors.PeerFailed({ peer: `agent on ${node}`, operation, reason: "injected fault", retryable: true })

export const unreachable = (node: string, addresses: ReadonlyArray<string>, reason: string) => new Errors.NodeUnreachable({ node, addresses: [...addresses], reason })

export const fakeFleet = (state: FleetState): FleetCalls => ({
  deploy: (worker, raw, dryRun) =>
    Stream.suspend((): Stream.Stream<Deploy.DeployEvent, Errors.DeployFailed | Errors.NodeUnreachable> => {
      if (dryRun) {
        return Stream.make(new Deploy.DeployPlanned({
          plan: { service: nameOf(raw), node: worker.name, placementReason: "", portsToAllocate: 1, images: [], routes: [], dnsRecords: [], edgeRoutes: [], changes: [] }
        }))
      }
      if (take(state, "worker.deploy")) return Stream.fail(new Errors.DeployFailed({ service: nameOf(raw), step: "start", reason: "injected fault", retryable: true }))
      state.workers.get(worker.name)!.set(nameOf(raw), raw)
      state.stopped.delete(`${worker.name}/${nameOf(raw)}`)
      // The agent deployed it, then died before its answer reached the master.
      if (take(state, "worker.deploy.lost")) return Stream.fail(unreachable(worker.name, worker.addresses, "the deploy stream broke off (injected)"))
      return Stream.make(new Deploy.DeployStep({ node: worker.name, step: "start", status: "done", detail: "started" }))
    }),
  undeploy: (worker, service) =>
    Effect.suspend((): Effect.Effect<void, Errors.PeerFailed | Errors.ServiceNotFound | Errors.NodeUnreachable> => {
      if (take(state, "worker.undeploy")) return Effect.fail(down(worker.name, `undeploy ${service}`))
      // An answer that it cannot, for good (not worth retrying).
      if (take(state, "worker.undeploy.refused")) return Effect.fail(new Errors.PeerFailed({ peer: `agent on ${worker.name}`, operation: `undeploy ${service}`, reason: "refused (injected)", retryable: false }))
      // The request never reached the agent.
      if (take(state, "worker.undeploy.unreachable")) return Effect.fail(unreachable(worker.name, worker.addresses, "connection refused (injected)"))
      if (!state.workers.get(worker.name)!.delete(service)) return Effect.fail(new Errors.ServiceNotFound({ service }))
      state.stopped.delete(`${worker.name}/${service}`)
      // The agent was killed after undeploying, before answering.
      if (take(state, "worker.undeploy.lost")) return Effect.fail(unreachable(worker.name, worker.addresses, "connection reset (injected)"))
      return Effect.void
    }),
  stop: (worker, service) => workerLifecycle(state, worker.name, service, false),
  start: (worker, service) => workerLifecycle(state, worker.name, service, true),
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

/** The worker's stop or start: idempotent, as the agent's. */
const workerLifecycle = (state: FleetState, node: string, service: string, active: boolean) =>
  Effect.suspend((): Effect.Effect<Status.ServiceStatus, Errors.PeerFailed | Errors.ServiceNotFound | Errors.NodeUnreachable> => {
    // A refusal for good: nothing was recorded, nothing changed.
    if (take(state, active ? "worker.start" : "worker.stop")) {
      return Effect.fail(new Errors.PeerFailed({ peer: `agent on ${node}`, operation: `${active ? "start" : "stop"} ${service}`, reason: "refused (injected)", retryable: false }))
    }
    // A failure worth retrying (the agent recorded the stop, then its engine failed): done when asked again.
    if (!active && take(state, "worker.stop.failed")) return Effect.fail(down(node, `stop ${service}`))
    if (!state.workers.get(node)!.has(service)) return Effect.fail(new Errors.ServiceNotFound({ service }))
    if (active) state.stopped.delete(`${node}/${service}`)
    else state.stopped.add(`${node}/${service}`)
    // The agent was killed after doing it, before answering.
    if (take(state, active ? "worker.start.lost" : "worker.stop.lost")) return Effect.fail(unreachable(node, [], "connection reset (injected)"))
    return Effect.succeed({ service, node: node as Status.ServiceStatus["node"], active, components: [], warnings: [] })
  })

/** Every service running on any worker (a stopped one does not run). */
export const running = (state: FleetState) =>
  [...state.workers.entries()].flatMap(([node, services]) =>
    [...services.entries()].filter(([service]) => !state.stopped.has(`${node}/${service}`)).map(([service, raw]) => ({ node, service, raw })))

export const runsAnywhere = (state: FleetState, service: string) => running(state).some((r) => r.service === service)

export function nameOf(raw: unknown): string {
  return (raw as { name: string }).name
}

// ---------------------------------------------------------------------------------------------
// Definitions: every hostname contains the service's name, so services never share one.
// `<s>.b.example.com` has a CNAME to edge node e2; other names fall back to the default, e1.

export const SERVICES = ["alpha", "beta"] as const
export const HOSTNAME_SETS: ReadonlyArray<(s: string) => ReadonlyArray<string>> = [
  () => [],
  (s) => [`${s}.example.com`],
  (s) => [`${s}.example.com`, `www-${s}.example.com`],
  (s) => [`${s}.b.example.com`],
  (s) => [`www-${s}.example.com`, `${s}.b.example.com`],
  // Outside the allowed domain: rejected before anything changes.
  (s) => [`${s}.example.org`]
]

export const rawDefinition = (service: string, variant: number, version: number) => ({
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

export const publicHostnames = (raw: unknown): ReadonlyArray<string> =>
  PublicRoutes.publicRoutes(Either.getOrThrow(Validation.decodeDefinition(raw, { internalZone: ZONE }))).map((r) => r.hostname)

export const dns = EdgeResolver.layerMemory({
  cname: Object.fromEntries(SERVICES.map((s) => [`${s}.b.example.com`, "e2.example.com"])),
  a: { "e2.example.com": ["10.0.0.3"] }
})

// ---------------------------------------------------------------------------------------------
// Harness: a fresh master database and fleet per run (`fleet` wraps the fake fleet, e.g. to record calls).

export const setup = (state: FleetState, fleet: FleetCalls = fakeFleet(state)) => {
  const base = Layer.mergeAll(
    Layer.succeed(FleetCalls, fleet),
    Layer.succeed(CrossNodeSaga.EdgeSettings, { internalZone: ZONE, allowedDomains: ["example.com"], defaultEdge: "e1" }),
    dns,
    ServiceCoordinators.Default,
    MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(":memory:"))),
    // The tests run on the TestClock: a failing compensation is not retried after a sleep.
    Layer.succeed(Saga.CompensationRetry, Schedule.stop)
  )
  return Layer.mergeAll(CrossNodeSaga.layer, EdgeReconciler.Default).pipe(Layer.provideMerge(base))
}

export const seedNodes = Effect.gen(function* () {
  const db = yield* MasterDb
  for (const n of [WORKER, WORKER2, ...EDGES]) yield* db.upsertNode(n as never, "config")
})

export const deploy = (service: string, raw: unknown, worker: keyof typeof WORKERS = "w1") =>
  Effect.gen(function* () {
    const saga = yield* CrossNodeSaga.CrossNodeSaga
    const events: Array<Deploy.DeployEvent> = []
    const decoded = Validation.decodeDefinition(raw, { internalZone: ZONE })
    if (Either.isLeft(decoded)) return yield* Effect.die(new Error(`bad test definition: ${JSON.stringify(decoded.left)}`))
    const exit = yield* Effect.either(saga.deploy({ definition: decoded.right, raw, worker: WORKERS[worker] as never, placementReason: "test", dryRun: false }, (e) => Effect.sync(() => events.push(e))))
    return { exit, events, service }
  })

/** Undeploys from where the master placed it, as the master's handler does. */
export const undeploy = (service: string) =>
  Effect.gen(function* () {
    const saga = yield* CrossNodeSaga.CrossNodeSaga
    const placed = yield* (yield* MasterDb).placement(service)
    if (Option.isNone(placed)) return Either.left(new Errors.ServiceNotFound({ service }))
    return yield* Effect.either(saga.undeploy(service, WORKERS[placed.value as keyof typeof WORKERS] as never))
  })

/** Stops or starts the service where the master placed it, as the master's handlers do. */
export const lifecycle = (service: string, operation: "stop" | "start") =>
  Effect.gen(function* () {
    const saga = yield* CrossNodeSaga.CrossNodeSaga
    const placed = yield* (yield* MasterDb).placement(service)
    if (Option.isNone(placed)) return Either.left(new Errors.ServiceNotFound({ service }))
    return yield* Effect.either(saga[operation](service, WORKERS[placed.value as keyof typeof WORKERS] as never))
  })

/** What `mcp edge list` shows (FleetViews' EdgeRoutesList): the active rows' hostnames and edges. */
export const edgeList = Effect.map(Effect.flatMap(MasterDb, (db) => db.edgeRoutes), (rows) =>
  rows.filter((r) => r.state === "active").map((r) => `${r.route.hostname} ${r.route.edgeNode}`))

/** What the property is about, read from the fleet and the master database. */
export const snapshot = (state: FleetState) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const rows = yield* db.edgeRoutes
    const edgeRoutes = [...state.edges.entries()].flatMap(([edge, routes]) => [...routes.values()].map((r) => ({ edge, route: r })))
    return { rows, edgeRoutes, placements: yield* db.placements }
  })

/** Holds after every operation, whatever failed. */
export const checkAlways = (state: FleetState, context: string) =>
  Effect.gen(function* () {
    const { rows, edgeRoutes } = yield* snapshot(state)
    for (const { edge, route } of edgeRoutes) {
      const row = rows.find((r) => r.route.hostname === route.hostname && r.route.edgeNode === edge)
      expect(row, `${context}: edge ${edge} serves ${route.hostname} but the master has no row for it there`).toBeDefined()
    }
    const db = yield* MasterDb
    const stale = yield* db.staleCopies
    const placements = yield* db.placements
    // A saga left open by a worker that did not answer: the master cannot know yet what it runs.
    const inDoubt = new Set((yield* db.sagasIn("running")).map((s) => s.service))
    for (const { node, service, raw } of running(state)) {
      // The old copy of a moved service, recorded for removal, is no longer the service.
      if (stale.some((c) => c.service === service && c.node === node)) continue
      if (inDoubt.has(service)) continue
      expect(placements.find((p) => p.service === service)?.node, `${context}: ${service} runs on ${node} but is placed elsewhere, and is not recorded for removal`).toBe(node)
      for (const hostname of publicHostnames(raw)) {
        const row = rows.find((r) => r.route.hostname === hostname)
        expect(row?.state, `${context}: ${service} runs with public ${hostname} but the master does not want an edge route for it`).toBe("active")
      }
    }
  })

/** Holds once the reconciler has run with every edge reachable. */
export const checkConverged = (state: FleetState, context: string) =>
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
