/**
 * The cross-node undeploy, as a saga: each edge route removed (a route already marked for
 * removal whose edge is down is left to the reconciler), then the worker, then the commit. A
 * failure puts the removed routes back and leaves the service deployed, except a worker that did
 * not answer: it may have undeployed, so the saga stays open and is finished once it answers.
 */
import { Errors, type Node } from "@mcp/domain"
import * as Saga from "@mcp/rpc/Saga"
import { Effect, Either, Option } from "effect"
import { FleetCalls } from "../../fleet/FleetCalls.js"
import { MasterDb } from "../../db/MasterDb.js"
import { commitUndeploy } from "./Commit.js"
import { inDoubt, journalFatal, nodeInfo, stepError, type UndeployError, viaDb, workerMayFinish } from "./Model.js"
import { removeStaleCopies } from "./NodeChanges.js"
import { undeploySteps } from "./Steps.js"

/** Edge routes first, then the worker; a failure puts the removed edge routes back. */
export const undeploy = (service: string, worker: Node.NodeInfo): Effect.Effect<void, UndeployError, MasterDb | FleetCalls> =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
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
        yield* runStep(Saga.inDoubtWhen(Saga.step(steps.worker, { service, worker }, fleet.undeploy(worker, service), () => null), workerMayFinish))
        return deferred
      }))))
    if (Either.isLeft(ran)) {
      // Left open: the edge routes stay off, and the worker is asked again until it answers.
      if (ran.left.inDoubt === true && ran.left.error._tag !== "SqlError") return yield* inDoubt("undeploy", service, worker.name, ran.left.error)
      return yield* stepError(ran.left.error)
    }
    const staleGone = yield* removeStaleCopies(service)
    yield* commitUndeploy(sagaId, service, ran.right, staleGone)
  })
