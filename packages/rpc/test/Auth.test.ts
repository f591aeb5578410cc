import { describe, expect, it } from "@effect/vitest"
import { RpcTest } from "@effect/rpc"
import { Errors } from "@mcp/domain"
import { Effect, Exit, Layer, Redacted, Stream } from "effect"
import * as Authenticator from "../src/Authenticator.js"
import * as AuthMiddleware from "../src/AuthMiddleware.js"
import { AgentRpcs, MasterRpcs } from "../src/Contracts.js"
import { Principal } from "../src/Principal.js"
import { TestAgentHandlers } from "./fixtures/TestAgent.js"
import { makeTestMasterHandlers } from "./fixtures/TestMaster.js"

const principals = new Map([
  ["admin-token", new Principal({ name: "alice", kind: "human", role: "admin" })],
  ["user-token", new Principal({ name: "bob", kind: "human", role: "user" })],
  ["guest-token", new Principal({ name: "eve", kind: "human", role: "guest" })]
])

const clientAs = (token: string, policy: AuthMiddleware.AccessPolicy) =>
  RpcTest.makeClient(AgentRpcs).pipe(
    Effect.provide(
      Layer.mergeAll(
        TestAgentHandlers,
        AuthMiddleware.layerServer(policy).pipe(Layer.provide(Authenticator.layerMemory(principals))),
        AuthMiddleware.layerClient(Redacted.make(token))
      )
    )
  )

/** A MasterRpcs client with the master's policy; `calls` records each RPC that reached a handler. */
const masterClientAs = (token: string, calls: Array<string>) =>
  RpcTest.makeClient(MasterRpcs).pipe(
    Effect.provide(
      Layer.mergeAll(
        makeTestMasterHandlers(calls),
        AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(Authenticator.layerMemory(principals))),
        AuthMiddleware.layerClient(Redacted.make(token))
      )
    )
  )

describe("auth middleware (in memory)", () => {
  it.scoped("a known token reaches the handler, which sees the principal", () =>
    Effect.gen(function* () {
      const client = yield* clientAs("user-token", { guestMayRead: false })
      const health = yield* client.Health()
      expect(health.node).toBe("test-node (called by bob)")
    }))

  it.scoped("an unknown token is Unauthorized, and the token is not in the error", () =>
    Effect.gen(function* () {
      const client = yield* clientAs("stolen-token", { guestMayRead: true })
      const error = yield* Effect.flip(client.Health())
      expect(error).toBeInstanceOf(Errors.Unauthorized)
      expect(JSON.stringify(error) + error.message).not.toContain("stolen-token")
    }))

  it.scoped("agents refuse guests outright, even for reads", () =>
    Effect.gen(function* () {
      const client = yield* clientAs("guest-token", { guestMayRead: false })
      expect(yield* Effect.exit(client.Ps())).toEqual(Exit.fail(new Errors.Forbidden({ principal: "eve", role: "guest", rpc: "Ps", needs: "user" })))
    }))

  it.scoped("agents refuse guests' writes too, though a user's same call succeeds", () =>
    Effect.gen(function* () {
      const guest = yield* clientAs("guest-token", { guestMayRead: false })
      expect(yield* Effect.exit(guest.Stop({ service: "web" as never }))).toEqual(
        Exit.fail(new Errors.Forbidden({ principal: "eve", role: "guest", rpc: "Stop", needs: "user" }))
      )
      const user = yield* clientAs("user-token", { guestMayRead: false })
      expect((yield* user.Stop({ service: "web" as never })).active).toBe(false)
    }))

  it.scoped("the agent group under guestMayRead: true lets a guest read but not Stop (which a user may)", () =>
    Effect.gen(function* () {
      const guest = yield* clientAs("guest-token", { guestMayRead: true })
      expect(yield* guest.Ps()).toHaveLength(1)
      expect(yield* Effect.exit(guest.Stop({ service: "web" as never }))).toEqual(
        Exit.fail(new Errors.Forbidden({ principal: "eve", role: "guest", rpc: "Stop", needs: "user" }))
      )
      const user = yield* clientAs("user-token", { guestMayRead: true })
      expect((yield* user.Stop({ service: "web" as never })).service).toBe("web")
    }))

  it.scoped("on the master (MasterRpcs, guestMayRead: true), guests may read but never change anything", () =>
    Effect.gen(function* () {
      const calls: Array<string> = []
      const guest = yield* masterClientAs("guest-token", calls)
      // Reads reach their handlers.
      expect((yield* guest.Ps()).services).toHaveLength(1)
      expect((yield* guest.Status({ service: "web" as never })).service).toBe("web")
      expect(yield* guest.NodesList()).toHaveLength(1)
      expect(yield* Stream.runCollect(guest.Events({ follow: false, limit: 1 }))).toHaveLength(1)
      expect((yield* guest.Tree()).name).toBe("mcp-master")
      expect(calls).toEqual(["Ps", "Status", "NodesList", "Events", "Tree"])
      calls.length = 0
      // Writes are refused by the middleware: every handler here would have answered.
      const forbidden = (rpc: string, needs = "user") => Exit.fail(new Errors.Forbidden({ principal: "eve", role: "guest", rpc, needs }))
      expect(yield* Effect.exit(guest.Undeploy({ service: "web" as never }))).toEqual(forbidden("Undeploy"))
      expect(yield* Effect.exit(guest.Stop({ service: "web" as never }))).toEqual(forbidden("Stop"))
      expect(yield* Effect.exit(guest.Start({ service: "web" as never }))).toEqual(forbidden("Start"))
      expect(yield* Effect.exit(guest.Restart({ service: "web" as never }))).toEqual(forbidden("Restart"))
      expect(yield* Effect.exit(guest.Sync({ definitions: [] }))).toEqual(forbidden("Sync"))
      expect(yield* Effect.exit(guest.NodesRemove({ node: "test-node" as never }))).toEqual(forbidden("NodesRemove", "admin"))
      expect(yield* Effect.exit(guest.AgentRecover({ force: false }))).toEqual(forbidden("AgentRecover", "admin"))
      expect(yield* Effect.exit(Stream.runCollect(guest.Deploy({ definition: { name: "web" }, dryRun: true })))).toEqual(forbidden("Deploy"))
      expect(calls, "write handlers a guest reached").toEqual([])
    }))

  it.scoped("on the master, a user's writes reach the handlers", () =>
    Effect.gen(function* () {
      const calls: Array<string> = []
      const user = yield* masterClientAs("user-token", calls)
      yield* user.Undeploy({ service: "web" as never })
      expect((yield* user.Stop({ service: "web" as never })).active).toBe(false)
      expect(yield* Stream.runCollect(user.Deploy({ definition: { name: "web" }, dryRun: true }))).toHaveLength(1)
      expect(calls).toEqual(["Undeploy", "Stop", "Deploy"])
    }))

  it.scoped("on the master, the fleet's shape is an admin's: a user is refused it, naming the role it needs, and an admin reaches it", () =>
    Effect.gen(function* () {
      const calls: Array<string> = []
      const user = yield* masterClientAs("user-token", calls)
      const forbidden = (rpc: string) => Exit.fail(new Errors.Forbidden({ principal: "bob", role: "user", rpc, needs: "admin" }))
      const node = { name: "n9", role: "worker", addresses: ["127.0.0.1:1"], arch: "x64", version: "test" } as never
      expect(yield* Effect.exit(user.NodesAdd({ info: node }))).toEqual(forbidden("NodesAdd"))
      expect(yield* Effect.exit(user.NodesRemove({ node: "test-node" as never }))).toEqual(forbidden("NodesRemove"))
      expect(yield* Effect.exit(user.AgentRecover({ force: true }))).toEqual(forbidden("AgentRecover"))
      expect(calls, "admin handlers a user reached").toEqual([])
      const admin = yield* masterClientAs("admin-token", calls)
      yield* admin.NodesRemove({ node: "test-node" as never })
      yield* admin.AgentRecover({ force: true })
      expect(calls).toEqual(["NodesRemove", "AgentRecover"])
    }))

  it.scoped("on the agent, manual proxy routes, edge routes and recover are an admin's; a user gets Forbidden before any handler", () =>
    Effect.gen(function* () {
      const user = yield* clientAs("user-token", { guestMayRead: false })
      const forbidden = (rpc: string) => Exit.fail(new Errors.Forbidden({ principal: "bob", role: "user", rpc, needs: "admin" }))
      expect(yield* Effect.exit(user.ProxyRoutesRemove({ listener: 443, hostname: "x.example.com" }))).toEqual(forbidden("ProxyRoutesRemove"))
      expect(yield* Effect.exit(user.RemoveEdgeRoute({ hostname: "x.example.com" }))).toEqual(forbidden("RemoveEdgeRoute"))
      expect(yield* Effect.exit(user.Recover({ force: true }))).toEqual(forbidden("Recover"))
    }))

  it.scoped("typed handler errors arrive as their class", () =>
    Effect.gen(function* () {
      const client = yield* clientAs("admin-token", { guestMayRead: false })
      const error = yield* Effect.flip(client.Status({ service: "nope" as never }))
      expect(error).toBeInstanceOf(Errors.ServiceNotFound)
    }))
})
