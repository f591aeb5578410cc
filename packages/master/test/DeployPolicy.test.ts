/**
 * The master checks every deploy and sync against [policy] with the caller's role before anything
 * is stored, placed or sent: a user's hostile definition is a PolicyViolation and nothing is
 * written; an admin's passes the policy (and goes on to placement).
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors, Policy } from "@mcp/domain"
import { Principal } from "@mcp/rpc"
import { Effect, Layer, Option, Stream } from "effect"
import { handlers } from "../src/daemon/handlers/ServiceOperations.js"
import { MasterDb } from "../src/db/MasterDb.js"
import { AgentClients } from "../src/fleet/AgentClients.js"
import { NodeSupervisors } from "../src/nodes/NodeSupervisors.js"
import { CrossNodeSaga } from "../src/services/CrossNodeSaga.js"
import { ServiceCoordinators } from "../src/services/ServiceCoordinators.js"

const unused = <A>(what: string) => new Proxy({}, { get: () => { throw new Error(`not used by this test: ${what}`) } }) as A

/** A database that records what is written and knows no nodes (so a deploy stops at placement). */
const makeDb = () => {
  const stored: Array<string> = []
  const db = {
    definition: () => Effect.succeed(Option.none()),
    storeDefinition: (name: string) => Effect.sync(() => { stored.push(name) }),
    withTransaction: <A, E, R>(e: Effect.Effect<A, E, R>) => e,
    placement: () => Effect.succeed(Option.none()),
    nodes: Effect.succeed([])
  }
  return { stored, layer: Layer.succeed(MasterDb, db as unknown as MasterDb) }
}

const deps = (db: Layer.Layer<MasterDb>) => Layer.mergeAll(
  ServiceCoordinators.Default,
  db,
  Layer.succeed(AgentClients, unused<AgentClients>("AgentClients")),
  Layer.succeed(NodeSupervisors, unused<NodeSupervisors>("NodeSupervisors")),
  Layer.succeed(CrossNodeSaga, unused<CrossNodeSaga["Type"]>("CrossNodeSaga"))
)

const as = (role: Principal.Role) => Effect.provideService(Principal.CurrentPrincipal, new Principal.Principal({ name: `${role}-token`, kind: "human", role }))

const hostile = {
  name: "app",
  tier: "core",
  components: [{ name: "web", image: "registry.example/app:v1.0.0", volumes: ["/etc:/host-etc", "/srv/app:/data"], network: "host", user: "0:0" }]
}
const settings = { internalZone: "internal.test", policy: Policy.defaults }

describe("master: the deploy policy is checked with the caller's role before anything happens", () => {
  it.effect("a user's hostile deploy is refused naming each field and rule; no actor runs, nothing is stored", () => {
    const db = makeDb()
    return Effect.gen(function* () {
      const h = yield* handlers(settings)
      const coordinators = yield* ServiceCoordinators
      const error = yield* Stream.runDrain(h.Deploy({ definition: hostile, dryRun: false })).pipe(as("user"), Effect.flip)
      expect(error).toBeInstanceOf(Errors.PolicyViolation)
      const v = (error as Errors.PolicyViolation).violations
      expect(v.map((x) => [x.path, x.rule])).toEqual([
        ["tier", "core_tier"],
        ["components[0].volumes[0]", "forbidden_paths"],
        ["components[0].network", "host_network"],
        ["components[0].user", "root_user"]
      ])
      expect(error.message).toContain(`deploy of "app" refused by the deploy policy`)
      expect(yield* coordinators.stats).toEqual([])
      expect(db.stored).toEqual([])
    }).pipe(Effect.provide(deps(db.layer)))
  })

  it.effect("a user's sync of one hostile definition among good ones stores none of them", () => {
    const db = makeDb()
    const good = { name: "ok", components: [{ name: "web", image: "registry.example/ok:v1.0.0", volumes: ["/srv/ok/data:/data"] }] }
    return Effect.gen(function* () {
      const h = yield* handlers(settings)
      const error = yield* h.Sync({ definitions: [good, { ...hostile, tier: "worker", components: [{ ...hostile.components[0]!, volumes: ["/srv/app:/d"], network: "bridge", user: "1000" }] }, { ...hostile, name: "bad" }] }).pipe(as("user"), Effect.flip)
      expect(error).toBeInstanceOf(Errors.PolicyViolation)
      expect((error as Errors.PolicyViolation).service).toBe("bad")
      expect(db.stored).toEqual([])
      // The same sync without the hostile one goes through.
      expect(yield* h.Sync({ definitions: [good] }).pipe(as("user"))).toEqual({ stored: ["ok"], unchanged: [] })
    }).pipe(Effect.provide(deps(db.layer)))
  })

  it.effect("an admin may (by default): the deploy gets past the policy to placement, the sync stores it", () => {
    const db = makeDb()
    const allowed = { ...hostile, components: [{ ...hostile.components[0]!, volumes: ["/opt/app:/data:rshared"] }] }
    return Effect.gen(function* () {
      const h = yield* handlers(settings)
      const error = yield* Stream.runDrain(h.Deploy({ definition: allowed, dryRun: true })).pipe(as("admin"), Effect.flip)
      expect(error).toBeInstanceOf(Errors.PlacementFailed)
      expect(yield* h.Sync({ definitions: [allowed] }).pipe(as("admin"))).toEqual({ stored: ["app"], unchanged: [] })
      // Forbidden paths are refused to admins too.
      const forbidden = yield* h.Sync({ definitions: [hostile] }).pipe(as("admin"), Effect.flip)
      expect((forbidden as Errors.PolicyViolation).violations.map((x) => x.rule)).toEqual(["forbidden_paths"])
    }).pipe(Effect.provide(deps(db.layer)))
  })

  it.effect("a handler without a principal treats the caller as a guest (refused)", () => {
    const db = makeDb()
    return Effect.gen(function* () {
      const h = yield* handlers({ internalZone: "internal.test" })
      const error = yield* h.Sync({ definitions: [{ ...hostile, name: "x", components: [{ ...hostile.components[0]!, volumes: [] }] }] }).pipe(Effect.flip)
      expect(error).toBeInstanceOf(Errors.PolicyViolation)
    }).pipe(Effect.provide(deps(db.layer)))
  })
})
