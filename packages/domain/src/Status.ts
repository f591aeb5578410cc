/**
 * What is running: the rows `mcp ps` and `mcp status` show, per component and per service,
 * and the summaries agents send with each heartbeat.
 */
import { Schema } from "effect"
import { NodeName } from "./Names.js"

export const ComponentState = Schema.Literal("running", "stopped", "missing", "starting", "unhealthy", "unknown")
export type ComponentState = typeof ComponentState.Type

export const RouteBinding = Schema.Struct({
  route: Schema.optional(Schema.String),
  hostname: Schema.String,
  listener: Schema.Int,
  mode: Schema.Literal("l4", "l7"),
  hostPort: Schema.Int
})
export type RouteBinding = typeof RouteBinding.Type

export const ComponentStatus = Schema.Struct({
  name: Schema.String,
  image: Schema.String,
  version: Schema.String,
  state: ComponentState,
  containerId: Schema.optional(Schema.String),
  routes: Schema.Array(RouteBinding),
  restarts: Schema.Int,
  startedAt: Schema.optional(Schema.String)
})
export type ComponentStatus = typeof ComponentStatus.Type

export const ServiceStatus = Schema.Struct({
  service: Schema.String,
  node: NodeName,
  active: Schema.Boolean,
  components: Schema.Array(ComponentStatus),
  /** Drift or flap findings from the agent's monitor, in plain words. */
  warnings: Schema.Array(Schema.String),
  /** The certificates of the service's routes on its node and when each expires (older agents do not send them). */
  certificates: Schema.optionalWith(Schema.Array(Schema.Struct({ hostname: Schema.String, notAfter: Schema.String })), { exact: true })
})
export type ServiceStatus = typeof ServiceStatus.Type

/** A node the fleet view could not reach; shown instead of failing the whole command. */
export const UnreachableNode = Schema.Struct({ node: Schema.String, reason: Schema.String })

export const FleetStatus = Schema.Struct({
  services: Schema.Array(ServiceStatus),
  unreachable: Schema.Array(UnreachableNode)
})
export type FleetStatus = typeof FleetStatus.Type

/** One line per service in a heartbeat. */
export const ServiceSummary = Schema.Struct({
  service: Schema.String,
  running: Schema.Int,
  expected: Schema.Int
})
export type ServiceSummary = typeof ServiceSummary.Type
