/**
 * Deploy and undeploy of one service across nodes: the worker's deploy, then one edge route per
 * public hostname on an edge node, then the master's record. Both run as sagas journaled in the
 * master's database, with the runner and journal the agent's deploy uses (@mcp/rpc Saga.ts): a
 * failure at any step undoes the earlier ones on every node, and a master killed mid-way finishes
 * or undoes what it was doing when it starts again (`recover`). What cannot be undone right away
 * is left recorded for the edge reconciler (EdgeReconciler.ts), never forgotten. Callers run
 * these inside the service's actor.
 *
 * The master's edge route rows are the intent the reconciler converges edges to: an `active` row
 * is a route that must exist on its edge, a `removing` row one that must not. The commit of a
 * saga (placement, definition, routes to drop, a moved service's old copy) is one transaction that
 * also ends the saga, so what is left after it is recorded intent the reconciler finishes: the
 * journal is only needed up to the commit.
 */
import { Deploy, Errors, Node, PublicRoutes, Routes, type ServiceDefinition } from "@mcp/domain"
import { Failures, Saga, type SagaJournal } from "@mcp/rpc"
import { Context, Data, Effect, Either, Layer, Option, Schema, Stream } from "effect"
import * as EdgeResolver from "../edge/EdgeResolver.js"
import { type EdgeRouteRequest, FleetCalls } from "../fleet/FleetCalls.js"
import { MasterDb, type SagaKind } from "../db/MasterDb.js"
import { ServiceCoordinators } from "./ServiceCoordinators.js"

export interface EdgeSettings {
  readonly internalZone: string
  readonly allowedDomains: ReadonlyArray<string>
  /** Used when a public hostname's DNS points at no known edge node. */
  readonly defaultEdge: string | undefined
}
export const EdgeSettings = Context.GenericTag<EdgeSettings>("@mcp/master/EdgeSettings")

export type DeployError = Errors.InvalidDefinition | Errors.DeployFailed | Errors.PeerFailed | Errors.PlacementFailed | Errors.NodeUnreachable
export type UndeployError = Errors.ServiceNotFound | Errors.DeployFailed | Errors.PeerFailed | Errors.NodeUnreachable

export interface DeployRequest {
  readonly definition: ServiceDefinition.ServiceDefinition
  /** The definition as the operator wrote it: what the worker decodes and the master stores. */
  readonly raw: unknown
  readonly worker: Node.NodeInfo
  readonly placementReason: string
  readonly dryRun: boolean
}

type Emit = (event: Deploy.DeployEvent) => Effect.Effect<void>

// What the sagas journal: enough to undo or finish each step from the journal alone.

const EdgeRouteRequest = Schema.Struct({
  hostname: Schema.String,
  service: Schema.String,
  workerNode: Schema.String,
  backendHostname: Schema.String,
  backendPort: Schema.Number
})
const EdgeRouteRowSchema = Schema.Struct({ route: Routes.EdgeRoute, state: Schema.Literal("active", "removing") })

/** The worker's part of a deploy: the definition it was given, to roll forward if it cannot be put back. */
const WorkerDeployIntent = Schema.Struct({ service: Schema.String, worker: Node.NodeInfo, definition: Schema.Unknown })
/** One public hostname's route on its edge, and the row it replaces (put back on compensation). */
const EdgeSetupIntent = Schema.Struct({ request: EdgeRouteRequest, edge: Node.NodeInfo, previous: Schema.OptionFromNullOr(EdgeRouteRowSchema) })
/** One edge route an undeploy removes, put back if the undeploy cannot finish. */
const EdgeRemovalIntent = Schema.Struct({ row: EdgeRouteRowSchema, edge: Node.NodeInfo })
const WorkerUndeployIntent = Schema.Struct({ service: Schema.String, worker: Node.NodeInfo })

/** An edge step's failure, with the route it was for. */
class EdgeStepFailed extends Data.TaggedError("EdgeStepFailed")<{
  readonly hostname: string
  readonly edgeNode: string
  readonly cause: Errors.PeerFailed | Errors.InvalidRequest | Errors.NodeUnreachable
}> {}

const edgeStepPrefix = "edge "
const edgeStepName = (hostname: string) => `${edgeStepPrefix}${hostname}`

/** An edge route the saga wants, with the node that will serve it. */
interface WantedEdgeRoute {
  readonly request: EdgeRouteRequest
  readonly edge: Node.NodeInfo
}

const routeOf = (wanted: WantedEdgeRoute, fields?: Pick<Routes.EdgeRoute, "certSerial" | "certNotAfter">): Routes.EdgeRoute => ({
  hostname: wanted.request.hostname as Routes.EdgeRoute["hostname"],
  edgeNode: wanted.edge.name,
  workerNode: wanted.request.workerNode,
  backendHostname: wanted.request.backendHostname,
  backendPort: wanted.request.backendPort,
  service: wanted.request.service,
  certSerial: fields?.certSerial ?? "",
  certNotAfter: fields?.certNotAfter ?? ""
})

const requestOf = (route: Routes.EdgeRoute): EdgeRouteRequest => ({
  hostname: route.hostname,
  service: route.service,
  workerNode: route.workerNode,
  backendHostname: route.backendHostname,
  backendPort: route.backendPort
})

export const make = Effect.gen(function* () {
  const db = yield* MasterDb
  const fleet = yield* FleetCalls
  const settings = yield* EdgeSettings
  const lookup = yield* EdgeResolver.DnsLookup
  const coordinators = yield* ServiceCoordinators
  const viaDb = Failures.fatal("the master database")
  /** The saga runner fails with the journal's SQL errors too: those are the database's, fatal like any other. */
  const journalFatal = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.catchIf(effect, (e): e is Extract<E, { readonly _tag: "SqlError" }> => (e as { readonly _tag?: string })._tag === "SqlError", (e) => viaDb(Effect.fail(e)))

  const nodeInfo = (name: string) => Effect.map(viaDb(db.node(name)), Option.map((row) => row.info))
  /** A node as the master knows it now (its addresses may have changed since it was journaled). */
  const current = (node: Node.NodeInfo) => Effect.map(nodeInfo(node.name), Option.getOrElse(() => node))

  const edgeNodes = Effect.map(viaDb(db.nodes), (rows) => rows.filter((r) => r.info.role === "edge").map((r) => r.info))

  /** Picks the edge node for each public hostname; fails before anything changes. */
  const chooseEdges = (def: ServiceDefinition.ServiceDefinition, emit: Emit) =>
    Effect.gen(function* () {
      const routes = PublicRoutes.publicRoutes(def)
      if (routes.length === 0) return []
      const edges = yield* edgeNodes
      const candidates = EdgeResolver.edgeCandidates(edges)
      return yield* Effect.forEach(routes, (route) =>
        Effect.gen(function* () {
          const choice = yield* EdgeResolver.chooseEdge(def.name, route.hostname, candidates, settings.defaultEdge).pipe(Effect.provideService(EdgeResolver.DnsLookup, lookup))
          const edge = edges.find((e) => e.name === choice.node)!
          const detail = `${route.hostname} -> edge node ${edge.name} (${choice.via === "default" ? "default edge node" : `DNS ${choice.via}`})`
          if (choice.warning !== undefined) yield* Effect.logWarning(`deploy ${def.name}: ${choice.warning}`)
          yield* emit(new Deploy.DeployStep({ node: edge.name, step: "edge-resolve", status: "done", detail: choice.warning === undefined ? detail : `${detail}; warning: ${choice.warning}` }))
          return { route, edge }
        })
      )
    })

  /**
   * Puts back what a deploy changed on the worker: the previous definition when the service ran
   * there before, else nothing at all (a service already gone counts as put back). Fails when the
   * worker cannot be rolled back.
   */
  const restoreWorker = (service: string, worker: Node.NodeInfo, emit: Emit) =>
    Effect.gen(function* () {
      const before = yield* viaDb(db.placement(service))
      const previous = yield* viaDb(db.definition(service))
      if (Option.isSome(before) && before.value === worker.name && Option.isSome(previous)) {
        yield* emit(new Deploy.DeployStep({ node: worker.name, step: "worker", status: "compensating", detail: `redeploying the previous definition of ${service}` }))
        yield* Stream.runDrain(fleet.deploy(worker, previous.value, false))
      } else {
        yield* emit(new Deploy.DeployStep({ node: worker.name, step: "worker", status: "compensating", detail: `undeploying ${service}` }))
        yield* fleet.undeploy(worker, service).pipe(Effect.catchTag("ServiceNotFound", () => Effect.void))
      }
      yield* emit(new Deploy.DeployStep({ node: worker.name, step: "worker", status: "compensated", detail: `${service} is as it was before this deploy` }))
    })

  /**
   * Removes a route from an edge. When the edge cannot be reached the row is kept as `removing`
   * (`record` is what to keep when there is no row), so the reconciler finishes the job.
   */
  const removeOrDefer = (edge: Node.NodeInfo, hostname: string, record: Option.Option<Routes.EdgeRoute>) =>
    Effect.gen(function* () {
      const removed = yield* Effect.either(fleet.removeEdgeRoute(edge, hostname))
      const row = yield* viaDb(db.edgeRoute(hostname))
      // A row that now belongs to another edge node is someone else's intent: leave it.
      const ours = Option.isSome(row) && row.value.route.edgeNode === edge.name
      if (Either.isRight(removed)) {
        if (ours) yield* viaDb(db.deleteEdgeRoute(hostname))
        return true
      }
      yield* Effect.logWarning(`edge route ${hostname} on ${edge.name}: removal deferred (${removed.left.message}); the reconciler retries`)
      const keep = ours ? Option.some(row.value.route) : Option.isNone(row) ? record : Option.none()
      if (Option.isSome(keep)) yield* viaDb(db.putEdgeRoute(keep.value, "removing"))
      return false
    })

  /**
   * Undoes one edge route a deploy touched: a route that existed before gets its previous
   * backend back; a new one is removed. What the edge cannot do now is left for the reconciler.
   */
  const restoreEdgeRoute = (intent: typeof EdgeSetupIntent.Type, emit: Emit) =>
    Effect.gen(function* () {
      const { previous, request } = intent
      const edge = yield* current(intent.edge)
      if (Option.isSome(previous) && previous.value.state === "active") {
        const old = previous.value.route
        yield* viaDb(db.putEdgeRoute(old, "active"))
        const oldEdge = yield* nodeInfo(old.edgeNode)
        if (Option.isSome(oldEdge)) {
          const put = yield* Effect.either(fleet.setupEdgeRoute(oldEdge.value, requestOf(old)))
          if (Either.isLeft(put)) yield* Effect.logWarning(`edge route ${request.hostname}: cannot restore it on ${old.edgeNode} now (${put.left.message}); the reconciler retries`)
        }
        if (old.edgeNode !== edge.name) yield* removeOrDefer(edge, request.hostname, Option.none())
        yield* emit(new Deploy.DeployStep({ node: old.edgeNode, step: "edge", status: "compensated", detail: `${request.hostname} points at ${old.workerNode} again` }))
        return
      }
      yield* removeOrDefer(edge, request.hostname, Option.some(routeOf({ request, edge })))
      yield* emit(new Deploy.DeployStep({ node: edge.name, step: "edge", status: "compensated", detail: `${request.hostname} removed` }))
    })

  /** The deploy saga's journaled steps; compensations report through `emit`. */
  const deploySteps = (emit: Emit) => {
    const worker = Saga.journaled({
      name: "worker",
      Intent: WorkerDeployIntent,
      Result: Schema.Null,
      compensate: ({ intent }) => Effect.flatMap(current(intent.worker), (node) => restoreWorker(intent.service, node, emit))
    })
    const edge = (hostname: string) => Saga.journaled({
      name: edgeStepName(hostname),
      Intent: EdgeSetupIntent,
      Result: Schema.Null,
      compensate: ({ intent }) => restoreEdgeRoute(intent, emit)
    })
    const compensators: Saga.Compensators<never> = (step) =>
      step === worker.name ? Saga.compensator(worker) : step.startsWith(edgeStepPrefix) ? Saga.compensator(edge(step.slice(edgeStepPrefix.length))) : undefined
    return { worker, edge, compensators }
  }

  /** Sets up one edge route, recorded as intent before the edge is asked. */
  const setUpEdgeRoute = (wanted: WantedEdgeRoute, emit: Emit) =>
    Effect.gen(function* () {
      const { hostname, backendHostname, backendPort, workerNode } = wanted.request
      yield* emit(new Deploy.DeployStep({ node: wanted.edge.name, step: "edge", status: "started", detail: `${hostname} -> ${backendHostname}:${backendPort} on ${workerNode}` }))
      yield* viaDb(db.putEdgeRoute(routeOf(wanted), "active"))
      const set = yield* fleet.setupEdgeRoute(wanted.edge, wanted.request)
      yield* viaDb(db.putEdgeRoute(set, "active"))
      yield* emit(new Deploy.DeployStep({ node: wanted.edge.name, step: "edge", status: "done", detail: `${hostname} served by ${wanted.edge.name} (certificate ${set.certSerial}, expires ${set.certNotAfter})` }))
    }).pipe(
      Effect.tapError((cause) => emit(new Deploy.DeployStep({ node: wanted.edge.name, step: "edge", status: "failed", detail: cause.message }))),
      Effect.mapError((cause) => new EdgeStepFailed({ hostname: wanted.request.hostname, edgeNode: wanted.edge.name, cause }))
    )

  /**
   * The point of no return of a deploy, in one transaction: where the service runs and its
   * definition; the routes it no longer has marked for removal; a moved service's old copy
   * recorded for removal; the saga ended. The routes it wants are already recorded `active`.
   */
  const commitDeploy = (sagaId: string, service: string, worker: string, raw: unknown, wanted: ReadonlyArray<string>, placedBefore: Option.Option<string>, event: string) =>
    Effect.gen(function* () {
      const dropped = (yield* viaDb(db.edgeRoutesOf(service))).filter((r) => !wanted.includes(r.route.hostname))
      yield* viaDb(db.withTransaction(Effect.all([
        db.place(service, worker),
        db.storeDefinition(service, raw),
        Effect.forEach(dropped, (r) => db.putEdgeRoute(r.route, "removing"), { discard: true }),
        Option.isSome(placedBefore) && placedBefore.value !== worker ? db.addStaleCopy(service, placedBefore.value) : Effect.void,
        db.addEvent(worker, "deploy", service, event),
        db.endSaga(sagaId, "committed")
      ])))
    })

  /**
   * After a commit, at once what the reconciler would otherwise do later: routes the definition
   * no longer has go from their edges, and a moved service leaves its old node.
   */
  const finishAfterCommit = (service: string, worker: string, placedBefore: Option.Option<string>, emit: Emit) =>
    Effect.gen(function* () {
      for (const row of (yield* viaDb(db.edgeRoutesOf(service))).filter((r) => r.state === "removing")) {
        const edge = yield* nodeInfo(row.route.edgeNode)
        if (Option.isNone(edge)) {
          yield* Effect.logWarning(`edge route ${row.route.hostname}: its edge node ${row.route.edgeNode} is no longer known; forgetting the route`)
          yield* viaDb(db.deleteEdgeRoute(row.route.hostname))
          continue
        }
        const gone = yield* removeOrDefer(edge.value, row.route.hostname, Option.some(row.route))
        yield* emit(new Deploy.DeployStep({ node: row.route.edgeNode, step: "edge", status: gone ? "done" : "skipped", detail: gone ? `${row.route.hostname} removed (no longer in the definition here)` : `${row.route.hostname} to be removed by the reconciler` }))
      }
      if (Option.isSome(placedBefore) && placedBefore.value !== worker) yield* retireOldCopy(service, placedBefore.value, worker, emit)
    })

  /**
   * Undeploys a moved service from the node it ran on (recorded as a stale copy by the commit).
   * A failure does not fail the deploy (the service runs where it should): the reconciler
   * removes the copy later.
   */
  const retireOldCopy = (service: string, oldNode: string, newNode: string, emit: Emit) =>
    Effect.gen(function* () {
      const old = yield* nodeInfo(oldNode)
      const gone = Option.isNone(old)
        ? Either.left(`node ${oldNode} is no longer known to the master`)
        : Either.mapLeft(yield* Effect.either(fleet.undeploy(old.value, service)), (e) => e._tag === "ServiceNotFound" ? undefined : e.message)
      if (Either.isRight(gone) || gone.left === undefined) {
        yield* emit(new Deploy.DeployStep({ node: oldNode, step: "move", status: "done", detail: `${service} moved to ${newNode}; removed from ${oldNode}` }))
        yield* viaDb(db.withTransaction(Effect.all([db.deleteStaleCopy(service, oldNode), db.addEvent(oldNode, "deploy", service, `moved to ${newNode}; removed from ${oldNode}`)])))
        return
      }
      const reason = `${service} now runs on ${newNode}, but its old copy on ${oldNode} could not be removed yet (${gone.left}); the master retries until it is gone`
      yield* Effect.logWarning(reason)
      yield* viaDb(db.addEvent(oldNode, "deploy", service, reason))
      yield* emit(new Deploy.DeployStep({ node: oldNode, step: "move", status: "failed", detail: reason }))
    })

  /**
   * A worker that cannot be put back keeps the new service: roll forward. The routes it wants
   * stay wanted (the reconciler sets them up once their edges answer) and the deploy commits.
   */
  const rollForward = (sagaId: string, service: string, worker: Node.NodeInfo, raw: unknown, wanted: ReadonlyArray<WantedEdgeRoute>, why: string, emit: Emit) =>
    Effect.gen(function* () {
      const placedBefore = yield* viaDb(db.placement(service))
      for (const w of wanted) yield* viaDb(db.putEdgeRoute(routeOf(w), "active"))
      yield* commitDeploy(sagaId, service, worker.name, raw, wanted.map((w) => w.request.hostname), placedBefore, why)
      yield* finishAfterCommit(service, worker.name, placedBefore, emit)
    })

  const deploy = (request: DeployRequest, emit: Emit): Effect.Effect<void, DeployError> =>
    Effect.gen(function* () {
      const { definition: def, worker } = request
      const publics = PublicRoutes.publicRoutes(def)
      const disallowed = PublicRoutes.disallowedProblems(publics, settings.internalZone, settings.allowedDomains)
      // A public name belongs to one service at a time: taking another's would strand its route.
      const taken = yield* Effect.forEach(publics, (r) =>
        Effect.map(viaDb(db.edgeRoute(r.hostname)), Option.match({
          onNone: () => [],
          onSome: (row) => row.route.service === def.name ? [] : [{
            path: `${r.path}.hostname`,
            message: `public hostname "${r.hostname}" is already published by service ${row.route.service}; undeploy ${row.route.service} first, or use another name`
          }]
        })))
      const problems = [...disallowed, ...taken.flat()]
      if (problems.length > 0) return yield* new Errors.InvalidDefinition({ service: def.name, problems })
      const chosen = yield* chooseEdges(def, emit)

      if (request.dryRun) {
        return yield* Stream.runForEach(fleet.deploy(worker, request.raw, true), (e) =>
          emit(e._tag === "DeployPlanned"
            ? new Deploy.DeployPlanned({ plan: { ...e.plan, node: worker.name, placementReason: request.placementReason, edgeRoutes: chosen.map((c) => ({ hostname: c.route.hostname, edgeNode: c.edge.name })) } })
            : e)
        )
      }

      // Where the edges will forward to, asked before anything changes (a read).
      const backendHostname = chosen.length === 0 ? "" : yield* fleet.proxyAddress(worker)
      const wantedAll = chosen.map(({ route, edge }): WantedEdgeRoute => ({
        edge,
        request: { hostname: route.hostname, service: def.name, workerNode: worker.name, backendHostname, backendPort: route.listener }
      }))
      // Where the service ran before: a changed pin moves it, and the old copy goes last.
      const placedBefore = yield* viaDb(db.placement(def.name))
      const previousRows = yield* viaDb(db.edgeRoutesOf(def.name))

      const sagaId = crypto.randomUUID()
      const steps = deploySteps(emit)
      yield* viaDb(db.beginSaga(sagaId, def.name, "deploy"))
      const ran = yield* Effect.either(journalFatal(Saga.sequence(db, sagaId, steps.compensators, () => Effect.void, (runStep) =>
        Effect.gen(function* () {
          // 1. The worker: its own saga either deploys the service or leaves it as it was, so a
          // failure here has nothing left to undo on the worker.
          const onWorker = Stream.runFoldEffect(fleet.deploy(worker, request.raw, false), Option.none<Deploy.DeployDone>(), (done, e) =>
            e._tag === "DeployDone" ? Effect.succeed(Option.some(e)) : Effect.as(emit(e), done)
          ).pipe(Effect.tapError(() => viaDb(db.journal(sagaId, steps.worker.name, "compensated", null))))
          const done = yield* runStep(Saga.step(steps.worker, { service: def.name, worker, definition: request.raw }, onWorker, () => null))
          // 2. The edge routes, each journaled with the row it replaces.
          for (const wanted of wantedAll) {
            const previous = Option.fromNullable(previousRows.find((r) => r.route.hostname === wanted.request.hostname))
            yield* runStep(Saga.step(steps.edge(wanted.request.hostname), { request: wanted.request, edge: wanted.edge, previous }, setUpEdgeRoute(wanted, emit), () => null))
          }
          return done
        }))))

      if (Either.isLeft(ran)) {
        const failed = ran.left
        if (failed.error._tag !== "EdgeStepFailed") return yield* failed.error
        const { cause, edgeNode, hostname } = failed.error
        const workerStep = (yield* viaDb(Saga.progress(db, sagaId))).get(steps.worker.name)
        if (workerStep !== undefined && !workerStep.compensated) {
          const workerError = failed.compensationErrors.find((e) => e.startsWith(`${steps.worker.name}: `)) ?? "unknown"
          yield* rollForward(sagaId, def.name, worker, request.raw, wantedAll, `edge step failed (${cause.message}) and the worker could not be rolled back (${workerError}); the edge routes are retried by the reconciler`, emit)
          return yield* new Errors.PeerFailed({
            peer: `agent on ${worker.name}`,
            operation: `roll back ${def.name} after its edge step failed`,
            reason: `${cause.message}; rolling back failed too (${workerError}), so ${def.name} stays deployed on ${worker.name} and the master keeps retrying its edge routes`,
            retryable: true
          })
        }
        yield* viaDb(db.addEvent("master", "deploy", def.name, `deploy rolled back on every node: ${cause.message}`))
        return yield* new Errors.DeployFailed({
          service: def.name,
          step: `edge route ${hostname} on ${edgeNode}`,
          reason: cause.message,
          retryable: cause._tag === "PeerFailed" ? cause.retryable : cause._tag === "NodeUnreachable"
        })
      }

      // 3. The master's record, which ends the saga; then what the record says is to go, goes.
      yield* commitDeploy(sagaId, def.name, worker.name, request.raw, wantedAll.map((w) => w.request.hostname), placedBefore,
        `deployed on ${worker.name}${chosen.length === 0 ? "" : `; public: ${chosen.map((c) => `${c.route.hostname} via ${c.edge.name}`).join(", ")}`}`)
      yield* finishAfterCommit(def.name, worker.name, placedBefore, emit)
      if (Option.isSome(ran.right)) yield* emit(ran.right.value)
    })

  /** The undeploy saga's journaled steps. */
  const undeploySteps = (service: string) => {
    const worker = Saga.journaled({
      name: "worker",
      Intent: WorkerUndeployIntent,
      Result: Schema.Null,
      // The worker's own undeploy is journaled on the agent and finished there: nothing to undo.
      compensate: () => Effect.void
    })
    const edge = (hostname: string) => Saga.journaled({
      name: edgeStepName(hostname),
      Intent: EdgeRemovalIntent,
      Result: Schema.Struct({ deferred: Schema.Boolean }),
      compensate: ({ intent }) =>
        Effect.gen(function* () {
          // Routes already marked for removal stay the reconciler's; an active one is put back.
          if (intent.row.state !== "active") return
          const edge = yield* current(intent.edge)
          const put = yield* Effect.either(fleet.setupEdgeRoute(edge, requestOf(intent.row.route)))
          if (Either.isLeft(put)) yield* Effect.logWarning(`undeploy ${service}: cannot put edge route ${intent.row.route.hostname} back now (${put.left.message}); the reconciler retries`)
        })
    })
    const compensators: Saga.Compensators<never> = (step) =>
      step === worker.name ? Saga.compensator(worker) : step.startsWith(edgeStepPrefix) ? Saga.compensator(edge(step.slice(edgeStepPrefix.length))) : undefined
    return { worker, edge, compensators }
  }

  /**
   * The point of no return of an undeploy, in one transaction: the service's edge rows go (those
   * whose removal was deferred stay `removing` for the reconciler), its placement, the old copies
   * removed, and the saga ends.
   */
  const commitUndeploy = (sagaId: string, service: string, deferred: ReadonlyArray<string>, staleGone: ReadonlyArray<string>) =>
    Effect.gen(function* () {
      const rows = yield* viaDb(db.edgeRoutesOf(service))
      yield* viaDb(db.withTransaction(Effect.all([
        Effect.forEach(rows, (r) => deferred.includes(r.route.hostname) ? db.putEdgeRoute(r.route, "removing") : db.deleteEdgeRoute(r.route.hostname), { discard: true }),
        Effect.forEach(staleGone, (node) => db.deleteStaleCopy(service, node), { discard: true }),
        db.unplace(service),
        db.addEvent("master", "deploy", service, rows.length === 0 ? "undeployed" : `undeployed; edge routes removed: ${rows.map((r) => r.route.hostname).join(", ")}`),
        db.endSaga(sagaId, "committed")
      ])))
    })

  /** Old copies a move left behind go too; one that cannot go now stays recorded for the reconciler. */
  const removeStaleCopies = (service: string) =>
    Effect.gen(function* () {
      const staleGone: Array<string> = []
      for (const copy of (yield* viaDb(db.staleCopies)).filter((c) => c.service === service)) {
        const node = yield* nodeInfo(copy.node)
        if (Option.isNone(node)) continue
        const gone = yield* Effect.either(fleet.undeploy(node.value, service))
        if (Either.isRight(gone) || gone.left._tag === "ServiceNotFound") staleGone.push(copy.node)
        else yield* Effect.logWarning(`undeploy ${service}: its old copy on ${copy.node} cannot be removed now (${gone.left.message}); the reconciler retries`)
      }
      return staleGone
    })

  /** Edge routes first, then the worker; a failure puts the removed edge routes back. */
  const undeploy = (service: string, worker: Node.NodeInfo): Effect.Effect<void, UndeployError> =>
    Effect.gen(function* () {
      const rows = yield* viaDb(db.edgeRoutesOf(service))
      const sagaId = crypto.randomUUID()
      const steps = undeploySteps(service)
      yield* viaDb(db.beginSaga(sagaId, service, "undeploy"))
      const ran = yield* Effect.either(journalFatal(Saga.sequence(db, sagaId, steps.compensators, () => Effect.void, (runStep) =>
        Effect.gen(function* () {
          const deferred: Array<string> = []
          for (const row of rows) {
            const edge = yield* nodeInfo(row.route.edgeNode)
            if (Option.isNone(edge)) {
              yield* Effect.logWarning(`undeploy ${service}: edge node ${row.route.edgeNode} of ${row.route.hostname} is no longer known; forgetting the route`)
              continue
            }
            const remove = Effect.gen(function* () {
              const gone = yield* Effect.either(fleet.removeEdgeRoute(edge.value, row.route.hostname))
              if (Either.isRight(gone)) return false
              // Routes already marked for removal stay the reconciler's; an active one blocks.
              if (row.state === "removing") return true
              return yield* new Errors.PeerFailed({
                peer: `agent on ${edge.value.name}`,
                operation: `remove edge route ${row.route.hostname} of ${service}`,
                reason: `${gone.left.message}; nothing was undeployed (the service still runs on ${worker.name}); retry when ${edge.value.name} is back`,
                retryable: true
              })
            })
            if (yield* runStep(Saga.step(steps.edge(row.route.hostname), { row, edge: edge.value }, remove, (deferred) => ({ deferred })))) deferred.push(row.route.hostname)
          }
          yield* runStep(Saga.step(steps.worker, { service, worker }, fleet.undeploy(worker, service), () => null))
          return deferred
        }))))
      if (Either.isLeft(ran)) return yield* ran.left.error
      const staleGone = yield* removeStaleCopies(service)
      yield* commitUndeploy(sagaId, service, ran.right, staleGone)
    })

  // ---------------------------------------------------------------------------------------------
  // At start: sagas a killed master left open.

  const decodeIntent = <A, I>(schema: Schema.Schema<A, I>, step: Saga.StepProgress | undefined) =>
    step === undefined ? Effect.succeed(Option.none<A>()) : Effect.asSome(Schema.decodeUnknown(schema)(step.intent))

  /** Compensations of a recovered saga are reported in the master's log (no client is waiting). */
  const logEmit = (service: string): Emit => (e) =>
    e._tag === "DeployStep" ? Effect.logInfo(`recovering ${service}: [${e.node}] ${e.step}: ${e.status}${e.detail === undefined ? "" : ` (${e.detail})`}`) : Effect.void

  /**
   * A deploy cut short before its commit is undone from the journal; when its worker cannot be
   * put back it rolls forward, as a live deploy does.
   */
  const recoverDeploy = (saga: SagaJournal.SagaRow<SagaKind>) =>
    Effect.gen(function* () {
      const emit = logEmit(saga.service)
      const steps = deploySteps(emit)
      const failures = yield* viaDb(Saga.compensate(db, saga.id, steps.compensators))
      if (failures.length === 0) return "rolled back on every node"
      const progress = yield* viaDb(Saga.progress(db, saga.id))
      const onWorker = yield* decodeIntent(WorkerDeployIntent, progress.get(steps.worker.name))
      if (Option.isNone(onWorker) || progress.get(steps.worker.name)?.compensated === true) {
        return yield* Effect.fail(`could not be rolled back (${failures.join("; ")}); retried at the next start`)
      }
      const wanted: Array<WantedEdgeRoute> = []
      for (const [step, entry] of progress) {
        if (!step.startsWith(edgeStepPrefix)) continue
        const intent = yield* Schema.decodeUnknown(EdgeSetupIntent)(entry.intent)
        wanted.push({ request: intent.request, edge: intent.edge })
      }
      const { definition, service, worker } = onWorker.value
      yield* rollForward(saga.id, service, worker, definition, wanted, `a deploy cut short by a master restart could not be rolled back (${failures.join("; ")}); kept on ${worker.name}`, emit)
      return `kept on ${worker.name}: the worker could not be rolled back`
    })

  /**
   * An undeploy whose worker was asked is finished (the agent finishes its own undeploy); one cut
   * short before that puts its edge routes back.
   */
  const recoverUndeploy = (saga: SagaJournal.SagaRow<SagaKind>) =>
    Effect.gen(function* () {
      const steps = undeploySteps(saga.service)
      const progress = yield* viaDb(Saga.progress(db, saga.id))
      const onWorker = yield* decodeIntent(WorkerUndeployIntent, progress.get(steps.worker.name))
      if (Option.isSome(onWorker)) {
        const worker = yield* current(onWorker.value.worker)
        const gone = yield* Effect.either(fleet.undeploy(worker, saga.service).pipe(Effect.catchTag("ServiceNotFound", () => Effect.void)))
        if (Either.isRight(gone)) {
          // Routes not yet removed are left to the reconciler: the service is no longer placed.
          const left = (yield* viaDb(db.edgeRoutesOf(saga.service))).map((r) => r.route.hostname)
          yield* commitUndeploy(saga.id, saga.service, left, [])
          return "finished"
        }
        yield* Effect.logWarning(`recovering the undeploy of ${saga.service}: ${worker.name} cannot finish it now (${gone.left.message}); putting its edge routes back`)
      }
      const failures = yield* viaDb(Saga.compensate(db, saga.id, steps.compensators))
      if (failures.length > 0) return yield* Effect.fail(`could not be undone (${failures.join("; ")}); retried at the next start`)
      return "undone: the service stays deployed"
    })

  /**
   * Finishes or undoes every saga a previous run of the master left open, each in its service's
   * actor (so no new deploy of the service runs before). A saga that cannot be closed now stays
   * open, logged and recorded as an event, for the next start.
   */
  const recover = Effect.gen(function* () {
    const open = yield* viaDb(db.sagasIn("running"))
    yield* Effect.forEach(open, (saga) =>
      coordinators.submit(saga.service, Effect.gen(function* () {
        const outcome = yield* Effect.either(saga.kind === "deploy" ? recoverDeploy(saga) : recoverUndeploy(saga))
        const message = Either.isRight(outcome)
          ? `the ${saga.kind} cut short by a master restart: ${outcome.right}`
          : `the ${saga.kind} cut short by a master restart ${typeof outcome.left === "string" ? outcome.left : `cannot be read from the journal: ${outcome.left.message}`}`
        if (Either.isLeft(outcome)) yield* Effect.logWarning(`${saga.service}: ${message}`)
        else yield* Effect.logInfo(`${saga.service}: ${message}`)
        yield* viaDb(db.addEvent("master", "recover", saga.service, message))
      })), { discard: true, concurrency: "unbounded" })
    return open.length
  })

  return { deploy, undeploy, recover } as const
})

export class CrossNodeSaga extends Context.Tag("@mcp/master/CrossNodeSaga")<CrossNodeSaga, Effect.Effect.Success<typeof make>>() {}

export const layer = Layer.effect(CrossNodeSaga, make)
