/**
 * At master start: the cross-node sagas a killed master left open, finished or undone from the
 * journal alone, each in its service's actor (so no new work on the service runs before).
 */
import * as Saga from "@mcp/rpc/Saga"
import type * as SagaJournal from "@mcp/rpc/SagaJournal"
import { Effect, Either, Option, Schema } from "effect"
import { FleetCalls } from "../../fleet/FleetCalls.js"
import { MasterDb, type SagaKind } from "../../db/MasterDb.js"
import { ServiceCoordinators } from "../ServiceCoordinators.js"
import { commitUndeploy, rollForward } from "./Commit.js"
import { current, EdgeSetupIntent, edgeStepPrefix, type Emit, viaDb, type WantedEdgeRoute, WorkerDeployIntent, WorkerUndeployIntent } from "./Model.js"
import { decodeIntent, deploySteps, undeploySteps } from "./Steps.js"
import { recoverStopStart } from "./StopStartSaga.js"

/** Compensations of a recovered saga are reported in the master's log (no client is waiting). */
export const logEmit = (service: string): Emit => (e) =>
  e._tag === "DeployStep" ? Effect.logInfo(`recovering ${service}: [${e.node}] ${e.step}: ${e.status}${e.detail === undefined ? "" : ` (${e.detail})`}`) : Effect.void

/**
 * A deploy cut short before its commit is undone from the journal; when its worker cannot be
 * put back it rolls forward, as a live deploy does.
 */
export const recoverDeploy = (saga: SagaJournal.SagaRow<SagaKind>) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
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
export const recoverUndeploy = (saga: SagaJournal.SagaRow<SagaKind>) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
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
export const recover = Effect.gen(function* () {
  const db = yield* MasterDb
  const coordinators = yield* ServiceCoordinators
  const context = yield* Effect.context<MasterDb | FleetCalls>()
  const open = yield* viaDb(db.sagasIn("running"))
  yield* Effect.forEach(open, (saga) =>
    coordinators.submit(saga.service, Effect.provide(Effect.gen(function* () {
      const outcome = yield* Effect.either(
        saga.kind === "deploy" ? recoverDeploy(saga) : saga.kind === "undeploy" ? recoverUndeploy(saga) : recoverStopStart(saga)
      )
      const message = Either.isRight(outcome)
        ? `the ${saga.kind} cut short by a master restart: ${outcome.right}`
        : `the ${saga.kind} cut short by a master restart ${typeof outcome.left === "string" ? outcome.left : `cannot be read from the journal: ${outcome.left.message}`}`
      if (Either.isLeft(outcome)) yield* Effect.logWarning(`${saga.service}: ${message}`)
      else yield* Effect.logInfo(`${saga.service}: ${message}`)
      yield* viaDb(db.addEvent("master", "recover", saga.service, message))
    }), context)), { discard: true, concurrency: "unbounded" })
  return open.length
})
