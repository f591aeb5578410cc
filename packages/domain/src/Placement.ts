/**
 * Where a service runs: a pure function of the definition and a snapshot of the fleet.
 * Containers never go to edge nodes (they only proxy) nor to nodes the master cannot reach.
 */
import { Either } from "effect"
import type { HealthStatus } from "./Health.js"
import type { NodeRole, Resources } from "./Node.js"
import type { Tier } from "./ServiceDefinition.js"

export interface PlacementCandidate {
  readonly name: string
  readonly role: NodeRole
  readonly health: HealthStatus
  readonly resources: Resources | undefined
}

export interface PlacementRequest {
  readonly service: string
  readonly node: string | undefined
  readonly tier: Tier
}

export interface Placed {
  readonly node: string
  readonly reason: string
}

/** A node can take containers when it is not an edge and the master has heard from it. */
const refusal = (c: PlacementCandidate): string | undefined =>
  c.role === "edge"
    ? `node "${c.name}" is an edge node; edge nodes only proxy public routes and never run containers`
    : c.health === "unhealthy"
    ? `node "${c.name}" is unhealthy (its heartbeats and probes failed); fix it or pick another node`
    : c.health === "unknown"
    ? `node "${c.name}" has not reported to the master yet; start its agent or pick another node`
    : undefined

/** Free memory is what a small fleet runs out of first; containers break ties. */
const freeCapacity = (c: PlacementCandidate): number => c.resources?.memoryFreeBytes ?? 0

export const place = (req: PlacementRequest, fleet: ReadonlyArray<PlacementCandidate>): Either.Either<Placed, string> => {
  if (req.node !== undefined) {
    const pinned = fleet.find((c) => c.name === req.node)
    if (pinned === undefined) {
      return Either.left(`service "${req.service}" is pinned to node "${req.node}", which the master does not know; check node = in the definition or add the node`)
    }
    const why = refusal(pinned)
    return why === undefined ? Either.right({ node: pinned.name, reason: "pinned by the definition's node field" }) : Either.left(why)
  }
  if (req.tier === "core") {
    const masters = fleet.filter((c) => c.role === "master")
    if (masters.length === 0) return Either.left(`service "${req.service}" is tier "core" but no node has the master role`)
    const ready = masters.find((c) => refusal(c) === undefined)
    return ready === undefined
      ? Either.left(refusal(masters[0]!)!)
      : Either.right({ node: ready.name, reason: `tier "core" runs on the master node` })
  }
  const workers = fleet
    .filter((c) => c.role === "worker" && c.health === "healthy")
    .sort(
      (a, b) =>
        freeCapacity(b) - freeCapacity(a) ||
        (a.resources?.containers ?? 0) - (b.resources?.containers ?? 0) ||
        a.name.localeCompare(b.name)
    )
  const best = workers[0]
  if (best === undefined) {
    const all = fleet.filter((c) => c.role === "worker")
    return Either.left(
      all.length === 0
        ? `no worker node is registered for service "${req.service}"; add one with mcp node add, or pin the service with node =`
        : `no healthy worker for service "${req.service}": ${all.map((c) => `${c.name} is ${c.health}`).join(", ")}`
    )
  }
  return Either.right({ node: best.name, reason: `healthy worker with the most free memory` })
}
