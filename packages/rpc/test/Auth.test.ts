import { describe, expect, it } from "@effect/vitest"
import { RpcTest } from "@effect/rpc"
import { Errors } from "@mcp/domain"
import { Effect, Layer, Redacted } from "effect"
import * as Authenticator from "../src/Authenticator.js"
import * as AuthMiddleware from "../src/AuthMiddleware.js"
import { AgentRpcs } from "../src/Contracts.js"
import { Principal } from "../src/Principal.js"
import { TestAgentHandlers } from "./fixtures/TestAgent.js"

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
      const error = yield* Effect.flip(client.Ps())
      expect(error).toEqual(new Errors.Forbidden({ principal: "eve", role: "guest", rpc: "Ps" }))
    }))

  it.scoped("on the master, guests may read but never change anything", () =>
    Effect.gen(function* () {
      const client = yield* clientAs("guest-token", { guestMayRead: true })
      expect(yield* client.Ps()).toHaveLength(1)
      const error = yield* Effect.flip(client.Stop({ service: "web" as never }))
      expect(error._tag).toBe("Forbidden")
    }))

  it.scoped("typed handler errors arrive as their class", () =>
    Effect.gen(function* () {
      const client = yield* clientAs("admin-token", { guestMayRead: false })
      const error = yield* Effect.flip(client.Status({ service: "nope" as never }))
      expect(error).toBeInstanceOf(Errors.ServiceNotFound)
    }))
})
