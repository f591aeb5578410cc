/**
 * Deploy step "routes": the proxy switches the service's hostnames to the new version (put
 * replaces a route in place, so requests keep flowing) and drops routes the new version no
 * longer has.
 *
 * The compensation may run at a later agent start, after the service was redeployed, stopped
 * or undeployed, so it does not restore the journaled "previous" routes: it converges on what
 * the registry says now (the committed routes, and only while the service is active) and takes
 * away what this saga added, never a route the registry now gives another service.
 */
import { Effect, Schema } from "effect"
import { Registry } from "../../registry/Registry.js"
import { isActive, recordedRoutes, RouteSnapshot, switchRoutes } from "../Converge.js"
import { Saga } from "@mcp/rpc"

export const journaled = Saga.journaled({
  name: "routes",
  Intent: Schema.Struct({ service: Schema.String, previous: Schema.Array(RouteSnapshot), next: Schema.Array(RouteSnapshot) }),
  Result: Schema.Null,
  compensate: ({ intent: { service, previous, next } }) =>
    Effect.gen(function* () {
      const registry = yield* Registry
      const wanted = (yield* isActive(service)) ? yield* recordedRoutes(service) : []
      const others = new Set((yield* registry.routes).filter((r) => r.service !== service).map((r) => `${r.listener} ${r.hostname}`))
      yield* switchRoutes(service, [...previous, ...next].filter((r) => !others.has(`${r.listener} ${r.hostname}`)), wanted)
    })
})

export const step = (service: string, previous: ReadonlyArray<RouteSnapshot>, next: ReadonlyArray<RouteSnapshot>) =>
  Saga.step(journaled, { service, previous, next }, switchRoutes(service, previous, next), () => null)
