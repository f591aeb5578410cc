/**
 * The master refuses, before anything is stored, placed or sent: a deploy or sync whose route
 * hostnames another service owns (a deployed service's stored definition, an edge route another
 * service publishes, an earlier definition of the same sync), a non-public hostname outside the
 * internal zone and the allowed domains, and a placement on an edge node. The allowed paths go on.
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

const IMAGE = "registry.example/app:v1.0.0"
const service = (name: string, routes: ReadonlyArray<Record<string, unknown>>, extra: Record<string, unknown> = {}) => ({
  name,
  ...extra,
  components: [{ name: "web", image: IMAGE, routes }]
})

interface Fleet {
  /** Stored definitions, as written. */
  readonly definitions?: Record<string, unknown>
  /** Where services are placed (deployed). */
  readonly placements?: Record<string, string>
  /** Edge routes: public hostname -> service. */
  readonly edgeRoutes?: Record<string, string>
  readonly nodes?: ReadonlyArray<{ readonly name: string; readonly role: "master" | "worker" | "edge" }>
}

/** Deploys that reached the cross-node saga (which sends to agents); reset by each makeDb. */
const sent: Array<string> = []

/** A database over `fleet` that records what is written; the saga must not be reached. */
const makeDb = (fleet: Fleet) => {
  sent.length = 0
  const stored: Array<string> = []
  const definitions = fleet.definitions ?? {}
  const placements = fleet.placements ?? {}
  const db = {
    definition: (s: string) => Effect.succeed(Option.fromNullable(definitions[s])),
    definitions: Effect.succeed(Object.entries(definitions).map(([service, definition]) => ({ service, definition }))),
    storeDefinition: (name: string) => Effect.sync(() => { stored.push(name) }),
    withTransaction: <A, E, R>(e: Effect.Effect<A, E, R>) => e,
    placement: (s: string) => Effect.succeed(Option.fromNullable(placements[s])),
    placements: Effect.succeed(Object.entries(placements).map(([service, node]) => ({ service, node }))),
    edgeRoutes: Effect.succeed(Object.entries(fleet.edgeRoutes ?? {}).map(([hostname, service]) => ({
      route: { hostname, service, edgeNode: "e1", workerNode: "w1", backendHostname: "10.0.0.1", backendPort: 8443, certSerial: "", certNotAfter: "" },
      state: "active"
    }))),
    nodes: Effect.succeed((fleet.nodes ?? []).map((n) => ({
      info: { name: n.name, role: n.role, addresses: ["127.0.0.1:1"], arch: "x64", version: "0" },
      resources: undefined,
      health: "healthy",
      lastHeartbeat: undefined,
      source: "config"
    })))
  }
  return { stored, layer: Layer.succeed(MasterDb, db as unknown as MasterDb) }
}

const deps = (db: Layer.Layer<MasterDb>) => Layer.mergeAll(
  ServiceCoordinators.Default,
  db,
  Layer.succeed(AgentClients, unused<AgentClients>("AgentClients")),
  Layer.succeed(NodeSupervisors, { health: () => Effect.succeed(Option.none()) } as unknown as NodeSupervisors),
  Layer.succeed(CrossNodeSaga, { deploy: (request: { readonly definition: { readonly name: string } }) => Effect.sync(() => { sent.push(request.definition.name) }) } as unknown as CrossNodeSaga["Type"])
)


const asUser = Effect.provideService(Principal.CurrentPrincipal, new Principal.Principal({ name: "ursula", kind: "human", role: "user" }))
const settings = { internalZone: "svc.mcp.internal", policy: Policy.defaults, allowedDomains: ["example.com"] }

const deployError = (definition: unknown, s: Parameters<typeof handlers>[0] = settings) =>
  Effect.flatMap(handlers(s), (h) => Stream.runDrain(h.Deploy({ definition, dryRun: false })).pipe(asUser, Effect.flip))
const sync = (definitions: ReadonlyArray<unknown>) => Effect.flatMap(handlers(settings), (h) => h.Sync({ definitions }).pipe(asUser, Effect.either))

/** alpha is deployed on w1, routing shop.example.com (non-public) and its default name. */
const alphaDeployed: Fleet = {
  definitions: { alpha: service("alpha", [{ name: "main", port: 8443, mode: "l7" }, { name: "shop", port: 9443, mode: "l7", hostname: "shop.example.com" }]) },
  placements: { alpha: "w1" }
}

describe("master: one service may not take another's route hostname", () => {
  it.effect("a deploy naming a deployed service's hostname is refused naming it and its owner; nothing is stored or sent", () => {
    const db = makeDb(alphaDeployed)
    return Effect.gen(function* () {
      const error = yield* deployError(service("beta", [{ port: 8443, mode: "l7", hostname: "shop.example.com" }]))
      expect(error).toBeInstanceOf(Errors.InvalidDefinition)
      const invalid = error as Errors.InvalidDefinition
      expect(invalid.service).toBe("beta")
      expect(invalid.problems).toEqual([{
        path: "components[0].routes[0].hostname",
        message: `hostname "shop.example.com" is routed by service alpha (deployed on w1); one service may not take another's hostname: use another name, or undeploy alpha (or drop the route from its definition and redeploy it) first`
      }])
      // alpha's default name is alpha's too.
      const dflt = (yield* deployError(service("beta", [{ port: 8443, mode: "l7", hostname: "alpha.svc.mcp.internal" }]))) as Errors.InvalidDefinition
      expect(dflt.problems.map((p) => p.message)).toEqual([expect.stringContaining(`hostname "alpha.svc.mcp.internal" is routed by service alpha`)])
      expect(db.stored).toEqual([])
      expect(sent).toEqual([])
    }).pipe(Effect.provide(deps(db.layer)))
  })

  it.effect("a sync naming it is refused too, and stores none of its definitions", () => {
    const db = makeDb(alphaDeployed)
    return Effect.gen(function* () {
      const result = yield* sync([service("ok", [{ port: 8443, mode: "l7" }]), service("beta", [{ port: 8443, mode: "l7", hostname: "shop.example.com" }])])
      expect(result._tag).toBe("Left")
      const error = (result as { left: Errors.InvalidDefinition }).left
      expect(error).toBeInstanceOf(Errors.InvalidDefinition)
      expect(error.service).toBe("beta")
      expect(error.problems[0]!.message).toContain(`"shop.example.com" is routed by service alpha`)
      expect(db.stored).toEqual([])
      expect(sent).toEqual([])
    }).pipe(Effect.provide(deps(db.layer)))
  })

  it.effect("a public hostname another service publishes on an edge is refused, on deploy and sync", () => {
    const db = makeDb({ edgeRoutes: { "www.example.com": "alpha" }, placements: { alpha: "w1" } })
    const beta = service("beta", [{ port: 8443, mode: "l7", hostname: "www.example.com", public: true }])
    return Effect.gen(function* () {
      const error = (yield* deployError(beta)) as Errors.InvalidDefinition
      expect(error).toBeInstanceOf(Errors.InvalidDefinition)
      expect(error.problems).toEqual([{
        path: "components[0].routes[0].hostname",
        message: `public hostname "www.example.com" is already published by service alpha; undeploy alpha first, or use another name`
      }])
      const synced = yield* sync([beta])
      expect((synced as { left: Errors.InvalidDefinition }).left.problems[0]!.message).toContain("already published by service alpha")
      expect(db.stored).toEqual([])
      expect(sent).toEqual([])
    }).pipe(Effect.provide(deps(db.layer)))
  })

  it.effect("two definitions of one sync claiming the same hostname: the later is refused, nothing is stored", () => {
    const db = makeDb({})
    return Effect.gen(function* () {
      const result = yield* sync([
        service("one", [{ port: 8443, mode: "l7", hostname: "api.example.com" }]),
        service("two", [{ port: 8443, mode: "l7", hostname: "api.example.com" }])
      ])
      const error = (result as { left: Errors.InvalidDefinition }).left
      expect(error.service).toBe("two")
      expect(error.problems[0]!.message).toContain(`hostname "api.example.com" is also claimed by service one in this sync`)
      expect(db.stored).toEqual([])
      expect(sent).toEqual([])
    }).pipe(Effect.provide(deps(db.layer)))
  })

  it.effect("allowed: a service redeploying its own hostnames, and names a stored but undeployed definition routes", () => {
    const db = makeDb({
      ...alphaDeployed,
      nodes: [{ name: "w1", role: "worker" }],
      definitions: { ...alphaDeployed.definitions, gone: service("gone", [{ port: 8443, mode: "l7", hostname: "old.example.com" }]) }
    })
    return Effect.gen(function* () {
      // alpha's own redeploy gets past the check, stays on w1 and reaches the saga.
      yield* Effect.flatMap(handlers(settings), (h) => Stream.runDrain(h.Deploy({ definition: alphaDeployed.definitions!.alpha, dryRun: false })).pipe(asUser))
      expect(sent).toEqual(["alpha"])
      // "gone" was undeployed (no placement): its stored definition claims nothing.
      const synced = yield* sync([service("beta", [{ port: 8443, mode: "l7", hostname: "old.example.com" }])])
      expect(synced._tag).toBe("Right")
      expect((synced as { right: unknown }).right).toEqual({ stored: ["beta"], unchanged: [] })
    }).pipe(Effect.provide(deps(db.layer)))
  })
})

describe("master: non-public hostnames fall under the internal zone or an allowed domain", () => {
  const outside = service("app", [{ port: 8443, mode: "l7", hostname: "app.elsewhere.net" }])

  it.effect("outside both: refused on deploy and sync, naming the fix; nothing stored", () => {
    const db = makeDb({})
    return Effect.gen(function* () {
      const error = (yield* deployError(outside)) as Errors.InvalidDefinition
      expect(error).toBeInstanceOf(Errors.InvalidDefinition)
      expect(error.problems.map((p) => p.path)).toEqual(["components[0].routes[0].hostname"])
      expect(error.problems[0]!.message).toContain(`the allowed domains are "example.com"`)
      expect(error.problems[0]!.message).toContain("[edge] allowed_domains in mcp-master.toml")
      expect((yield* sync([outside]))._tag).toBe("Left")
      // A master without [edge] allowed_domains allows only the internal zone.
      const strict = (yield* deployError(service("app", [{ port: 8443, mode: "l7", hostname: "app.example.com" }]), { internalZone: "svc.mcp.internal" })) as Errors.InvalidDefinition
      expect(strict.problems[0]!.message).toContain("none are allowed")
      expect(db.stored).toEqual([])
      expect(sent).toEqual([])
    }).pipe(Effect.provide(deps(db.layer)))
  })

  it.effect("under an allowed domain or the internal zone: stored", () => {
    const db = makeDb({})
    return Effect.gen(function* () {
      const result = yield* sync([
        service("app", [{ port: 8443, mode: "l7", hostname: "app.example.com" }]),
        service("int", [{ port: 8443, mode: "l7", hostname: "db.svc.mcp.internal" }])
      ])
      expect(result._tag).toBe("Right")
      expect((result as { right: unknown }).right).toEqual({ stored: ["app", "int"], unchanged: [] })
    }).pipe(Effect.provide(deps(db.layer)))
  })
})

describe("master placement never picks an edge node", () => {
  it.effect("with only an edge (and healthy), an unpinned deploy finds no worker; one pinned to the edge is refused naming why", () => {
    const db = makeDb({ nodes: [{ name: "e1", role: "edge" }] })
    return Effect.gen(function* () {
      const unpinned = (yield* deployError(service("app", []))) as Errors.PlacementFailed
      expect(unpinned).toBeInstanceOf(Errors.PlacementFailed)
      expect(unpinned.reason).toContain("no worker node is registered")
      const pinned = (yield* deployError(service("app", [], { node: "e1" }))) as Errors.PlacementFailed
      expect(pinned).toBeInstanceOf(Errors.PlacementFailed)
      expect(pinned.message).toBe(`cannot place service "app": node "e1" is an edge node; edge nodes only proxy public routes and never run containers`)
      expect(db.stored).toEqual([])
      expect(sent).toEqual([])
    }).pipe(Effect.provide(deps(db.layer)))
  })
})
