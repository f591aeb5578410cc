/**
 * The agent's Deploy enforces the pushed policy with what only the node knows: a host path that
 * reaches /etc through a symlink under an allowed root, the agent's own data dir, and ports off
 * the bind address are refused as PolicyViolation before any actor or container exists.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors, Policy } from "@mcp/domain"
import { Principal } from "@mcp/rpc"
import { Effect, Layer, Schema, Stream } from "effect"
import { mkdirSync, mkdtempSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BootSequencer } from "../src/boot/BootSequencer.js"
import * as AgentHandlers from "../src/daemon/AgentHandlers.js"
import * as FleetPolicy from "../src/daemon/FleetPolicy.js"
import { EdgeRoutes } from "../src/edge/EdgeRoutes.js"
import { MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import { IMAGE, layerAgent, makePeers } from "./Harness.js"

const unused = <A>(what: string) => new Proxy({}, { get: () => { throw new Error(`not used by this test: ${what}`) } }) as A

const tmp = mkdtempSync(join(tmpdir(), "mcp-deploy-policy-"))
const root = join(tmp, "srv", "app")
mkdirSync(join(root, "data"), { recursive: true })
mkdirSync(join(root, "state"), { recursive: true })
symlinkSync("/etc", join(root, "etc"))
const dataDir = join(root, "state")

const pushed = Schema.decodeUnknownSync(Policy.DeployPolicy)({ host_path_roots: [join(tmp, "srv", "{service}")] })

const as = (role: Principal.Role) => Effect.provideService(Principal.CurrentPrincipal, new Principal.Principal({ name: `${role}-token`, kind: "human", role }))

const service = (component: Record<string, unknown>) => ({
  name: "app",
  components: [{ name: "web", image: IMAGE, cmd: ["httpd", "-f", "-p", "$PORT"], routes: [{ port: 8443, mode: "l7" }], ...component }]
})

/** An agent core whose FleetPolicy holds `pushed` (as if a master had pushed it), or "never registered". */
const withAgent = <A, E>(body: Effect.Effect<A, E, AgentHandlers.HandlersEnv | MemoryRuntimeControl>, policy: Policy.DeployPolicy | "never registered" = pushed) =>
  Effect.gen(function* () {
    const peers = yield* makePeers({ switchesTraffic: true })
    const layer = Layer.mergeAll(
      layerAgent(peers, join(mkdtempSync(join(tmp, "reg-")), "registry.db")),
      FleetPolicy.layer(policy === "never registered" ? FleetPolicy.initial : { policy, allowedDomains: [] }),
      Layer.succeed(BootSequencer, unused<BootSequencer>("BootSequencer")),
      Layer.succeed(EdgeRoutes, unused<EdgeRoutes>("EdgeRoutes"))
    )
    return yield* Effect.provide(body, layer)
  }).pipe(Effect.scoped)

const deploy = (definition: unknown, role: Principal.Role, onBehalfOf?: Principal.Role) =>
  Effect.gen(function* () {
    const h = yield* AgentHandlers.handlers({ role: "worker", addresses: [], nodeAddress: "10.0.0.5", version: "test", dataDir })
    return yield* Stream.runDrain(h.Deploy({ definition, dryRun: false, ...(onBehalfOf === undefined ? {} : { onBehalfOf }) })).pipe(as(role), Effect.either)
  })

const creates = Effect.flatMap(MemoryRuntimeControl, (c) => Effect.map(c.calls, (calls) => calls.create))

describe("agent Deploy: the policy as the node sees it", () => {
  it.scopedLive("a symlink under an allowed root that leads to /etc is refused, for every role, and no container is created", () =>
    withAgent(Effect.gen(function* () {
      for (const role of ["user", "admin"] as const) {
        const result = yield* deploy(service({ volumes: [`${root}/etc/ssl:/ssl:ro`] }), role)
        expect(result._tag).toBe("Left")
        const error = (result as { left: unknown }).left as Errors.PolicyViolation
        expect(error).toBeInstanceOf(Errors.PolicyViolation)
        expect(error.violations.map((v) => [v.path, v.rule])).toEqual([["components[0].volumes[0]", "forbidden_paths"]])
        expect(error.violations[0]!.message).toContain(`(which resolves to "/etc/ssl") is under the forbidden path "/etc"`)
      }
      expect(yield* creates).toBe(0)
    })))

  it.scopedLive("the agent's data dir is forbidden even under a root; a plain directory under the root deploys", () =>
    withAgent(Effect.gen(function* () {
      const refused = yield* deploy(service({ volumes: [`${dataDir}:/state`] }), "admin")
      expect((refused as { left: Errors.PolicyViolation }).left.violations.map((v) => v.rule)).toEqual(["forbidden_paths"])
      expect(yield* creates).toBe(0)
      const ok = yield* deploy(service({ volumes: [`${root}//data/:/data`], user: "1000:1000" }), "user")
      expect(ok._tag).toBe("Right")
      const containers = yield* Effect.flatMap(MemoryRuntimeControl, (c) => c.containers)
      expect(containers.map((c) => c.spec.volumes)).toEqual([[`${root}//data/:/data`]])
    })))

  it.scopedLive("explicit ports off the bind address: refused to a user, allowed to an admin", () =>
    withAgent(Effect.gen(function* () {
      const refused = yield* deploy(service({ ports: ["18080:80"] }), "user")
      const error = (refused as { left: Errors.PolicyViolation }).left
      expect(error.violations.map((v) => [v.path, v.rule])).toEqual([["components[0].ports[0]", "ports_off_bind_address"]])
      expect(error.violations[0]!.message).toContain("not on the node's bind address 127.0.0.1; only an admin may")
      expect(yield* creates).toBe(0)
      expect((yield* deploy(service({ ports: ["18080:80"] }), "admin"))._tag).toBe("Right")
    })))

  it.scopedLive("the master's admin token forwarding a user's deploy is held to the user's rules; claiming admin raises nothing", () =>
    withAgent(Effect.gen(function* () {
      const forwarded = yield* deploy(service({ ports: ["18080:80"] }), "admin", "user")
      expect((forwarded as { left: Errors.PolicyViolation }).left.violations.map((v) => v.rule)).toEqual(["ports_off_bind_address"])
      const claimed = yield* deploy(service({ ports: ["18080:80"] }), "user", "admin")
      expect((claimed as { left: Errors.PolicyViolation }).left.violations.map((v) => v.rule)).toEqual(["ports_off_bind_address"])
      expect(yield* creates).toBe(0)
      expect((yield* deploy(service({ ports: ["18080:80"] }), "admin", "admin"))._tag).toBe("Right")
    })))

  it.scopedLive("an agent no master has told a policy uses the strict defaults (/srv/<service> only)", () =>
    withAgent(Effect.gen(function* () {
      const refused = yield* deploy(service({ volumes: [`${root}/data:/data`] }), "user")
      expect((refused as { left: Errors.PolicyViolation }).left.violations.map((v) => v.rule)).toEqual(["host_path_roots"])
      expect(yield* creates).toBe(0)
    }), "never registered"))
})
