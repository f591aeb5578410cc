/**
 * The journaled steps of the cross-node sagas (Saga.journaled: the intent each journals and how
 * it is undone). A deploy: `worker`, then `edge <hostname>` per public route. An undeploy:
 * `edge <hostname>` per route, then `worker`. Step names carry the hostname, so compensators
 * are found by a lookup rather than a fixed record.
 */
import * as Saga from "@mcp/rpc/Saga"
import { Effect, Either, Option, Schema } from "effect"
import { FleetCalls } from "../../fleet/FleetCalls.js"
import type { MasterDb } from "../../db/MasterDb.js"
import { current, EdgeRemovalIntent, EdgeSetupIntent, edgeStepName, edgeStepPrefix, type Emit, requestOf, WorkerDeployIntent, WorkerUndeployIntent } from "./Model.js"
import { restoreEdgeRoute, restoreWorker } from "./NodeChanges.js"

/** The deploy saga's journaled steps; compensations report through `emit`. */
export const deploySteps = (emit: Emit) => {
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
  const compensators: Saga.Compensators<MasterDb | FleetCalls> = (step) =>
    step === worker.name ? Saga.compensator(worker) : step.startsWith(edgeStepPrefix) ? Saga.compensator(edge(step.slice(edgeStepPrefix.length))) : undefined
  return { worker, edge, compensators }
}

/** The undeploy saga's journaled steps. */
export const undeploySteps = (service: string) => {
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
        const fleet = yield* FleetCalls
        // Routes already marked for removal stay the reconciler's; an active one is put back.
        if (intent.row.state !== "active") return
        const edge = yield* current(intent.edge)
        const put = yield* Effect.either(fleet.setupEdgeRoute(edge, requestOf(intent.row.route)))
        if (Either.isLeft(put)) yield* Effect.logWarning(`undeploy ${service}: cannot put edge route ${intent.row.route.hostname} back now (${put.left.message}); the reconciler retries`)
      })
  })
  const compensators: Saga.Compensators<MasterDb | FleetCalls> = (step) =>
    step === worker.name ? Saga.compensator(worker) : step.startsWith(edgeStepPrefix) ? Saga.compensator(edge(step.slice(edgeStepPrefix.length))) : undefined
  return { worker, edge, compensators }
}

export const decodeIntent = <A, I>(schema: Schema.Schema<A, I>, step: Saga.StepProgress | undefined) =>
  step === undefined ? Effect.succeed(Option.none<A>()) : Effect.asSome(Schema.decodeUnknown(schema)(step.intent))
