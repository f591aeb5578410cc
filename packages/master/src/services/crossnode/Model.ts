/**
 * What the master's cross-node sagas share: their settings, requests and errors, what they
 * journal (each step's intent, enough to undo or finish it from the journal alone), and the
 * reads of the master's database they all make. The database is fatal: a failing master
 * database is a defect of the request, logged and counted (Failures.fatal).
 */
import { type Deploy, Errors, Node, Routes, type ServiceDefinition } from "@mcp/domain"
import * as Failures from "@mcp/rpc/Failures"
import type * as Principal from "@mcp/rpc/Principal"
import { Context, Data, Effect, Option, Schema } from "effect"
import type { SqlError } from "@effect/sql/SqlError"
import type { EdgeRouteRequest as EdgeRouteRequestType } from "../../fleet/FleetCalls.js"
import { MasterDb } from "../../db/MasterDb.js"

export interface EdgeSettings {
  readonly internalZone: string
  readonly allowedDomains: ReadonlyArray<string>
  /** Used when a public hostname's DNS points at no known edge node. */
  readonly defaultEdge: string | undefined
}
export const EdgeSettings = Context.GenericTag<EdgeSettings>("@mcp/master/EdgeSettings")

export type DeployError = Errors.InvalidDefinition | Errors.PolicyViolation | Errors.DeployFailed | Errors.PeerFailed | Errors.PlacementFailed | Errors.NodeUnreachable
export type UndeployError = Errors.ServiceNotFound | Errors.DeployFailed | Errors.PeerFailed | Errors.NodeUnreachable
/** What stop and start fail with: the CLI's lifecycle errors. */
export type LifecycleError = Errors.ServiceNotFound | Errors.DeployFailed | Errors.PeerFailed | Errors.NodeUnreachable

export interface DeployRequest {
  readonly definition: ServiceDefinition.ServiceDefinition
  /** The definition as the operator wrote it: what the worker decodes and the master stores. */
  readonly raw: unknown
  readonly worker: Node.NodeInfo
  readonly placementReason: string
  readonly dryRun: boolean
  /** The operator's role: the worker checks its own policy rules for it (its bind address...). */
  readonly onBehalfOf?: Principal.Role
}

export type Emit = (event: Deploy.DeployEvent) => Effect.Effect<void>

// What the sagas journal: enough to undo or finish each step from the journal alone.

export const EdgeRouteRequest = Schema.Struct({
  hostname: Schema.String,
  service: Schema.String,
  workerNode: Schema.String,
  backendHostname: Schema.String,
  backendPort: Schema.Number
})
export const EdgeRouteRowSchema = Schema.Struct({ route: Routes.EdgeRoute, state: Schema.Literal("active", "removing") })

/** The worker's part of a deploy: the definition it was given, to roll forward if it cannot be put back. */
export const WorkerDeployIntent = Schema.Struct({ service: Schema.String, worker: Node.NodeInfo, definition: Schema.Unknown })
/** One public hostname's route on its edge, and the row it replaces (put back on compensation). */
export const EdgeSetupIntent = Schema.Struct({ request: EdgeRouteRequest, edge: Node.NodeInfo, previous: Schema.OptionFromNullOr(EdgeRouteRowSchema) })
/** One edge route an undeploy removes, put back if the undeploy cannot finish. */
export const EdgeRemovalIntent = Schema.Struct({ row: EdgeRouteRowSchema, edge: Node.NodeInfo })
export const WorkerUndeployIntent = Schema.Struct({ service: Schema.String, worker: Node.NodeInfo })
/** The worker's stop: the agent finishes a stop it was asked for, so a recovery asks again. */
export const WorkerStopIntent = Schema.Struct({ service: Schema.String, worker: Node.NodeInfo })
/** The worker's start, with the edge routes the service then publishes (chosen before it). */
export const WorkerStartIntent = Schema.Struct({
  service: Schema.String,
  worker: Node.NodeInfo,
  routes: Schema.Array(Schema.Struct({ request: EdgeRouteRequest, edge: Node.NodeInfo }))
})

/** An edge step's failure, with the route it was for. */
export class EdgeStepFailed extends Data.TaggedError("EdgeStepFailed")<{
  readonly hostname: string
  readonly edgeNode: string
  readonly cause: Errors.PeerFailed | Errors.InvalidRequest | Errors.NodeUnreachable
}> {}

export const edgeStepPrefix = "edge "
export const edgeStepName = (hostname: string) => `${edgeStepPrefix}${hostname}`

/** An edge route the saga wants, with the node that will serve it. */
export interface WantedEdgeRoute {
  readonly request: EdgeRouteRequestType
  readonly edge: Node.NodeInfo
}

export const routeOf = (wanted: WantedEdgeRoute, fields?: Pick<Routes.EdgeRoute, "certSerial" | "certNotAfter">): Routes.EdgeRoute => ({
  hostname: wanted.request.hostname as Routes.EdgeRoute["hostname"],
  edgeNode: wanted.edge.name,
  workerNode: wanted.request.workerNode,
  backendHostname: wanted.request.backendHostname,
  backendPort: wanted.request.backendPort,
  service: wanted.request.service,
  certSerial: fields?.certSerial ?? "",
  certNotAfter: fields?.certNotAfter ?? ""
})

export const requestOf = (route: Routes.EdgeRoute): EdgeRouteRequestType => ({
  hostname: route.hostname,
  service: route.service,
  workerNode: route.workerNode,
  backendHostname: route.backendHostname,
  backendPort: route.backendPort
})

export const viaDb = Failures.fatal("the master database")

/** The saga runner fails with the journal's SQL errors too: those are the database's, fatal like any other. */
export const journalFatal = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.catchIf(effect, (e): e is Extract<E, { readonly _tag: "SqlError" }> => (e as { readonly _tag?: string })._tag === "SqlError", (e) => viaDb(Effect.fail(e)))

/**
 * A failed saga's error as its caller's: a journal that could not be written halted the saga
 * (after undoing what it shows) with the database's SQL error, fatal like any other.
 */
export const stepError = <E>(error: E | SqlError): Effect.Effect<never, Exclude<E, SqlError>> =>
  (error as { readonly _tag?: string })._tag === "SqlError" ? viaDb(Effect.fail(error as SqlError)) : Effect.fail(error as Exclude<E, SqlError>)

/**
 * A worker that did not answer may still have done what it was asked: the request can have
 * reached its agent, which finishes a stop, start or undeploy it was given even across its own
 * restart. The master cannot tell, so such a failure leaves the saga open (Saga.inDoubtWhen) and
 * the worker is asked again until it answers (Recovery.settleOpenSagas).
 */
export const workerDidNotAnswer = (e: { readonly _tag: string }) => e._tag === "NodeUnreachable"

/**
 * The same for a stop, start or undeploy that failed in a way worth retrying: the agent records
 * the operation before it acts (its registry, on a disk that then filled up; its engine, killed
 * midway) and finishes it later, so it may be done. A refusal not worth retrying is definite.
 */
export const workerMayFinish = (e: { readonly _tag: string }) =>
  workerDidNotAnswer(e) || ("retryable" in e && (e as { readonly retryable: unknown }).retryable === true)

/** What the caller of a saga left open, its worker's outcome not known, is told. */
export const inDoubt = (kind: "stop" | "start" | "undeploy", service: string, worker: string, cause: { readonly _tag: string; readonly message: string }) =>
  new Errors.PeerFailed({
    peer: `agent on ${worker}`,
    operation: `${kind} ${service}`,
    reason: `${worker} ${workerDidNotAnswer(cause) ? "did not answer" : "did not finish it"} (${cause.message}), so whether it ${kind === "stop" ? "stopped" : kind === "start" ? "started" : "undeployed"} ${service} is not known yet; ` +
      `the master asks it again until it answers, then finishes the ${kind} (its edge routes follow). A new change of ${service} asks it first; mcp events ${service} tells when it is done`,
    retryable: true
  })

export const nodeInfo = (name: string) => Effect.flatMap(MasterDb, (db) => Effect.map(viaDb(db.node(name)), Option.map((row) => row.info)))

/** A node as the master knows it now (its addresses may have changed since it was journaled). */
export const current = (node: Node.NodeInfo) => Effect.map(nodeInfo(node.name), Option.getOrElse(() => node))

export const edgeNodes = Effect.flatMap(MasterDb, (db) => Effect.map(viaDb(db.nodesOfRole("edge")), (rows) => rows.map((r) => r.info)))
