/**
 * The master's audit trail through its real Deploy and Events handlers and its real database (a
 * file, so the migration adding `who` runs): a deploy is recorded with who made it and how it
 * ended, a user calling an admin RPC is recorded as refused, and `Events` returns both.
 */
import { RpcTest } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Errors, type Node } from "@mcp/domain"
import { Authenticator, AuthMiddleware, MasterRpcs, Principal } from "@mcp/rpc"
import { Duration, Effect, Layer, Redacted, Stream } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as FleetViews from "../src/daemon/handlers/FleetViews.js"
import * as ServiceOperations from "../src/daemon/handlers/ServiceOperations.js"
import { layerAuditLog, layerSqlite, MasterDb } from "../src/db/MasterDb.js"
import * as EdgeResolver from "../src/edge/EdgeResolver.js"
import { EdgeReconciler } from "../src/edge/EdgeReconciler.js"
import { AgentClients } from "../src/fleet/AgentClients.js"
import { NodeSupervisors } from "../src/nodes/NodeSupervisors.js"
import { CrossNodeSaga } from "../src/services/CrossNodeSaga.js"
import { ServiceCoordinators } from "../src/services/ServiceCoordinators.js"

// A deploy refused for its name and the Events read reach none of these.
const unused = <A>(what: string) => new Proxy({}, { get: () => { throw new Error(`not used by this test: ${what}`) } }) as A
const notServed = () => Effect.die("not served by this test")

const handlers = MasterRpcs.toLayer(
  Effect.gen(function* () {
    const ops = yield* ServiceOperations.handlers({ internalZone: "internal.test" })
    const views = yield* FleetViews.handlers({ fanoutTimeout: Duration.seconds(1), version: "0.0.0-test" })
    return {
      Deploy: ops.Deploy!,
      Events: views.Events!,
      Undeploy: notServed, Stop: notServed, Start: notServed, Restart: notServed, Ps: notServed, Status: notServed, Sync: notServed,
      NodesList: notServed, NodesAdd: notServed, NodesRemove: notServed, EdgeRoutesList: notServed, DnsCheck: notServed,
      Logs: () => Stream.die("not served by this test"), AgentRecover: notServed, AgentStatus: notServed, ZoneList: notServed, Tree: notServed
    }
  })
)

const principals = new Map([
  ["alice-token", new Principal.Principal({ name: "alice", kind: "human", role: "admin" })],
  ["bob-token", new Principal.Principal({ name: "bob", kind: "human", role: "user" })]
])

describe("master: the audit trail", () => {
  it.scoped("a deploy and a refused admin call are in Events with who made them", () =>
    Effect.gen(function* () {
      const db = MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(join(mkdtempSync(join(tmpdir(), "mcp-master-audit-")), "master.db"))))
      const deps = Layer.mergeAll(
        ServiceCoordinators.Default,
        Layer.succeed(AgentClients, unused<AgentClients>("AgentClients")),
        Layer.succeed(NodeSupervisors, unused<NodeSupervisors>("NodeSupervisors")),
        Layer.succeed(CrossNodeSaga, unused<CrossNodeSaga["Type"]>("CrossNodeSaga")),
        Layer.succeed(EdgeReconciler, unused<EdgeReconciler>("EdgeReconciler")),
        Layer.succeed(EdgeResolver.DnsLookup, unused<EdgeResolver.DnsLookup>("DnsLookup"))
      ).pipe(Layer.provideMerge(db))
      const auth = AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(Authenticator.layerMemory(principals)), Layer.provide(layerAuditLog))
      const server = yield* Layer.build(Layer.merge(handlers, auth).pipe(Layer.provideMerge(deps)))
      const as = (token: string) =>
        RpcTest.makeClient(MasterRpcs).pipe(Effect.provide(AuthMiddleware.layerClient(Redacted.make(token))), Effect.provide(server))
      const alice = yield* as("alice-token")
      const bob = yield* as("bob-token")

      const deploy = yield* Effect.flip(Stream.runDrain(alice.Deploy({ definition: { name: "../etc", components: [] }, dryRun: false })))
      expect(deploy).toBeInstanceOf(Errors.InvalidDefinition)
      const info = { name: "n9", role: "worker", addresses: ["10.0.0.9:7000"], arch: "x64", version: "1" } as unknown as Node.NodeInfo
      expect(yield* Effect.flip(bob.NodesAdd({ info }))).toBeInstanceOf(Errors.Forbidden)

      const events = [...yield* Stream.runCollect(bob.Events({ follow: false, limit: 100 }))].filter((e) => e.kind === "audit")
      expect(events).toEqual([
        expect.objectContaining({
          node: "master",
          service: "../etc",
          who: { name: "alice", kind: "human", role: "admin" },
          message: expect.stringMatching(/^Deploy service=\.\.\/etc dryRun=false: failed \(InvalidDefinition: /)
        }),
        expect.objectContaining({
          node: "master",
          who: { name: "bob", kind: "human", role: "user" },
          message: expect.stringMatching(/^NodesAdd node=n9: refused \(Forbidden: /)
        })
      ])
    }))
})
