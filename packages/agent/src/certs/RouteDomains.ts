/**
 * The public domains route certificates may name besides the internal zone, readable by the local
 * CA issuer at every issue and replaceable at run time. It starts from `[certs] allowed_domains`;
 * the master's `edge.allowed_domains`, pushed to agents, is meant to replace it through `set`.
 */
import { Context, Effect, Layer, Ref } from "effect"

export interface RouteDomains {
  readonly get: Effect.Effect<ReadonlyArray<string>>
  /** Replaces the list; names are compared in lower case, without a trailing dot. */
  readonly set: (domains: ReadonlyArray<string>) => Effect.Effect<void>
}

export const RouteDomains = Context.GenericTag<RouteDomains>("@mcp/agent/RouteDomains")

export const normalize = (domains: ReadonlyArray<string>): ReadonlyArray<string> =>
  [...new Set(domains.map((d) => d.trim().toLowerCase().replace(/\.$/, "")).filter((d) => d !== ""))]

export const make = (initial: ReadonlyArray<string>): Effect.Effect<RouteDomains> =>
  Effect.map(Ref.make(normalize(initial)), (ref) => ({
    get: Ref.get(ref),
    set: (domains) => Ref.set(ref, normalize(domains))
  }))

export const layer = (initial: ReadonlyArray<string>) => Layer.effect(RouteDomains, make(initial))
