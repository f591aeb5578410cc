/**
 * Results of the operational commands: boot status, recover reports, node views and the
 * supervision tree.
 */
import { Schema } from "effect"
import { HealthStatus } from "./Health.js"
import { NodeInfo, Resources } from "./Node.js"

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
