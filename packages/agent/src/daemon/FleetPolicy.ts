/**
 * The fleet's rules as the master last pushed them at registration: the deploy policy and the
 * public domains (`[edge] allowed_domains`). Until a master answers (or for an agent run without
 * one), the strict default policy and no public domains: an agent never trusts more than it was told.
 */
import { Policy } from "@mcp/domain"
import { Context, Effect, Layer, Ref } from "effect"

export interface FleetRules {
  readonly policy: Policy.DeployPolicy
  readonly allowedDomains: ReadonlyArray<string>
}

export interface FleetPolicy {
  readonly get: Effect.Effect<FleetRules>
  /** What a master's Register answer carried; a field it left out keeps the current value. */
  readonly update: (pushed: { readonly policy?: Policy.DeployPolicy; readonly allowedDomains?: ReadonlyArray<string> }) => Effect.Effect<void>
}

export const FleetPolicy = Context.GenericTag<FleetPolicy>("@mcp/agent/FleetPolicy")

export const initial: FleetRules = { policy: Policy.defaults, allowedDomains: [] }

export const make = (start: FleetRules = initial): Effect.Effect<FleetPolicy> =>
  Effect.map(Ref.make(start), (ref) => ({
    get: Ref.get(ref),
    update: (pushed) =>
      Ref.update(ref, (current) => ({
        policy: pushed.policy ?? current.policy,
        allowedDomains: pushed.allowedDomains ?? current.allowedDomains
      }))
  }))

export const layer = (start: FleetRules = initial) => Layer.effect(FleetPolicy, make(start))
