/**
 * Results of the operational commands: boot status, recover reports, node views, the fleet's
 * software versions and the supervision tree.
 */
import { Schema } from "effect"
import { HealthStatus } from "./Health.js"
import { NodeName } from "./Names.js"
import { NodeInfo, NodeRole, Resources } from "./Node.js"

export const CheckResult = Schema.Struct({
  service: Schema.String,
  check: Schema.String,
  ok: Schema.Boolean,
  detail: Schema.String,
  at: Schema.optional(Schema.String)
})

export const StageStatus = Schema.Struct({
  name: Schema.String,
  state: Schema.Literal("waiting", "starting", "up", "failed", "retrying"),
  services: Schema.Array(Schema.String),
  checks: Schema.Array(CheckResult),
  startedAt: Schema.optional(Schema.String),
  upAt: Schema.optional(Schema.String),
  attempts: Schema.Int,
  lastError: Schema.optional(Schema.String)
})

export const BootStatus = Schema.Struct({ node: Schema.String, stages: Schema.Array(StageStatus) })
export type BootStatus = typeof BootStatus.Type

export const RecoverAction = Schema.Struct({
  service: Schema.String,
  component: Schema.String,
  action: Schema.Literal("recreated", "kept", "failed"),
  detail: Schema.String
})

export const RecoverReport = Schema.Struct({ node: Schema.String, actions: Schema.Array(RecoverAction) })
export type RecoverReport = typeof RecoverReport.Type

export const NodeView = Schema.Struct({
  info: NodeInfo,
  health: HealthStatus,
  lastHeartbeat: Schema.optional(Schema.String),
  /** The interval the master last gave the node (it grows with the fleet), ms. */
  heartbeatIntervalMs: Schema.optional(Schema.Int),
  /** When the master expects the node's next heartbeat (ISO 8601); a miss is counted after it. */
  heartbeatDeadline: Schema.optional(Schema.String),
  resources: Schema.optional(Resources)
})
export type NodeView = typeof NodeView.Type

export interface SupervisionNode {
  readonly name: string
  readonly state: string
  readonly restarts: number
  readonly lastError?: string
  readonly children: ReadonlyArray<SupervisionNode>
}

export const SupervisionNode: Schema.Schema<SupervisionNode> = Schema.Struct({
  name: Schema.String,
  state: Schema.String,
  restarts: Schema.Int,
  lastError: Schema.optionalWith(Schema.String, { exact: true }),
  children: Schema.Array(Schema.suspend((): Schema.Schema<SupervisionNode> => SupervisionNode))
})

/**
 * One node's software as `mcp agent status` shows it: what its agent answered just now (NodeInfo),
 * or, when it did not answer, what the node last registered with and why it is unreachable.
 * `protocol`, `startedAt` and `uptimeSeconds` are absent when unknown (an unreachable node, or an
 * agent that predates reporting its start).
 */
export const AgentVersion = Schema.Struct({
  node: NodeName,
  role: NodeRole,
  reachable: Schema.Boolean,
  version: Schema.String,
  arch: Schema.String,
  protocol: Schema.optionalWith(Schema.Int, { exact: true }),
  /** When the agent started, by its own clock (ISO 8601). */
  startedAt: Schema.optionalWith(Schema.String, { exact: true }),
  /** Seconds since `startedAt`, by the master's clock when it answered. */
  uptimeSeconds: Schema.optionalWith(Schema.Number, { exact: true }),
  /** Why the node did not answer (absent when it did). */
  unreachable: Schema.optionalWith(Schema.String, { exact: true })
})
export type AgentVersion = typeof AgentVersion.Type

/** The master's own software, the reference its agents are compared with. */
export const MasterVersion = Schema.Struct({
  version: Schema.String,
  protocol: Schema.Int,
  startedAt: Schema.String,
  uptimeSeconds: Schema.Number
})
export type MasterVersion = typeof MasterVersion.Type

/** The answer to the master's AgentStatus: itself, then every known node. */
export const FleetVersions = Schema.Struct({
  at: Schema.String,
  master: MasterVersion,
  nodes: Schema.Array(AgentVersion)
})
export type FleetVersions = typeof FleetVersions.Type
