/**
 * Nodes of the fleet as the master knows them: identity, role, where to reach the agent, and
 * the resources it last reported.
 */
import { Schema } from "effect"
import { NodeName } from "./Names.js"

export const NodeRole = Schema.Literal("master", "worker", "edge")
export type NodeRole = typeof NodeRole.Type

/** `host:port` of an agent's RPC listener. */
export const NodeAddress = Schema.String.pipe(
  Schema.pattern(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):[0-9]{1,5}$/, {
    message: (issue) => `address ${JSON.stringify(issue.actual)} must be "host:port", e.g. "10.0.0.5:9444"`
  })
)

export const Resources = Schema.Struct({
  cpuCores: Schema.Number,
  /** Load average over one minute, for a sense of how busy the node is. */
  load1: Schema.Number,
  memoryTotalBytes: Schema.Number,
  memoryFreeBytes: Schema.Number,
  diskTotalBytes: Schema.Number,
  diskFreeBytes: Schema.Number,
  containers: Schema.Int
})
export type Resources = typeof Resources.Type

export const NodeInfo = Schema.Struct({
  name: NodeName,
  role: NodeRole,
  /** In order of preference: the master tries them in this order when probing. */
  addresses: Schema.Array(NodeAddress).pipe(Schema.minItems(1)),
  arch: Schema.String,
  version: Schema.String,
  /**
   * The IP other nodes reach this node's proxy at (the agent's `node_address`): edge routes
   * forward there. Absent for nodes the master only knows from its own config so far.
   */
  nodeAddress: Schema.optionalWith(Schema.String, { exact: true })
})
export type NodeInfo = typeof NodeInfo.Type
