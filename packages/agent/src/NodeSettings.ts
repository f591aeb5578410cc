/**
 * What the agent knows about the node it runs on, from its config: the node's name and address,
 * the internal DNS zone, where container ports are published, how long a container gets to
 * stop and where the agent keeps its data. Read by planning, the saga, boot, the monitor, edge routes and the RPC handlers.
 */
import { Context } from "effect"

export interface NodeSettings {
  /** Seconds a container gets to stop before it is killed. */
  readonly stopTimeoutSeconds: number
  readonly node: string
  /** The address other hosts reach this node at: proxy backends and DNS A records use it. */
  readonly nodeAddress: string
  readonly internalZone: string
  /** Where container ports are published on the host. */
  readonly bindAddress: string
  /** Registry prefix for images derived from a service-level version. */
  readonly imageRegistry: string
  /** The agent's data directory (registry, certificates): named when its disk is full. */
  readonly dataDir: string
}

export const NodeSettings = Context.GenericTag<NodeSettings>("@mcp/agent/NodeSettings")
