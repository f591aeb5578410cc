/**
 * Events: what happened on the fleet, in order, for `mcp events` and the status views. Health
 * transitions, deploy steps, drift and flap findings all land here.
 */
import { Schema } from "effect"

export const EventKind = Schema.Literal("health", "deploy", "drift", "flap", "boot", "recover", "route", "cert", "dns", "node")
export type EventKind = typeof EventKind.Type

export const FleetEvent = Schema.Struct({
  at: Schema.String,
  node: Schema.String,
  service: Schema.optional(Schema.String),
  kind: EventKind,
  message: Schema.String
})
export type FleetEvent = typeof FleetEvent.Type
