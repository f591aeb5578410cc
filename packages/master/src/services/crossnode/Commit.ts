/**
 * The point of no return of each cross-node saga: one transaction that records the outcome and
 * ends the saga, so what is left after it is recorded intent the edge reconciler finishes (the
 * journal is only needed up to the commit). Then, at once, what the reconciler would do later.
 */
import { Deploy, type Node } from "@mcp/domain"
import { Effect, Option } from "effect"
import { MasterDb } from "../../db/MasterDb.js"
import { type Emit, nodeInfo, routeOf, viaDb, type WantedEdgeRoute } from "./Model.js"
import { removeOrDefer, retireOldCopy } from "./NodeChanges.js"

/**
 * The point of no return of a deploy, in one transaction: where the service runs and its
 * definition; the routes it no longer has marked for removal; a moved service's old copy
 * recorded for removal; the saga ended. The routes it wants are already recorded `active`.
 */
export const commitDeploy = (sagaId: string, service: string, worker: string, raw: unknown, wanted: ReadonlyArray<string>, placedBefore: Option.Option<string>, event: string) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
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
export const finishAfterCommit = (service: string, worker: string, placedBefore: Option.Option<string>, emit: Emit) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
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
 * A worker that cannot be put back keeps the new service: roll forward. The routes it wants
 * stay wanted (the reconciler sets them up once their edges answer) and the deploy commits.
 */
export const rollForward = (sagaId: string, service: string, worker: Node.NodeInfo, raw: unknown, wanted: ReadonlyArray<WantedEdgeRoute>, why: string, emit: Emit) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const placedBefore = yield* viaDb(db.placement(service))
    for (const w of wanted) yield* viaDb(db.putEdgeRoute(routeOf(w), "active"))
    yield* commitDeploy(sagaId, service, worker.name, raw, wanted.map((w) => w.request.hostname), placedBefore, why)
    yield* finishAfterCommit(service, worker.name, placedBefore, emit)
  })

/**
 * The point of no return of an undeploy, in one transaction: the service's edge rows go (those
 * whose removal was deferred stay `removing` for the reconciler), its placement, the old copies
 * removed, and the saga ends.
 */
export const commitUndeploy = (sagaId: string, service: string, deferred: ReadonlyArray<string>, staleGone: ReadonlyArray<string>) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const rows = yield* viaDb(db.edgeRoutesOf(service))
    yield* viaDb(db.withTransaction(Effect.all([
      Effect.forEach(rows, (r) => deferred.includes(r.route.hostname) ? db.putEdgeRoute(r.route, "removing") : db.deleteEdgeRoute(r.route.hostname), { discard: true }),
      Effect.forEach(staleGone, (node) => db.deleteStaleCopy(service, node), { discard: true }),
      db.unplace(service),
      db.addEvent("master", "deploy", service, rows.length === 0 ? "undeployed" : `undeployed; edge routes removed: ${rows.map((r) => r.route.hostname).join(", ")}`),
      db.endSaga(sagaId, "committed")
    ])))
  })
