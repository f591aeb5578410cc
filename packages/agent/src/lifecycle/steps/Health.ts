/**
 * Deploy step "health": every component with a health check passes it (HealthGate) before any
 * route or DNS name points at the new version. Nothing to undo.
 */
import type { ServiceDefinition } from "@mcp/domain"
import { Effect } from "effect"
import type { PlannedRoute } from "../ContainerPlan.js"
import * as HealthGate from "../HealthGate.js"
import { Saga } from "@mcp/rpc"

/** `host`: where the node reaches published ports; a check targets its route's host port. */
export const step = (
  def: ServiceDefinition.ServiceDefinition,
  routes: ReadonlyArray<PlannedRoute>,
  containerIds: ReadonlyMap<string, string>,
  host: string
) =>
  Saga.plain("health", Effect.forEach(def.components, (c) => {
    if (c.health === undefined) return Effect.void
    const own = routes.filter((r) => r.component === c.name)
    const target = c.health.route !== undefined ? own.find((r) => r.route === c.health!.route) : own[0]
    return HealthGate.gate({
      component: c.name,
      containerId: containerIds.get(c.name)!,
      check: c.health,
      hostPort: c.health.port ?? target?.hostPort,
      host
    })
  }, { discard: true }))
