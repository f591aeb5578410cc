/**
 * The RPC contracts operators and the master call: the master's (MasterRpcs) and each agent's
 * (AgentRpcs). Declared once here and implemented by the agent and the master with
 * `Group.toLayer`; every payload, result and error is a Schema. The agents' calls to the master
 * are in ControlContracts; Contracts re-exports both. Apart so that a client (the CLI) loads
 * the schemas of the groups it calls and no more.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import type * as RpcMiddleware from "@effect/rpc/RpcMiddleware"
import * as Deploy from "@mcp/domain/Deploy"
import * as Errors from "@mcp/domain/Errors"
import * as Events from "@mcp/domain/Events"
import * as InternalZone from "@mcp/domain/InternalZone"
import * as Names from "@mcp/domain/Names"
import * as Node from "@mcp/domain/Node"
import * as Operations from "@mcp/domain/Operations"
import * as Routes from "@mcp/domain/Routes"
import * as Status from "@mcp/domain/Status"
import { Schema } from "effect"
import { AuthMiddleware } from "./AuthMiddleware.js"
import * as QuickDecode from "./QuickDecode.js"
import { Role } from "./Principal.js"
import { Access, type AccessLevel } from "./Protocol.js"

/** Marks the least role an RPC needs (unmarked ones need admin). */
const needs = (level: AccessLevel) => <
  Tag extends string,
  P extends Rpc.AnySchema,
  S extends Schema.Schema.Any,
  E extends Schema.Schema.All,
  M extends RpcMiddleware.TagClassAny
>(rpc: Rpc.Rpc<Tag, P, S, E, M>) => rpc.annotate(Access, level)

/** Guests may call it (on the master; the agent refuses guests outright). */
const readOnly = needs("read")
/** Routine work on services: users may call it. */
const operate = needs("operate")

/**
 * Every payload is a Struct whose decode keeps fields it does not know (`preserve`), so that the
 * AuthMiddleware can refuse them by name with InvalidRequest (a decode failure in @effect/rpc's
 * server would be an untyped defect, and the default would drop them silently). See
 * `AuthMiddleware.excessFields`.
 */
export const payload = <Fields extends Schema.Struct.Fields>(fields: Fields) =>
  Schema.Struct(fields).annotations({ parseOptions: { onExcessProperty: "preserve" } })

const ServiceRef = payload({ service: Names.ServiceName })
const LifecycleError = Schema.Union(Errors.ServiceNotFound, Errors.DeployFailed, Errors.PeerFailed)
const DeployError = Schema.Union(Errors.InvalidDefinition, Errors.PolicyViolation, Errors.DeployFailed, Errors.PeerFailed, Errors.PlacementFailed, Errors.NodeUnreachable)

/**
 * The definition travels as written (the TOML table as JSON) and the receiver decodes it with
 * its own internal zone, so a bad one comes back as InvalidDefinition naming each field.
 */
export const DefinitionPayload = Schema.Unknown

/**
 * Definitions one Sync may carry: a workspace holds tens of services, and each definition is
 * decoded, compared and stored in one transaction, so a thousand bounds the work of one call.
 */
export const MAX_DEFINITIONS_PER_SYNC = 1000

const SyncDefinitions = Schema.Array(DefinitionPayload).pipe(
  Schema.maxItems(MAX_DEFINITIONS_PER_SYNC, {
    message: (issue) =>
      `Sync carries ${Array.isArray(issue.actual) ? issue.actual.length : "more"} definitions; one Sync may carry at most ${MAX_DEFINITIONS_PER_SYNC}: sync the workspace in parts`
  })
)

const deployPayload = payload({
  definition: DefinitionPayload,
  dryRun: Schema.optionalWith(Schema.Boolean, { default: () => false })
})

/**
 * The agent's Deploy also says whose deploy the master forwards (`onBehalfOf`, the operator's
 * role): the agent applies its policy with the lesser of that and its caller's role, so a rule
 * only the node can check (the bind address, say) still holds for a user deploying via the master.
 * Claiming a role only ever lowers the caller's own.
 */
const agentDeployPayload = payload({
  definition: DefinitionPayload,
  dryRun: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  onBehalfOf: Schema.optional(Role)
})

const LogsPayload = payload({
  service: Names.ServiceName,
  component: Schema.optional(Names.ComponentName),
  follow: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  tail: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 100_000)), { default: () => 100 })
})

export const LogLine = Schema.Struct({
  component: Schema.String,
  stream: Schema.Literal("stdout", "stderr"),
  line: Schema.String
})

const EventsPayload = payload({
  follow: Schema.optionalWith(Schema.Boolean, { default: () => false }),
  limit: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 10_000)), { default: () => 100 }),
  /** Only events of this kind (`audit`: who called what). */
  kind: Schema.optionalWith(Events.EventKind, { exact: true }),
  /** Only events caused by this caller (its token's name). */
  who: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(256)), { exact: true }),
  /** Only events about this service. */
  service: Schema.optionalWith(Schema.String.pipe(Schema.maxLength(256)), { exact: true })
})

export const HealthReport = Schema.Struct({ node: Schema.String, at: Schema.String, protocol: Schema.Int })

/**
 * `startedAt` (ISO 8601, the agent's clock): when the agent started, for its uptime.
 * `supervised`: what the agent supervises besides its RPC server (e.g. the proxy it manages), each
 * with its state, restarts and last error; `mcp tree` shows them under the node. Both optional,
 * so the answer of an agent that predates them still decodes.
 */
export const NodeInfoReport = Schema.Struct({
  info: Node.NodeInfo,
  resources: Node.Resources,
  protocol: Schema.Int,
  startedAt: Schema.optionalWith(Schema.String, { exact: true }),
  supervised: Schema.optionalWith(Schema.Array(Operations.SupervisionNode), { exact: true })
})

// ---------------------------------------------------------------------------------------------

/** Served by each agent; called by the master, or by the CLI with --direct. */
export class AgentRpcs extends RpcGroup.make(
  operate(Rpc.make("Deploy", { payload: agentDeployPayload, success: Deploy.DeployEvent, error: DeployError, stream: true })),
  operate(Rpc.make("Stop", { payload: ServiceRef, success: Status.ServiceStatus, error: LifecycleError })),
  operate(Rpc.make("Start", { payload: ServiceRef, success: Status.ServiceStatus, error: LifecycleError })),
  operate(Rpc.make("Restart", { payload: ServiceRef, success: Status.ServiceStatus, error: LifecycleError })),
  operate(Rpc.make("Undeploy", { payload: ServiceRef, error: LifecycleError })),
  readOnly(Rpc.make("Ps", { success: QuickDecode.quick(Schema.Array(Status.ServiceStatus)) })),
  readOnly(Rpc.make("Status", { payload: ServiceRef, success: Status.ServiceStatus, error: Errors.ServiceNotFound })),
  operate(Rpc.make("Logs", { payload: LogsPayload, success: LogLine, error: Schema.Union(Errors.ServiceNotFound, Errors.PeerFailed), stream: true })),
  // Unmarked, so admin's: the master's system token sets up and removes edge routes, and manual
  // proxy routes and recover --force are privileged.
  Rpc.make("SetupEdgeRoute", {
    payload: payload({
      hostname: Schema.String,
      service: Names.ServiceName,
      workerNode: Names.NodeName,
      backendHostname: Schema.String,
      backendPort: Schema.Int.pipe(Schema.between(1, 65535))
    }),
    success: Routes.EdgeRoute,
    error: Schema.Union(Errors.PeerFailed, Errors.InvalidRequest)
  }),
  Rpc.make("RemoveEdgeRoute", { payload: payload({ hostname: Schema.String }), error: Errors.PeerFailed }),
  readOnly(Rpc.make("ListEdgeRoutes", { success: Schema.Array(Routes.EdgeRoute), error: Errors.PeerFailed })),
  Rpc.make("ProxyRoutesAdd", { payload: payload({ route: Routes.ProxyRoute }), error: Schema.Union(Errors.PeerFailed, Errors.InvalidRequest) }),
  Rpc.make("ProxyRoutesRemove", { payload: payload({ listener: Schema.Int, hostname: Schema.String }), error: Errors.PeerFailed }),
  readOnly(Rpc.make("ProxyRoutesList", { success: Schema.Array(Routes.ProxyRoute), error: Errors.PeerFailed })),
  Rpc.make("Recover", {
    payload: payload({ force: Schema.optionalWith(Schema.Boolean, { default: () => false }) }),
    success: Operations.RecoverReport,
    error: Errors.PeerFailed
  }),
  readOnly(Rpc.make("BootStatus", { success: Operations.BootStatus })),
  readOnly(Rpc.make("Health", { success: HealthReport })),
  readOnly(Rpc.make("NodeInfo", { success: NodeInfoReport })),
  readOnly(Rpc.make("Events", { payload: EventsPayload, success: Events.FleetEvent, stream: true }))
).middleware(AuthMiddleware) {}

/** Served by the master for the CLI. */
export class MasterRpcs extends RpcGroup.make(
  operate(Rpc.make("Deploy", { payload: deployPayload, success: Deploy.DeployEvent, error: DeployError, stream: true })),
  operate(Rpc.make("Undeploy", { payload: ServiceRef, error: Schema.Union(LifecycleError, Errors.NodeUnreachable) })),
  operate(Rpc.make("Stop", { payload: ServiceRef, success: Status.ServiceStatus, error: Schema.Union(LifecycleError, Errors.NodeUnreachable) })),
  operate(Rpc.make("Start", { payload: ServiceRef, success: Status.ServiceStatus, error: Schema.Union(LifecycleError, Errors.NodeUnreachable) })),
  operate(Rpc.make("Restart", { payload: ServiceRef, success: Status.ServiceStatus, error: Schema.Union(LifecycleError, Errors.NodeUnreachable) })),
  readOnly(Rpc.make("Ps", { success: QuickDecode.quick(Status.FleetStatus) })),
  readOnly(Rpc.make("Status", { payload: ServiceRef, success: Status.ServiceStatus, error: Schema.Union(Errors.ServiceNotFound, Errors.NodeUnreachable, Errors.PeerFailed) })),
  operate(Rpc.make("Sync", {
    payload: payload({ definitions: SyncDefinitions }),
    success: Schema.Struct({ stored: Schema.Array(Schema.String), unchanged: Schema.Array(Schema.String) }),
    error: Schema.Union(Errors.InvalidDefinition, Errors.PolicyViolation)
  })),
  readOnly(Rpc.make("NodesList", { success: QuickDecode.quick(Schema.Array(Operations.NodeView)) })),
  // Read like NodesList: the master's and each agent's version, protocol, arch and uptime, asked
  // of the agents now (one that does not answer is reported unreachable, not waited for).
  readOnly(Rpc.make("AgentStatus", { success: QuickDecode.quick(Operations.FleetVersions) })),
  // Unmarked, so admin's: the fleet's shape.
  Rpc.make("NodesAdd", { payload: payload({ info: Node.NodeInfo }), success: Operations.NodeView, error: Errors.InvalidRequest }),
  Rpc.make("NodesRemove", { payload: payload({ node: Names.NodeName }), error: Schema.Union(Errors.NodeNotFound, Errors.InvalidRequest) }),
  readOnly(Rpc.make("EdgeRoutesList", { success: Schema.Array(Routes.EdgeRoute) })),
  readOnly(Rpc.make("DnsCheck", { success: Schema.Array(Routes.DnsCheckResult) })),
  readOnly(Rpc.make("ZoneList", { success: InternalZone.ZoneView })),
  operate(Rpc.make("Logs", { payload: LogsPayload, success: LogLine, error: Schema.Union(Errors.ServiceNotFound, Errors.PeerFailed, Errors.NodeUnreachable), stream: true })),
  readOnly(Rpc.make("Events", { payload: EventsPayload, success: Events.FleetEvent, stream: true })),
  Rpc.make("AgentRecover", {
    payload: payload({ node: Schema.optional(Names.NodeName), force: Schema.optionalWith(Schema.Boolean, { default: () => false }) }),
    success: Schema.Array(Operations.RecoverReport),
    error: Schema.Union(Errors.NodeNotFound, Errors.NodeUnreachable, Errors.PeerFailed)
  }),
  readOnly(Rpc.make("Tree", { success: Operations.SupervisionNode }))
).middleware(AuthMiddleware) {}
