/**
 * The RPC contracts the master serves for agents: Register, Heartbeat and the internal zone's
 * records (ControlRpcs).
 * Re-exported by Contracts; apart from FleetContracts so that operators' clients load none of it.
 */
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import type * as RpcMiddleware from "@effect/rpc/RpcMiddleware"
import * as Errors from "@mcp/domain/Errors"
import * as Names from "@mcp/domain/Names"
import * as Node from "@mcp/domain/Node"
import * as Policy from "@mcp/domain/Policy"
import * as Status from "@mcp/domain/Status"
import { Schema } from "effect"
import { Unaudited } from "./Audit.js"
import { AuthMiddleware } from "./AuthMiddleware.js"
import { payload } from "./FleetContracts.js"
import { Access, NodeOf } from "./Protocol.js"

/**
 * Only the node the payload speaks for, with its own system token (see AuthMiddleware.authorize):
 * `nodeOf` reads that node from the decoded payload.
 */
const ownNode = <P extends Rpc.AnySchema>(nodeOf: (payload: Schema.Schema.Type<P>) => string) => <
  Tag extends string,
  S extends Schema.Schema.Any,
  E extends Schema.Schema.All,
  M extends RpcMiddleware.TagClassAny
>(rpc: Rpc.Rpc<Tag, P, S, E, M>) => rpc.annotate(Access, "node").annotate(NodeOf, (payload) => nodeOf(payload as Schema.Schema.Type<P>))

/**
 * The master's answer to Register: the heartbeat cadence (the interval this node is given, and
 * how long a silence the master waits before probing it), and the fleet's rules the agent
 * enforces too (the deploy policy, the public domains). Both optional, so an agent still
 * registers with a master that predates them; it then keeps the strict default policy.
 */
export const RegisterAck = Schema.Struct({
  heartbeatIntervalMs: Schema.Int,
  deadlineMs: Schema.Int,
  policy: Schema.optionalWith(Policy.DeployPolicy, { exact: true }),
  allowedDomains: Schema.optionalWith(Schema.Array(Schema.String), { exact: true })
})

const RegisterPayload = payload({ info: Node.NodeInfo, resources: Node.Resources })
const HeartbeatPayload = payload({ node: Names.NodeName, resources: Node.Resources, services: Schema.Array(Status.ServiceSummary) })

const ZonePutPayload = payload({ node: Names.NodeName, name: Schema.String, address: Schema.String })
const ZoneRemovePayload = payload({ node: Names.NodeName, name: Schema.String })
const ZoneRecordsPayload = payload({ node: Names.NodeName })

/**
 * Served by the master for agents. Each call is a node speaking for itself, so only that node's
 * own system token may make it (`ownNode`), never another node's nor an operator's.
 */
export class ControlRpcs extends RpcGroup.make(
  ownNode<typeof RegisterPayload>((p) => p.info.name)(
    Rpc.make("Register", { payload: RegisterPayload, success: RegisterAck, error: Errors.InvalidRequest })
  ),
  ownNode<typeof HeartbeatPayload>((p) => p.node)(Rpc.make("Heartbeat", {
    payload: HeartbeatPayload,
    /**
     * `known: false` means the master has forgotten this node: register again. The interval is
     * when the master expects the next heartbeat (it grows with the fleet, HeartbeatCadence);
     * absent from a master that predates it, when the agent keeps the one it registered with.
     */
    success: Schema.Struct({ known: Schema.Boolean, heartbeatIntervalMs: Schema.optionalWith(Schema.Int, { exact: true }) })
  })).annotate(Unaudited, true), // every few seconds from every node: it would bury the audit trail
  /**
   * The internal zone the master answers for ([dns] kind = "master" on the agent): a node sets
   * the A record of a name it serves, and removes only what it set. A name outside the zone or an
   * address that is not IPv4 is refused before anything is stored.
   */
  ownNode<typeof ZonePutPayload>((p) => p.node)(Rpc.make("ZonePut", {
    payload: ZonePutPayload,
    success: Schema.Struct({ changed: Schema.Boolean, serial: Schema.Int }),
    error: Errors.InvalidRequest
  })),
  ownNode<typeof ZoneRemovePayload>((p) => p.node)(Rpc.make("ZoneRemove", {
    payload: ZoneRemovePayload,
    success: Schema.Struct({ removed: Schema.Boolean, serial: Schema.Int }),
    error: Errors.InvalidRequest
  })),
  /** The records the calling node set (what its agent compares with what it serves). */
  ownNode<typeof ZoneRecordsPayload>((p) => p.node)(Rpc.make("ZoneRecords", {
    payload: ZoneRecordsPayload,
    success: Schema.Array(Schema.Struct({ name: Schema.String, address: Schema.String }))
  })).annotate(Unaudited, true) // a read
).middleware(AuthMiddleware) {}
