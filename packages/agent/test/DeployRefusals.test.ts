/**
 * What the agent's Deploy refuses before any actor, container or registry row exists, whoever
 * calls: an edge node runs no containers (and does not start or restart any); a route hostname
 * another service on this node owns is not taken; a non-public hostname must fall under the
 * internal zone or a domain the master pushed. Each allowed path still deploys.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors, Names } from "@mcp/domain"
import { Principal } from "@mcp/rpc"
import { Effect, Layer, Schema, Stream } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BootSequencer } from "../src/boot/BootSequencer.js"
import * as AgentHandlers from "../src/daemon/AgentHandlers.js"
import * as FleetPolicy from "../src/daemon/FleetPolicy.js"
import { EdgeRoutes } from "../src/edge/EdgeRoutes.js"
import { MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import { ServiceActors } from "../src/lifecycle/ServiceActors.js"
import { Registry } from "../src/registry/Registry.js"
import { IMAGE, layerAgent, makePeers } from "./Harness.js"

const unused = <A>(what: string) => new Proxy({}, { get: () => { throw new Error(`not used by this test: ${what}`) } }) as A

const tmp = mkdtempSync(join(tmpdir(), "mcp-deploy-refusals-"))

/** The master's system token: an admin, the only caller an agent takes changes from. */
const asMaster = Effect.provideService(Principal.CurrentPrincipal, new Principal.Principal({ name: "master", kind: "system", role: "admin" }))

const service = (name: string, routes: ReadonlyArray<Record<string, unknown>> = [{ port: 8443, mode: "l7" }]) => ({
  name,
  components: [{ name: "web", image: IMAGE, cmd: ["httpd", "-f", "-p", "$PORT"], routes }]
})

const withAgent = <A, E>(body: Effect.Effect<A, E, AgentHandlers.HandlersEnv | MemoryRuntimeControl>, allowedDomains: ReadonlyArray<string> = []) =>
  Effect.gen(function* () {
    const peers = yield* makePeers({ switchesTraffic: true })
    const layer = Layer.mergeAll(
      layerAgent(peers, join(mkdtempSync(join(tmp, "reg-")), "registry.db")),
      FleetPolicy.layer({ ...FleetPolicy.initial, allowedDomains }),
      Layer.succeed(BootSequencer, unused<BootSequencer>("BootSequencer")),
      Layer.succeed(EdgeRoutes, unused<EdgeRoutes>("EdgeRoutes"))
    )
    return yield* Effect.provide(body, layer)
  }).pipe(Effect.scoped)

const handlersAs = (role: AgentHandlers.AgentIdentity["role"]) =>
  AgentHandlers.handlers({ role, addresses: [], nodeAddress: "10.0.0.5", version: "test", dataDir: join(tmp, "data") })

const deploy = (role: AgentHandlers.AgentIdentity["role"], definition: unknown) =>
  Effect.flatMap(handlersAs(role), (h) => Stream.runDrain(h.Deploy({ definition, dryRun: false })).pipe(asMaster, Effect.either))

/** Containers created, services recorded and actors started: all zero after a refusal. */
const footprint = Effect.gen(function* () {
  const control = yield* MemoryRuntimeControl
  const registry = yield* Registry
  const actors = yield* ServiceActors
  return {
    creates: (yield* control.calls).create,
    services: (yield* registry.services).map((s) => s.name),
    actors: (yield* actors.stats).map((s) => s.key)
  }
})

describe("agent Deploy on an edge node", () => {
  it.scopedLive("is refused as PlacementFailed naming the rule, before any actor or container; Start and Restart too", () =>
    withAgent(Effect.gen(function* () {
      const refused = yield* deploy("edge", service("app"))
      expect(refused._tag).toBe("Left")
      const error = (refused as { left: unknown }).left as Errors.PlacementFailed
      expect(error).toBeInstanceOf(Errors.PlacementFailed)
      expect(error.service).toBe("app")
      expect(error.message).toContain(`node "test-node" is an edge node; edge nodes only proxy public routes and never run containers`)
      expect(error.message).toContain("deploy through the master")
      expect(yield* footprint).toEqual({ creates: 0, services: [], actors: [] })

      const h = yield* handlersAs("edge")
      const app = Schema.decodeSync(Names.ServiceName)("app")
      for (const e of [yield* Effect.flip(asMaster(h.Start({ service: app }))), yield* Effect.flip(asMaster(h.Restart({ service: app })))]) {
        expect(e).toBeInstanceOf(Errors.DeployFailed)
        expect((e as Errors.DeployFailed).reason).toContain("never run containers")
        expect((e as Errors.DeployFailed).retryable).toBe(false)
      }
      expect(yield* footprint).toEqual({ creates: 0, services: [], actors: [] })
    })))

  it.scopedLive("the same definition deploys on a worker", () =>
    withAgent(Effect.gen(function* () {
      expect((yield* deploy("worker", service("app")))._tag).toBe("Right")
      expect((yield* footprint).services).toEqual(["app"])
    })))
})

describe("agent Deploy: one service may not take another's hostname on this node", () => {
  it.scopedLive("an explicit hostname, or another's default name, is refused naming the hostname and its owner; nothing is created", () =>
    withAgent(Effect.gen(function* () {
      expect((yield* deploy("worker", service("alpha", [{ name: "main", port: 8443, mode: "l7" }, { name: "alt", port: 9443, mode: "l7", hostname: "shared.svc.mcp.internal" }])))._tag).toBe("Right")
      const before = yield* footprint

      // beta names alpha's explicit hostname, on another listener.
      const explicit = yield* deploy("worker", service("beta", [{ port: 7443, mode: "l7", hostname: "shared.svc.mcp.internal" }]))
      const error = (explicit as { left: unknown }).left as Errors.InvalidDefinition
      expect(error).toBeInstanceOf(Errors.InvalidDefinition)
      expect(error.service).toBe("beta")
      expect(error.problems).toEqual([{
        path: "components[0].routes[0].hostname",
        message: expect.stringContaining(`hostname "shared.svc.mcp.internal" belongs to service alpha on this node`)
      }])
      expect(error.problems[0]!.message).toContain("undeploy alpha")

      // gamma names alpha's default name (alpha.<zone>), which alpha's unnamed route owns.
      const dflt = yield* deploy("worker", service("gamma", [{ port: 8443, mode: "l7", hostname: "alpha.svc.mcp.internal" }]))
      expect(((dflt as { left: unknown }).left as Errors.InvalidDefinition).problems.map((p) => p.message)).toEqual([
        expect.stringContaining(`hostname "alpha.svc.mcp.internal" belongs to service alpha`)
      ])

      const after = yield* footprint
      expect(after.creates).toBe(before.creates)
      expect(after.services).toEqual(["alpha"])
      expect(after.actors).toEqual(before.actors)
    })))

  it.scopedLive("a service redeploying its own hostnames, and another using a free one, deploy", () =>
    withAgent(Effect.gen(function* () {
      const alpha = service("alpha", [{ port: 9443, mode: "l7", hostname: "shared.svc.mcp.internal" }])
      expect((yield* deploy("worker", alpha))._tag).toBe("Right")
      expect((yield* deploy("worker", alpha))._tag).toBe("Right")
      expect((yield* deploy("worker", service("beta", [{ port: 9443, mode: "l7", hostname: "other.svc.mcp.internal" }])))._tag).toBe("Right")
      expect((yield* footprint).services).toEqual(["alpha", "beta"])
    })))
})

describe("agent Deploy: non-public hostnames fall under the internal zone or a pushed domain", () => {
  const outside = service("app", [{ port: 8443, mode: "l7", hostname: "app.example.com" }])

  it.scopedLive("with no domain pushed (the strict start), a non-public name outside the zone is refused; nothing is created", () =>
    withAgent(Effect.gen(function* () {
      const refused = yield* deploy("worker", outside)
      const error = (refused as { left: unknown }).left as Errors.InvalidDefinition
      expect(error).toBeInstanceOf(Errors.InvalidDefinition)
      expect(error.problems.map((p) => p.path)).toEqual(["components[0].routes[0].hostname"])
      expect(error.problems[0]!.message).toContain(`"app.example.com" is neither under the internal zone "svc.mcp.internal" nor under an allowed domain (none are allowed)`)
      expect(yield* footprint).toEqual({ creates: 0, services: [], actors: [] })
    })))

  it.scopedLive("once the master pushed example.com, it deploys", () =>
    withAgent(Effect.gen(function* () {
      expect((yield* deploy("worker", outside))._tag).toBe("Right")
    }), ["example.com"]))
})
