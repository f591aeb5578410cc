/**
 * Events: what happened on the fleet, in order, for `mcp events` and the status views. Health
 * transitions, deploy steps, drift and flap findings all land here, and so does the audit trail:
 * one `audit` event per mutating RPC, saying who called it, on what, and how it ended.
 */
import { Schema } from "effect"

export const EventKind = Schema.Literal("health", "deploy", "drift", "flap", "boot", "recover", "route", "cert", "dns", "node", "audit")
export type EventKind = typeof EventKind.Type

/**
 * Who caused an event: the caller's token name, its kind (human or system) and role. Kept as
 * plain strings here because the principal's own schema lives in the rpc package, which depends
 * on this one; `(unauthenticated)` with no kind or role stands for a caller without a valid token.
 */
export const Who = Schema.Struct({
  name: Schema.String,
  kind: Schema.optional(Schema.String),
  role: Schema.optional(Schema.String)
})
export type Who = typeof Who.Type

/** `name (kind/role)`, or the bare name when kind and role are unknown. */
export const formatWho = (who: Who): string =>
  who.kind === undefined && who.role === undefined ? who.name : `${who.name} (${who.kind ?? "?"}/${who.role ?? "?"})`

export const FleetEvent = Schema.Struct({
  at: Schema.String,
  node: Schema.String,
  service: Schema.optional(Schema.String),
  kind: EventKind,
  message: Schema.String,
  /** Set on the events an RPC caller caused (the audit trail); absent on the daemons' own. */
  who: Schema.optional(Who)
})
export type FleetEvent = typeof FleetEvent.Type
