import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import type { PlacementCandidate } from "../src/Placement.js"
import { place } from "../src/Placement.js"

const resources = (memoryFreeBytes: number, containers = 0) => ({
  cpuCores: 2, load1: 0, memoryTotalBytes: 8e9, memoryFreeBytes, diskTotalBytes: 1e11, diskFreeBytes: 5e10, containers
})

const candidate: fc.Arbitrary<PlacementCandidate> = fc.record({
  name: fc.constantFrom("rift", "orion", "svc", "edge1", "hyperborea", "vade"),
  role: fc.constantFrom("master" as const, "worker" as const, "edge" as const),
  health: fc.constantFrom("unknown" as const, "healthy" as const, "suspect" as const, "unhealthy" as const),
  resources: fc.option(fc.nat(16e9).map((m) => resources(m)), { nil: undefined })
})
const fleet = fc.uniqueArray(candidate, { selector: (c) => c.name, maxLength: 6 })
const request = fc.record({
  service: fc.constant("web"),
  node: fc.option(fc.constantFrom("rift", "orion", "svc", "edge1", "nowhere"), { nil: undefined }),
  tier: fc.constantFrom("core" as const, "worker" as const)
})

describe("placement", () => {
  it.prop("never picks an edge, unhealthy or silent node, and always honours a pin", [request, fleet], ([req, nodes]) => {
    const result = place(req, nodes)
    if (Either.isLeft(result)) {
      expect(result.left.length).toBeGreaterThan(0)
      return
    }
    const chosen = nodes.find((n) => n.name === result.right.node)!
    expect(chosen.role).not.toBe("edge")
    expect(["healthy", "suspect"]).toContain(chosen.health)
    if (req.node !== undefined) expect(chosen.name).toBe(req.node)
    else if (req.tier === "core") expect(chosen.role).toBe("master")
    else expect(chosen.health).toBe("healthy")
  }, { fastCheck: { numRuns: 1000 } })

  it.prop("a pin to an eligible node always succeeds", [request, fleet], ([req, nodes]) => {
    const pinned = nodes.find((n) => n.name === req.node)
    fc.pre(pinned !== undefined && pinned.role !== "edge" && (pinned.health === "healthy" || pinned.health === "suspect"))
    expect(place(req, nodes)).toEqual(Either.right({ node: req.node, reason: "pinned by the definition's node field" }))
  })

  it("puts a worker service on the healthy worker with most free memory", () => {
    const nodes: Array<PlacementCandidate> = [
      { name: "rift", role: "master", health: "healthy", resources: resources(15e9) },
      { name: "orion", role: "worker", health: "healthy", resources: resources(2e9) },
      { name: "svc", role: "worker", health: "healthy", resources: resources(6e9) },
      { name: "big", role: "worker", health: "unhealthy", resources: resources(12e9) },
      { name: "edge1", role: "edge", health: "healthy", resources: resources(14e9) }
    ]
    expect(place({ service: "web", node: undefined, tier: "worker" }, nodes)).toEqual(
      Either.right({ node: "svc", reason: "healthy worker with the most free memory" })
    )
    expect(Either.getOrThrow(place({ service: "dns", node: undefined, tier: "core" }, nodes)).node).toBe("rift")
  })

  it("explains why nothing fits", () => {
    const down: Array<PlacementCandidate> = [{ name: "orion", role: "worker", health: "unhealthy", resources: undefined }]
    expect(place({ service: "web", node: undefined, tier: "worker" }, down)).toEqual(
      Either.left(`no healthy worker for service "web": orion is unhealthy`)
    )
    expect(Either.flip(place({ service: "web", node: "edge1", tier: "worker" }, [
      { name: "edge1", role: "edge", health: "healthy", resources: undefined }
    ]))).toEqual(Either.right(`node "edge1" is an edge node; edge nodes only proxy public routes and never run containers`))
    expect(Either.isLeft(place({ service: "web", node: "ghost", tier: "worker" }, down))).toBe(true)
  })
})

describe("placement reasons and refusals", () => {
  const worker = (name: string, health: PlacementCandidate["health"], memoryFree = 4e9, containers = 0): PlacementCandidate =>
    ({ name, role: "worker", health, resources: resources(memoryFree, containers) })
  const master: PlacementCandidate = { name: "rift", role: "master", health: "healthy", resources: resources(15e9) }
  const edge: PlacementCandidate = { name: "edge1", role: "edge", health: "healthy", resources: resources(14e9) }

  it("a core service goes to the master node, and says why", () => {
    expect(place({ service: "dns", node: undefined, tier: "core" }, [worker("orion", "healthy"), master])).toEqual(
      Either.right({ node: "rift", reason: `tier "core" runs on the master node` })
    )
  })

  it("a worker service only ever goes to a worker, however much room the master or an edge has", () => {
    expect(place({ service: "web", node: undefined, tier: "worker" }, [master, edge, worker("orion", "healthy", 1e9)])).toEqual(
      Either.right({ node: "orion", reason: "healthy worker with the most free memory" })
    )
  })

  it("with no worker at all, says so and how to fix it", () => {
    expect(place({ service: "web", node: undefined, tier: "worker" }, [master, edge])).toEqual(Either.left(
      `no worker node is registered for service "web"; add one with mcp node add, or pin the service with node =`
    ))
    expect(place({ service: "web", node: undefined, tier: "worker" }, [])).toEqual(Either.left(
      `no worker node is registered for service "web"; add one with mcp node add, or pin the service with node =`
    ))
  })

  it("with no healthy worker, lists each worker's health (and only workers)", () => {
    expect(place({ service: "web", node: undefined, tier: "worker" }, [master, worker("orion", "suspect"), edge, worker("svc", "unknown")])).toEqual(
      Either.left(`no healthy worker for service "web": orion is suspect, svc is unknown`)
    )
  })

  it("equal free memory: the worker running fewer containers wins, whatever the order of the fleet", () => {
    const busy = worker("alpha", "healthy", 4e9, 5)
    const idle = worker("zulu", "healthy", 4e9, 1)
    for (const fleet of [[busy, idle], [idle, busy], [busy, idle, worker("mike", "healthy", 4e9, 3)]]) {
      expect(Either.getOrThrow(place({ service: "web", node: undefined, tier: "worker" }, fleet)).node).toBe("zulu")
    }
  })
})
