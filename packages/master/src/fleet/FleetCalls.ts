/**
 * The calls the master's cross-node work makes on agents, as a port: the real layer goes
 * through AgentClients (each node's addresses in order); tests of the cross-node saga put an
 * in-memory fleet with injected faults behind the same interface.
 */
import type { Deploy, Names, Node, Routes, Status } from "@mcp/domain"
import { Errors } from "@mcp/domain"
import * as Daemon from "@mcp/rpc/Daemon"
import type * as Principal from "@mcp/rpc/Principal"
import { Context, Effect, Layer, Stream } from "effect"
import { AgentClients } from "./AgentClients.js"

type Role = Principal.Role

/** Failures of the master's own call to an agent, reported as that agent failing. */
type AgentCallError = Errors.Unauthorized | Errors.Forbidden | Errors.VersionSkew | Errors.UnknownFields | Errors.TooBusy | { readonly _tag: "RpcClientError"; readonly message: string }
const AGENT_CALL_TAGS = new Set(["Unauthorized", "Forbidden", "VersionSkew", "UnknownFields", "TooBusy", "RpcClientError"])

/** Maps the call's own failures (auth, skew, transport) to PeerFailed naming the node; the agent's typed errors pass. */
export const asPeerFailure = (node: string, operation: string) => <E extends { readonly _tag: string }>(e: E): Exclude<E, AgentCallError> | Errors.PeerFailed =>
  AGENT_CALL_TAGS.has(e._tag)
    ? new Errors.PeerFailed({ peer: `agent on ${node}`, operation, reason: (e as unknown as { message: string }).message, retryable: e._tag === "RpcClientError" || e._tag === "TooBusy" })
    : (e as Exclude<E, AgentCallError>)

export interface EdgeRouteRequest {
  readonly hostname: string
  readonly service: string
  readonly workerNode: string
  readonly backendHostname: string
  readonly backendPort: number
}

export type LifecycleCallError = Errors.ServiceNotFound | Errors.DeployFailed | Errors.PeerFailed | Errors.NodeUnreachable

export type DeployCallError = Errors.InvalidDefinition | Errors.PolicyViolation | Errors.DeployFailed | Errors.PeerFailed | Errors.PlacementFailed | Errors.NodeUnreachable

export interface FleetCalls {
  /** `onBehalfOf`: the role of the operator whose deploy this is, for the agent's policy check. */
  readonly deploy: (worker: Node.NodeInfo, definition: unknown, dryRun: boolean, onBehalfOf?: Role) => Stream.Stream<Deploy.DeployEvent, DeployCallError>
  readonly undeploy: (worker: Node.NodeInfo, service: string) => Effect.Effect<void, Errors.ServiceNotFound | Errors.DeployFailed | Errors.PeerFailed | Errors.NodeUnreachable>
  /** The worker's own stop and start (journaled and rolled forward on the agent). */
  readonly stop: (worker: Node.NodeInfo, service: string) => Effect.Effect<Status.ServiceStatus, LifecycleCallError>
  readonly start: (worker: Node.NodeInfo, service: string) => Effect.Effect<Status.ServiceStatus, LifecycleCallError>
  /** The IP the worker's proxy is reached at: what edge routes forward to. */
  readonly proxyAddress: (worker: Node.NodeInfo) => Effect.Effect<string, Errors.PeerFailed | Errors.NodeUnreachable>
  readonly setupEdgeRoute: (edge: Node.NodeInfo, request: EdgeRouteRequest) => Effect.Effect<Routes.EdgeRoute, Errors.PeerFailed | Errors.InvalidRequest | Errors.NodeUnreachable>
  readonly removeEdgeRoute: (edge: Node.NodeInfo, hostname: string) => Effect.Effect<void, Errors.PeerFailed | Errors.NodeUnreachable>
  readonly listEdgeRoutes: (edge: Node.NodeInfo) => Effect.Effect<ReadonlyArray<Routes.EdgeRoute>, Errors.PeerFailed | Errors.NodeUnreachable>
}

export const FleetCalls = Context.GenericTag<FleetCalls>("@mcp/master/FleetCalls")

export const layerAgents = Layer.effect(
  FleetCalls,
  Effect.map(AgentClients, (agents): FleetCalls => ({
    deploy: (worker, definition, dryRun, onBehalfOf) =>
      Stream.unwrap(
        Effect.map(
          Effect.mapError(agents.call(worker.name, worker.addresses, (a) => Effect.as(a.Health(), a)), asPeerFailure(worker.name, "answer a health check")),
          (a) => Stream.mapError(a.Deploy({ definition, dryRun, ...(onBehalfOf === undefined ? {} : { onBehalfOf }) }), (e) =>
            // A stream that broke off mid-deploy: the agent may have finished it (NodeUnreachable
            // is what the master's sagas take as "did not answer").
            e._tag === "RpcClientError"
              ? new Errors.NodeUnreachable({ node: worker.name, addresses: [...worker.addresses], reason: `the deploy stream broke off: ${e.message}` })
              : asPeerFailure(worker.name, `deploy on ${worker.name}`)(e))
        )
      ),
    undeploy: (worker, service) =>
      Effect.mapError(agents.call(worker.name, worker.addresses, (a) => a.Undeploy({ service: service as Names.ServiceName })), asPeerFailure(worker.name, `undeploy ${service}`)),
    stop: (worker, service) =>
      Effect.mapError(agents.call(worker.name, worker.addresses, (a) => a.Stop({ service: service as Names.ServiceName })), asPeerFailure(worker.name, `stop ${service}`)),
    start: (worker, service) =>
      Effect.mapError(agents.call(worker.name, worker.addresses, (a) => a.Start({ service: service as Names.ServiceName })), asPeerFailure(worker.name, `start ${service}`)),
    proxyAddress: (worker) =>
      agents.call(worker.name, worker.addresses, (a) => a.NodeInfo()).pipe(
        Effect.mapError(asPeerFailure(worker.name, "report its node address")),
        // An agent too old to report its node_address is reached where its RPC listens.
        Effect.map((report) => report.info.nodeAddress ?? Daemon.splitHostPort(worker.addresses[0]!)[0])
      ),
    setupEdgeRoute: (edge, request) =>
      Effect.mapError(agents.call(edge.name, edge.addresses, (a) =>
        // The names come from decoded definitions and node rows; the agent decodes them again.
        a.SetupEdgeRoute({ ...request, service: request.service as Names.ServiceName, workerNode: request.workerNode as Names.NodeName })), asPeerFailure(edge.name, `set up edge route ${request.hostname}`)),
    removeEdgeRoute: (edge, hostname) =>
      Effect.mapError(agents.call(edge.name, edge.addresses, (a) => a.RemoveEdgeRoute({ hostname })), asPeerFailure(edge.name, `remove edge route ${hostname}`)),
    listEdgeRoutes: (edge) =>
      Effect.mapError(agents.call(edge.name, edge.addresses, (a) => a.ListEdgeRoutes()), asPeerFailure(edge.name, "list edge routes"))
  }))
)
