/**
 * Stop and start of one service across nodes. A stopped service publishes nothing: its edge
 * routes go as an undeploy's do (its rows deleted once the edge confirms, `removing` until then),
 * and a start sets them up again as a deploy would (each public hostname's edge chosen again,
 * forwarding to the worker's proxy listener). Both are sagas journaled in the master's database
 * with one step, `worker`: the worker's own stop or start, which its agent finishes once asked.
 * So the worker goes first; a failure there changes nothing anywhere else. Then the commit
 * records what the edges must hold (stop: the service's routes `removing`; start: the routes it
 * publishes `active`) and ends the saga, and the edges are asked at once. What an edge cannot do
 * now stays recorded for the edge reconciler, and the caller is told so (PeerFailed naming the
 * service's state and each route left). A master killed after asking the worker asks it again
 * at its next start and commits (`recoverStopStart`); one killed before changed nothing. A worker
 * that did not answer may have done it: the saga stays open and is finished the same way once
 * the worker answers (Recovery.settleOpenSagas).
 *
 * A start never stops the worker again to undo itself: the service may have been running
 * before (a start is idempotent on the agent), and a public route that cannot be set up now is
 * the reconciler's to finish, as in a deploy that rolls forward.
 */
import { Errors, type Node, PublicRoutes, type Status, Validation } from "@mcp/domain"
import * as Saga from "@mcp/rpc/Saga"
import type * as SagaJournal from "@mcp/rpc/SagaJournal"
import { Effect, Either, Option, Schema } from "effect"
import type * as EdgeResolver from "../../edge/EdgeResolver.js"
import { FleetCalls } from "../../fleet/FleetCalls.js"
import { MasterDb, type SagaKind } from "../../db/MasterDb.js"
import { publishedBy } from "../HostnameOwners.js"
import { chooseEdges } from "./DeploySaga.js"
import {
  current,
  EdgeSettings,
  type Emit,
  inDoubt,
  journalFatal,
  type LifecycleError,
  nodeInfo,
  requestOf,
  routeOf,
  stepError,
  viaDb,
  type WantedEdgeRoute,
  workerMayFinish,
  WorkerStartIntent,
  WorkerStopIntent
} from "./Model.js"
import { decodeIntent } from "./Steps.js"

/** The journaled worker step of each saga. Nothing to undo: the agent finishes what it was asked. */
const stopWorker = Saga.journaled({ name: "worker", Intent: WorkerStopIntent, Result: Schema.Null, compensate: () => Effect.void })
const startWorker = Saga.journaled({ name: "worker", Intent: WorkerStartIntent, Result: Schema.Null, compensate: () => Effect.void })

/** An edge route the edge could not change now, left to the reconciler. */
interface Left {
  readonly hostname: string
  readonly edgeNode: string
  readonly reason: string
}

/** Edge choices are reported in the master's log: stop and start stream no steps to the CLI. */
const logEmit = (service: string): Emit => (e) =>
  e._tag === "DeployStep" ? Effect.logInfo(`start ${service}: [${e.node}] ${e.step}: ${e.status}${e.detail === undefined ? "" : ` (${e.detail})`}`) : Effect.void

const refused = (service: string, reason: string) =>
  new Errors.DeployFailed({ service, step: "start (its public edge routes)", reason: `${reason}; nothing was started`, retryable: false })

/**
 * The edge routes the service publishes once started, as a deploy chooses them, from its stored
 * definition: checked and resolved before anything changes. A service without a stored
 * definition (a placement learned from a heartbeat) publishes nothing through the master.
 */
export const planEdgeRoutes = (service: string, worker: Node.NodeInfo): Effect.Effect<ReadonlyArray<WantedEdgeRoute>, LifecycleError, MasterDb | FleetCalls | EdgeSettings | EdgeResolver.DnsLookup> =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
    const settings = yield* EdgeSettings
    const stored = yield* viaDb(db.definition(service))
    if (Option.isNone(stored)) return []
    const decoded = Validation.decodeStoredDefinition(stored.value)
    if (Either.isLeft(decoded)) {
      return yield* refused(service, `its stored definition does not decode (${decoded.left.map((p) => `${p.path}: ${p.message}`).join("; ")}); redeploy it (mcp deploy ${service})`)
    }
    const publics = PublicRoutes.publicRoutes(decoded.right)
    if (publics.length === 0) return []
    const problems = [...PublicRoutes.disallowedProblems(publics, settings.internalZone, settings.allowedDomains)]
    for (const r of publics) {
      const row = yield* viaDb(db.edgeRoute(r.hostname))
      if (Option.isSome(row) && row.value.route.service !== service) problems.push({ path: `${r.path}.hostname`, message: publishedBy(r.hostname, row.value.route.service) })
    }
    if (problems.length > 0) return yield* refused(service, problems.map((p) => `${p.path}: ${p.message}`).join("; "))
    const chosen = yield* Effect.mapError(chooseEdges(decoded.right, logEmit(service)), (e) => refused(service, e.reason))
    const backendHostname = yield* fleet.proxyAddress(worker)
    return chosen.map(({ edge, route }): WantedEdgeRoute => ({
      edge,
      request: { hostname: route.hostname, service, workerNode: worker.name, backendHostname, backendPort: route.listener }
    }))
  })

/** The point of no return of a stop: every edge route of the service is to go; the saga ends. */
export const commitStop = (sagaId: string, service: string, worker: string) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const rows = yield* viaDb(db.edgeRoutesOf(service))
    yield* viaDb(db.withTransaction(Effect.all([
      Effect.forEach(rows, (r) => db.putEdgeRoute(r.route, "removing"), { discard: true }),
      db.addEvent(worker, "deploy", service, rows.length === 0 ? "stopped" : `stopped; its edge routes go: ${rows.map((r) => r.route.hostname).join(", ")}`),
      db.endSaga(sagaId, "committed")
    ])))
  })

/**
 * The point of no return of a start: the routes it publishes recorded `active` (a row already
 * serving the same target keeps its certificate fields), any other route of the service
 * `removing`; the saga ends.
 */
export const commitStart = (sagaId: string, service: string, worker: string, wanted: ReadonlyArray<WantedEdgeRoute>) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const rows = yield* viaDb(db.edgeRoutesOf(service))
    const keep = (w: WantedEdgeRoute) => {
      const row = rows.find((r) => r.route.hostname === w.request.hostname)
      const fresh = routeOf(w)
      return row !== undefined && row.state === "active" && JSON.stringify(requestOf(row.route)) === JSON.stringify(requestOf(fresh)) && row.route.edgeNode === fresh.edgeNode
        ? row.route
        : fresh
    }
    const dropped = rows.filter((r) => !wanted.some((w) => w.request.hostname === r.route.hostname))
    yield* viaDb(db.withTransaction(Effect.all([
      Effect.forEach(wanted, (w) => db.putEdgeRoute(keep(w), "active"), { discard: true }),
      Effect.forEach(dropped, (r) => db.putEdgeRoute(r.route, "removing"), { discard: true }),
      db.addEvent(worker, "deploy", service, wanted.length === 0 ? "started" : `started; public: ${wanted.map((w) => `${w.request.hostname} via ${w.edge.name}`).join(", ")}`),
      db.endSaga(sagaId, "committed")
    ])))
  })

/**
 * After a commit, at once what the reconciler would otherwise do later: `removing` rows of the
 * service go from their edges (the row with them), `active` ones are set up. What an edge cannot
 * do now stays recorded as it is, and is returned.
 */
export const applyEdgeRows = (service: string) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
    const left: Array<Left> = []
    for (const row of yield* viaDb(db.edgeRoutesOf(service))) {
      const { edgeNode, hostname } = row.route
      const edge = yield* nodeInfo(edgeNode)
      if (Option.isNone(edge)) {
        if (row.state === "removing") {
          yield* Effect.logWarning(`edge route ${hostname}: its edge node ${edgeNode} is no longer known; forgetting the route`)
          yield* viaDb(db.deleteEdgeRoute(hostname))
        } else left.push({ hostname, edgeNode, reason: `edge node ${edgeNode} is not known to this master` })
        continue
      }
      if (row.state === "removing") {
        const gone = yield* Effect.either(fleet.removeEdgeRoute(edge.value, hostname))
        if (Either.isRight(gone)) yield* viaDb(db.deleteEdgeRoute(hostname))
        else left.push({ hostname, edgeNode, reason: gone.left.message })
        continue
      }
      const set = yield* Effect.either(fleet.setupEdgeRoute(edge.value, requestOf(row.route)))
      if (Either.isRight(set)) yield* viaDb(db.putEdgeRoute(set.right, "active"))
      else left.push({ hostname, edgeNode, reason: set.left.message })
    }
    return left
  })

/** Edge routes left to the reconciler are the caller's to know: a typed failure saying what holds. */
const reportLeft = (service: string, worker: string, done: string, verb: "removed" | "set up", left: ReadonlyArray<Left>) =>
  Effect.gen(function* () {
    if (left.length === 0) return
    const db = yield* MasterDb
    const edges = [...new Set(left.map((l) => l.edgeNode))]
    const reason = `${done}, but its edge route${left.length === 1 ? "" : "s"} ${left.map((l) => `${l.hostname} on ${l.edgeNode} (${l.reason})`).join(", ")} could not be ${verb} now; ` +
      `the master's edge reconciler finishes this once ${edges.join(", ")} answer${edges.length === 1 ? "s" : ""}`
    yield* Effect.logWarning(`${service}: ${reason}`)
    yield* viaDb(db.addEvent(worker, "deploy", service, reason))
    return yield* new Errors.PeerFailed({ peer: `agent on ${edges.join(", ")}`, operation: `${verb === "removed" ? "remove" : "set up"} the edge routes of ${service}`, reason, retryable: true })
  })

/** Stops the service on its worker, then takes its public edge routes away. */
export const stop = (service: string, worker: Node.NodeInfo): Effect.Effect<Status.ServiceStatus, LifecycleError, MasterDb | FleetCalls> =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
    const sagaId = crypto.randomUUID()
    yield* viaDb(db.beginSaga(sagaId, service, "stop"))
    const ran = yield* Effect.either(journalFatal(Saga.sequence(db, sagaId, { [stopWorker.name]: Saga.compensator(stopWorker) }, () => Effect.void, (runStep) =>
      runStep(Saga.inDoubtWhen(Saga.step(stopWorker, { service, worker }, fleet.stop(worker, service), () => null), workerMayFinish)))))
    if (Either.isLeft(ran)) {
      if (ran.left.inDoubt === true && ran.left.error._tag !== "SqlError") return yield* inDoubt("stop", service, worker.name, ran.left.error)
      return yield* stepError(ran.left.error)
    }
    yield* commitStop(sagaId, service, worker.name)
    yield* reportLeft(service, worker.name, `${service} is stopped on ${worker.name}`, "removed", yield* applyEdgeRows(service))
    return ran.right
  })

/** Starts the service on its worker, then sets its public edge routes up again. */
export const start = (service: string, worker: Node.NodeInfo): Effect.Effect<Status.ServiceStatus, LifecycleError, MasterDb | FleetCalls | EdgeSettings | EdgeResolver.DnsLookup> =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
    const wanted = yield* planEdgeRoutes(service, worker)
    const sagaId = crypto.randomUUID()
    yield* viaDb(db.beginSaga(sagaId, service, "start"))
    const intent = { service, worker, routes: wanted.map((w) => ({ request: w.request, edge: w.edge })) }
    const ran = yield* Effect.either(journalFatal(Saga.sequence(db, sagaId, { [startWorker.name]: Saga.compensator(startWorker) }, () => Effect.void, (runStep) =>
      runStep(Saga.inDoubtWhen(Saga.step(startWorker, intent, fleet.start(worker, service), () => null), workerMayFinish)))))
    if (Either.isLeft(ran)) {
      if (ran.left.inDoubt === true && ran.left.error._tag !== "SqlError") return yield* inDoubt("start", service, worker.name, ran.left.error)
      return yield* stepError(ran.left.error)
    }
    yield* commitStart(sagaId, service, worker.name, wanted)
    yield* reportLeft(service, worker.name, `${service} is running on ${worker.name}`, "set up", yield* applyEdgeRows(service))
    return ran.right
  })

/**
 * A worker asked again that fails keeps the saga open, to be asked again later: whatever it says
 * now, the first request may have done it, so nothing is undone. One that no longer has the
 * service ends it: a stop is then done (nothing of it runs), a start is not.
 */
const notFinished = (saga: SagaJournal.SagaRow<SagaKind>, worker: string, error: { readonly _tag: string; readonly message: string }) =>
  Effect.gen(function* () {
    if (error._tag !== "ServiceNotFound") return yield* Effect.fail(`stays open: ${worker} cannot ${saga.kind} ${saga.service} now (${error.message})`)
    if (saga.kind === "stop") {
      yield* commitStop(saga.id, saga.service, worker)
      return `finished: ${worker} no longer has ${saga.service}; its edge routes go`
    }
    yield* viaDb((yield* MasterDb).endSaga(saga.id, "compensated", error.message))
    return `not done: ${worker} no longer has ${saga.service}`
  })

/**
 * A stop or start left open (a master restart, a worker that did not answer): one whose worker
 * was asked is finished (the worker asked again, then the commit; the edges are left to the
 * reconciler); one cut short before changed nothing.
 */
export const recoverStopStart = (saga: SagaJournal.SagaRow<SagaKind>) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
    const step = (yield* viaDb(Saga.progress(db, saga.id))).get("worker")
    if (saga.kind === "stop") {
      const asked = yield* decodeIntent(WorkerStopIntent, step)
      if (Option.isNone(asked)) {
        yield* viaDb(db.endSaga(saga.id, "compensated"))
        return "nothing had changed"
      }
      const worker = yield* current(asked.value.worker)
      const done = yield* Effect.either(fleet.stop(worker, saga.service))
      if (Either.isLeft(done)) return yield* notFinished(saga, worker.name, done.left)
      yield* commitStop(saga.id, saga.service, worker.name)
      return `finished: stopped on ${worker.name}, its edge routes left to the reconciler`
    }
    const asked = yield* decodeIntent(WorkerStartIntent, step)
    if (Option.isNone(asked)) {
      yield* viaDb(db.endSaga(saga.id, "compensated"))
      return "nothing had changed"
    }
    const worker = yield* current(asked.value.worker)
    const done = yield* Effect.either(fleet.start(worker, saga.service))
    if (Either.isLeft(done)) return yield* notFinished(saga, worker.name, done.left)
    yield* commitStart(saga.id, saga.service, worker.name, asked.value.routes)
    return `finished: running on ${worker.name}, its edge routes left to the reconciler`
  })
