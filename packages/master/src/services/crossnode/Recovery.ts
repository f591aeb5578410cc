/**
 * Cross-node sagas left open, finished or undone from the journal alone, inside their service's
 * actor: those a killed master left (at its next start), those whose worker did not answer
 * (asked again until it does: OpenWorkRetry.ts says when), and any of a service before new work on
 * it starts (so no change runs on top of one whose outcome is not known).
 */
import * as Saga from "@mcp/rpc/Saga"
import type * as SagaJournal from "@mcp/rpc/SagaJournal"
import { Errors } from "@mcp/domain"
import { Effect, Either, Metric, Option, Schema } from "effect"
import { FleetCalls } from "../../fleet/FleetCalls.js"
import { MasterDb, type SagaKind } from "../../db/MasterDb.js"
import { ServiceCoordinators } from "../ServiceCoordinators.js"
import { commitUndeploy, rollForward } from "./Commit.js"
import { current, EdgeSetupIntent, edgeStepPrefix, type Emit, viaDb, type WantedEdgeRoute, WorkerDeployIntent, workerDidNotAnswer, WorkerUndeployIntent } from "./Model.js"
import { retryWorkerRollback } from "./NodeChanges.js"
import { decodeIntent, deploySteps, undeploySteps } from "./Steps.js"
import { recoverStopStart } from "./StopStartSaga.js"

/** Compensations of a recovered saga are reported in the master's log (no client is waiting). */
export const logEmit = (service: string): Emit => (e) =>
  e._tag === "DeployStep" ? Effect.logInfo(`recovering ${service}: [${e.node}] ${e.step}: ${e.status}${e.detail === undefined ? "" : ` (${e.detail})`}`) : Effect.void

/**
 * A deploy cut short before its commit is undone from the journal. When its worker cannot be
 * put back: one that deployed (its step done) rolls forward, as a live deploy does; one that does
 * not answer, or never answered its deploy, stays open until it can be.
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
      return yield* Effect.fail(`could not be rolled back (${failures.join("; ")}); retried later`)
    }
    const wanted: Array<WantedEdgeRoute> = []
    for (const [step, entry] of progress) {
      if (!step.startsWith(edgeStepPrefix)) continue
      const intent = yield* Schema.decodeUnknown(EdgeSetupIntent)(entry.intent)
      wanted.push({ request: intent.request, edge: intent.edge })
    }
    const { definition, service, worker } = onWorker.value
    const rollback = yield* retryWorkerRollback(saga.id, service, worker, emit)
    if (rollback._tag === "Undone") return "rolled back on every node"
    if (rollback._tag === "NotYet") return yield* Effect.fail(`stays open: ${worker.name} cannot roll it back now (${rollback.reason})`)
    // A worker deploy that never answered may not have happened: kept on the worker only when it did.
    if (progress.get(steps.worker.name)?.done !== true) return yield* Effect.fail(`stays open: ${worker.name} cannot roll it back now (${rollback.reason}), and may not run it`)
    yield* rollForward(saga.id, service, worker, definition, wanted, `a deploy left open could not be rolled back (${rollback.reason}); kept on ${worker.name}`, emit)
    return `kept on ${worker.name}: the worker could not be rolled back`
  })

/**
 * An undeploy whose worker was asked is finished (the agent finishes its own undeploy); one cut
 * short before that puts its edge routes back. A worker that cannot finish it now keeps it open:
 * it may have undeployed already.
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
      // Whatever it says now, the first request may have undeployed it: nothing is put back.
      return yield* Effect.fail(`stays open: ${worker.name} cannot finish it now (${gone.left.message})${workerDidNotAnswer(gone.left) ? "" : "; asked again later"}`)
    }
    const failures = yield* viaDb(Saga.compensate(db, saga.id, steps.compensators))
    if (failures.length > 0) return yield* Effect.fail(`could not be undone (${failures.join("; ")}); retried later`)
    return "undone: the service stays deployed"
  })

/** Finishes or undoes one open saga from its journal; fails with why it stays open. */
const resume = (saga: SagaJournal.SagaRow<SagaKind>) =>
  saga.kind === "deploy" ? recoverDeploy(saga) : saga.kind === "undeploy" ? recoverUndeploy(saga) : recoverStopStart(saga)

const stillOpen = Metric.counter("mcp_sagas_left_open", {
  incremental: true,
  description: "Attempts to finish an open cross-node saga (a worker that does not answer, a rollback that failed) that left it open, to be tried again"
})

/** A saga that stays open: what it is and why. */
export interface OpenSaga {
  readonly kind: SagaKind
  readonly reason: string
}

/**
 * Inside `service`'s actor: its open sagas finished or undone, oldest first, each outcome logged
 * and recorded as an event (`why` says how the saga came to be open). Returns those that stay
 * open, each logged and counted; `quiet` records no event for them (the periodic retry would
 * record one per round).
 */
export const settleOpenSagas = (service: string, why: string, options: SettleOptions = {}) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    // Read inside the actor: a saga listed before it ran may have ended since.
    const open = (yield* viaDb(db.sagasIn("running"))).filter((s) => s.service === service)
    const left: Array<OpenSaga> = []
    for (const saga of open) {
      const outcome = yield* Effect.either(resume(saga))
      const message = Either.isRight(outcome)
        ? `the ${saga.kind} ${why}: ${outcome.right}`
        : `the ${saga.kind} ${why} ${typeof outcome.left === "string" ? outcome.left : `cannot be read from the journal: ${outcome.left.message}`}`
      if (Either.isRight(outcome)) yield* Effect.logInfo(`${service}: ${message}`)
      else {
        // Asked again every heartbeat interval for a while: the same answer is not repeated at
        // warning level (each try is still counted).
        const same = options.lastReasons?.get(saga.id) === message
        yield* same ? Effect.logDebug(`${service}: ${message}`) : Effect.logWarning(`${service}: ${message}`)
        yield* Metric.increment(stillOpen)
        left.push({ kind: saga.kind, reason: message })
      }
      if (Either.isRight(outcome)) options.lastReasons?.delete(saga.id)
      else options.lastReasons?.set(saga.id, message)
      if (Either.isRight(outcome) || options.quiet !== true) yield* viaDb(db.addEvent("master", "recover", service, message))
    }
    return left
  })

export interface SettleOptions {
  /** No event for a saga that stays open (a periodic retry would record one per round). */
  readonly quiet?: boolean
  /** The last reason each saga (by id) stayed open: a repeated one is logged at debug level. */
  readonly lastReasons?: Map<string, string>
}

/** The sagas open in the journal (a running deploy's included). */
export const openSagas = Effect.flatMap(MasterDb, (db) => viaDb(db.sagasIn("running")))

/** Each of `services`' open sagas settled, in its service's actor, the services concurrently. */
export const settleServices = (services: ReadonlyArray<string>, why: string, options: SettleOptions) =>
  Effect.gen(function* () {
    const coordinators = yield* ServiceCoordinators
    const context = yield* Effect.context<MasterDb | FleetCalls>()
    yield* Effect.forEach(services, (service) => coordinators.submit(service, Effect.provide(settleOpenSagas(service, why, options), context)), { discard: true, concurrency: "unbounded" })
  })

/** Each service with open sagas, settled in its actor; returns how many sagas were open. */
const settleAll = (why: string, options: SettleOptions) =>
  Effect.gen(function* () {
    const open = yield* openSagas
    yield* settleServices([...new Set(open.map((s) => s.service))], why, options)
    return open.length
  })

/**
 * At start: finishes or undoes every saga a previous run of the master left open, each in its
 * service's actor (so no new deploy of the service runs before). A saga that cannot be closed
 * now stays open, logged and recorded as an event, and is retried by `retryOpen`.
 */
export const recover = settleAll("cut short by a master restart", {})

/** Sagas still open (their worker did not answer) asked again; OpenWorkRetry says when. */
export const retryOpen = settleAll("left open", { quiet: true })

/**
 * Before new work on `service`, in its actor: its open sagas settled first. One that stays open
 * refuses the new work: it would run on top of a change whose outcome is not known yet.
 */
export const settleBefore = (service: string, operation: string) =>
  Effect.gen(function* () {
    const left = yield* settleOpenSagas(service, "left open")
    if (left.length === 0) return
    return yield* new Errors.PeerFailed({
      peer: "master",
      operation: `${operation} ${service}`,
      reason: `an earlier change of ${service} is not finished: ${left.map((l) => l.reason).join("; ")}. Nothing was changed; retry once it is (mcp events ${service})`,
      retryable: true
    })
  })
