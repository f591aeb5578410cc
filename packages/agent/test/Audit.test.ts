/**
 * The agent's audit trail through its real handlers and registry: a deploy (here a dry run, which
 * needs no running containers) is recorded in the registry's event log, and `Events` returns it
 * with who made it. The registry is a file, so this also runs the migration adding `who`.
 */
import { RpcTest } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { AgentRpcs, Authenticator, AuthMiddleware, Principal } from "@mcp/rpc"
import { Effect, Layer, Redacted, Stream } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { BootSequencer } from "../src/boot/BootSequencer.js"
import * as AgentHandlers from "../src/daemon/AgentHandlers.js"
import * as FleetPolicy from "../src/daemon/FleetPolicy.js"
import { EdgeRoutes } from "../src/edge/EdgeRoutes.js"
import { layerAuditLog } from "../src/registry/Registry.js"
import { IMAGE, layerAgent, makePeers } from "./Harness.js"

// Deploy and Events reach neither; anything else touching them fails the test loudly.
const unused = <A>(what: string) => new Proxy({}, { get: () => { throw new Error(`not used by this test: ${what}`) } }) as A

const principals = new Map([["master-token", new Principal.Principal({ name: "master", kind: "system", role: "admin" })]])

describe("agent: the audit trail", () => {
  it.scoped("a deploy through the real handlers is in Events with who made it", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: true })
      const core = layerAgent(peers, join(mkdtempSync(join(tmpdir(), "mcp-agent-audit-")), "registry.db"))
      const handlers = AgentHandlers.layer({ role: "worker", addresses: ["127.0.0.1:7000"], nodeAddress: "10.0.0.5", version: "test", dataDir: tmpdir() }).pipe(
        Layer.provide(Layer.mergeAll(Layer.succeed(BootSequencer, unused("BootSequencer")), Layer.succeed(EdgeRoutes, unused("EdgeRoutes")), FleetPolicy.layer()))
      )
      const auth = AuthMiddleware.layerServer({ guestMayRead: false }).pipe(
        Layer.provide(Authenticator.layerMemory(principals)),
        Layer.provide(layerAuditLog)
      )
      // Built in the test's scope: the registry must outlive the client's construction.
      const context = yield* Layer.build(
        Layer.mergeAll(handlers, auth, AuthMiddleware.layerClient(Redacted.make("master-token"))).pipe(Layer.provideMerge(core))
      )
      const client = yield* RpcTest.makeClient(AgentRpcs).pipe(Effect.provide(context))
      const definition = { name: "web", components: [{ name: "web", image: IMAGE, routes: [{ port: 8443, mode: "l7" }] }] }
      const steps = yield* Stream.runCollect(client.Deploy({ definition, dryRun: true }))
      expect(steps.length).toBeGreaterThan(0)
      yield* client.Ps() // a read: not audited

      const events = [...yield* Stream.runCollect(client.Events({ follow: false, limit: 100 }))]
      const audit = events.filter((e) => e.kind === "audit")
      expect(audit).toEqual([expect.objectContaining({
        node: "test-node",
        service: "web",
        who: { name: "master", kind: "system", role: "admin" },
        message: "Deploy service=web dryRun=true: ok"
      })])
    }))
})
