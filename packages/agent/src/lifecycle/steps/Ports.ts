/**
 * Deploy step "ports": a host port for every route (kept from the running version when it is
 * replaced in place) and the explicit `ports =` mappings, all reserved in the registry under
 * the saga's id. The reservations go with the saga (released when it ends either way), so the
 * compensation has nothing of its own to do.
 */
import { Errors, type ServiceDefinition } from "@mcp/domain"
import { Effect, Schema } from "effect"
import { Registry } from "../../registry/Registry.js"
import { explicitPorts, portRequests } from "../ContainerPlan.js"
import { PortAllocator } from "../PortAllocator.js"
import { Saga } from "@mcp/rpc"

export const journaled = Saga.journaled({
  name: "ports",
  Intent: Schema.Struct({ sagaId: Schema.String }),
  Result: Schema.Struct({ routePorts: Schema.Array(Schema.Number), explicit: Schema.Array(Schema.Number) }),
  compensate: () => Effect.void
})

export type Reserved = typeof journaled.Result.Type

/** `keep`: route ports (by portKey) an in-place redeploy takes over from the running version. */
export const step = (def: ServiceDefinition.ServiceDefinition, sagaId: string, keep: ReadonlyMap<string, number>) =>
  Saga.step(journaled, { sagaId }, Effect.gen(function* () {
    const allocator = yield* PortAllocator
    const registry = yield* Registry
    const routePorts = yield* allocator.allocate(sagaId, def.name, portRequests(def), keep)
    const all = yield* registry.ports
    const explicit: Array<number> = []
    for (const p of explicitPorts(def)) {
      const holder = all.find((row) => row.port === p.hostPort)
      if (holder !== undefined && holder.service !== def.name) {
        return yield* Effect.fail(new Errors.DeployFailed({
          service: def.name, step: "ports", retryable: false,
          reason: `host port ${p.hostPort} (from ports = "${p.mapping}") is held by service ${holder.service}`
        }))
      }
      if (holder === undefined) yield* registry.reservePort({ port: p.hostPort, service: def.name, component: p.component, route: `explicit:${p.mapping}`, sagaId })
      explicit.push(p.hostPort)
    }
    return { routePorts, explicit } satisfies Reserved
  }))
