/**
 * What the cross-node sagas do on the nodes, and how each change is undone: the worker put back,
 * an edge route set up, removed or put back, a moved service's old copy retired. What an
 * unreachable node cannot do now is recorded for the edge reconciler, never dropped.
 */
import { Deploy, type Node, type Routes } from "@mcp/domain"
import { Effect, Either, Option, Stream } from "effect"
import { FleetCalls } from "../../fleet/FleetCalls.js"
import { MasterDb } from "../../db/MasterDb.js"
import { current, EdgeSetupIntent, EdgeStepFailed, type Emit, nodeInfo, requestOf, routeOf, viaDb, type WantedEdgeRoute, workerDidNotAnswer } from "./Model.js"

/**
 * Puts back what a deploy changed on the worker: the previous definition when the service ran
 * there before, else nothing at all (a service already gone counts as put back). Fails when the
 * worker cannot be rolled back.
 */
export const restoreWorker = (service: string, worker: Node.NodeInfo, emit: Emit) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
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

/** What asking a worker once more to roll a deploy back came to. */
export type WorkerRollback =
  | { readonly _tag: "Undone" }
  /**
   * It did not answer, or failed in a way worth retrying: which definition it runs is not known
   * (an earlier attempt may have rolled it back), so the saga stays open and is retried.
   */
  | { readonly _tag: "NotYet"; readonly reason: string }
  /** It answered that it cannot, for good: it keeps the new definition (the deploy rolls forward). */
  | { readonly _tag: "Refused"; readonly reason: string }

/**
 * After a deploy's rollback failed on its worker (each compensation is retried a few times
 * already): the worker asked once more, and what its answer, or its silence, means. Undone, the
 * step is journaled compensated and the saga ends compensated.
 */
export const retryWorkerRollback = (sagaId: string, service: string, worker: Node.NodeInfo, emit: Emit) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const restored = yield* Effect.either(Effect.flatMap(current(worker), (node) => restoreWorker(service, node, emit)))
    if (Either.isRight(restored)) {
      yield* viaDb(db.withTransaction(Effect.all([db.journal(sagaId, "worker", "compensated", null), db.endSaga(sagaId, "compensated")])))
      return { _tag: "Undone" } as WorkerRollback
    }
    const e = restored.left
    const reason = e.message
    const worthRetrying = workerDidNotAnswer(e) || ("retryable" in e && e.retryable === true)
    return (worthRetrying ? { _tag: "NotYet", reason } : { _tag: "Refused", reason }) as WorkerRollback
  })

/**
 * Removes a route from an edge. When the edge cannot be reached the row is kept as `removing`
 * (`record` is what to keep when there is no row), so the reconciler finishes the job.
 */
export const removeOrDefer = (edge: Node.NodeInfo, hostname: string, record: Option.Option<Routes.EdgeRoute>) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
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
export const restoreEdgeRoute = (intent: typeof EdgeSetupIntent.Type, emit: Emit) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
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

/** Sets up one edge route, recorded as intent before the edge is asked. */
export const setUpEdgeRoute = (wanted: WantedEdgeRoute, emit: Emit) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
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
 * Undeploys a moved service from the node it ran on (recorded as a stale copy by the commit).
 * A failure does not fail the deploy (the service runs where it should): the reconciler
 * removes the copy later.
 */
export const retireOldCopy = (service: string, oldNode: string, newNode: string, emit: Emit) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
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

/** Old copies a move left behind go too; one that cannot go now stays recorded for the reconciler. */
export const removeStaleCopies = (service: string) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
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
