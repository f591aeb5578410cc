/**
 * Deploy and undeploy of one service across nodes: the worker's deploy, then one edge route per
 * public hostname on an edge node, then the master's record. Stop and start carry the edge
 * routes with them: the worker first, then the record, then the edges (StopStartSaga). Both run as sagas journaled in the
 * master's database, with the runner and journal the agent's deploy uses (@mcp/rpc Saga.ts): a
 * failure at any step undoes the earlier ones on every node, and a master killed mid-way finishes
 * or undoes what it was doing when it starts again (`recover`). A worker that did not answer may
 * have done its part: that saga stays open, its worker is asked again (`retryOpen`, and before
 * any new work on the service) and it is finished then. What cannot be undone right away
 * is left recorded for the edge reconciler (EdgeReconciler.ts), never forgotten. Callers run
 * deploy and undeploy inside the service's actor.
 *
 * The master's edge route rows are the intent the reconciler converges edges to: an `active` row
 * is a route that must exist on its edge, a `removing` row one that must not.
 *
 * This module is the service the daemon and the tests hold; the sagas are in `crossnode/`: the
 * journaled steps (Steps), what they change on nodes (NodeChanges), the commit (Commit), each
 * saga (DeploySaga, UndeploySaga, StopStartSaga) and the start-up recovery (Recovery).
 */
import { Errors, type Node } from "@mcp/domain"
import * as CallMetrics from "@mcp/rpc/CallMetrics"
import { Context, Effect, Layer, Metric, Option } from "effect"
import type * as EdgeResolver from "../edge/EdgeResolver.js"
import type { FleetCalls } from "../fleet/FleetCalls.js"
import { MasterDb } from "../db/MasterDb.js"
import { deploy } from "./crossnode/DeploySaga.js"
import { type DeployRequest, type EdgeSettings as EdgeSettingsTag, type Emit, viaDb } from "./crossnode/Model.js"
import { openSagas, recover, retryOpen, settleBefore, settleServices } from "./crossnode/Recovery.js"
import { start, stop } from "./crossnode/StopStartSaga.js"
import { undeploy } from "./crossnode/UndeploySaga.js"
import type { ServiceCoordinators } from "./ServiceCoordinators.js"

export { type DeployError, type DeployRequest, EdgeSettings, type LifecycleError, type UndeployError } from "./crossnode/Model.js"

/** Whether the service is placed: an open undeploy finished before new work may have removed it. */
const stillPlaced = (service: string) => Effect.flatMap(MasterDb, (db) => Effect.map(viaDb(db.placement(service)), Option.isSome))

/** What the sagas run against. */
type Ports = MasterDb | FleetCalls | EdgeSettingsTag | EdgeResolver.DnsLookup | ServiceCoordinators

/** Deploys, undeploys, stops and starts through the master, by operation, worker node and result. */
export const operations = Metric.counter("mcp_service_operations", {
  incremental: true,
  description: "deploys, undeploys, stops and starts through the master, by operation, node (the worker) and result (ok or the error's tag)"
})

const counted = (operation: string, worker: Node.NodeInfo) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.onExit(effect, (exit) =>
    Metric.increment(Metric.tagged(Metric.tagged(Metric.tagged(operations, "operation", operation), "node", worker.name), "result", CallMetrics.resultOf(exit))))

export const make = Effect.gen(function* () {
  const context = yield* Effect.context<Ports>()
  // Why each saga stayed open at its last retry (by saga id), for retryServices' logging.
  const lastReasons = new Map<string, string>()
  return {
    deploy: (request: DeployRequest, emit: Emit) =>
      Effect.provide(Effect.zipRight(request.dryRun ? Effect.void : settleBefore(request.definition.name, "deploy"), deploy(request, emit)), context).pipe(
        request.dryRun ? (effect) => effect : counted("deploy", request.worker)
      ),
    /** An undeploy that an earlier one, finished first, already did succeeds. */
    undeploy: (service: string, worker: Node.NodeInfo) =>
      Effect.provide(Effect.zipRight(settleBefore(service, "undeploy"), Effect.flatMap(stillPlaced(service), (placed) => (placed ? undeploy(service, worker) : Effect.void))), context).pipe(
        counted("undeploy", worker)
      ),
    /** The worker stops the service, then its public edge routes go. */
    stop: (service: string, worker: Node.NodeInfo) =>
      Effect.provide(Effect.zipRight(settleBefore(service, "stop"), Effect.flatMap(stillPlaced(service), (placed) => (placed ? stop(service, worker) : new Errors.ServiceNotFound({ service })))), context).pipe(
        counted("stop", worker)
      ),
    /** The worker starts the service, then its public edge routes are set up again. */
    start: (service: string, worker: Node.NodeInfo) =>
      Effect.provide(Effect.zipRight(settleBefore(service, "start"), Effect.flatMap(stillPlaced(service), (placed) => (placed ? start(service, worker) : new Errors.ServiceNotFound({ service })))), context).pipe(
        counted("start", worker)
      ),
    /** Finishes or undoes every saga a previous run of the master left open; returns how many there were. */
    recover: Effect.provide(recover, context),
    /** Asks again the workers of sagas left open (they did not answer); returns how many there were. */
    retryOpen: Effect.provide(retryOpen, context),
    /** The sagas open in the journal. */
    openSagas: Effect.provide(openSagas, context),
    /** Asks again about the open sagas of `services`; a reason repeated from the last try is logged at debug level. */
    retryServices: (services: ReadonlyArray<string>) => Effect.provide(settleServices(services, "left open", { quiet: true, lastReasons }), context)
  } as const
})

export class CrossNodeSaga extends Context.Tag("@mcp/master/CrossNodeSaga")<CrossNodeSaga, Effect.Effect.Success<typeof make>>() {}

export const layer = Layer.effect(CrossNodeSaga, make)
