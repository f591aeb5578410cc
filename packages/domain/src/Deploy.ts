/**
 * The deploy conversation: the plan a dry run returns and the progress events a deploy streams
 * to the operator while its saga runs.
 */
import { Schema } from "effect"
import { ServiceStatus } from "./Status.js"

export const PlannedRoute = Schema.Struct({
  component: Schema.String,
  route: Schema.optional(Schema.String),
  hostname: Schema.String,
  listener: Schema.Int,
  mode: Schema.Literal("l4", "l7"),
  public: Schema.Boolean
})

export const DeployPlan = Schema.Struct({
  service: Schema.String,
  node: Schema.String,
  placementReason: Schema.String,
  /** Ports to allocate: one per route plus the explicit mappings. */
  portsToAllocate: Schema.Int,
  images: Schema.Array(Schema.String),
  routes: Schema.Array(PlannedRoute),
  dnsRecords: Schema.Array(Schema.String),
  /** Public hostnames and the edge node that will serve each. */
  edgeRoutes: Schema.Array(Schema.Struct({ hostname: Schema.String, edgeNode: Schema.String })),
  /** What changes compared with what runs now. */
  changes: Schema.Array(Schema.String)
})
export type DeployPlan = typeof DeployPlan.Type

export const StepStatus = Schema.Literal("started", "done", "failed", "compensating", "compensated", "skipped")

export class DeployStep extends Schema.TaggedClass<DeployStep>()("DeployStep", {
  node: Schema.String,
  step: Schema.String,
  status: StepStatus,
  detail: Schema.String
}) {}

export class DeployPlanned extends Schema.TaggedClass<DeployPlanned>()("DeployPlanned", { plan: DeployPlan }) {}

export class DeployDone extends Schema.TaggedClass<DeployDone>()("DeployDone", { status: ServiceStatus }) {}

/** A deploy streams steps, and ends with the plan (dry run) or the resulting status. */
export const DeployEvent = Schema.Union(DeployStep, DeployPlanned, DeployDone)
export type DeployEvent = typeof DeployEvent.Type
