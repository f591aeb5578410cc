/**
 * A payload with fields its RPC does not declare is refused with UnknownFields naming each one
 * (nested ones by path), a typed error after authentication, instead of the fields being dropped.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Rpc, RpcTest } from "@effect/rpc"
import { Errors } from "@mcp/domain"
import { Effect, Exit, Layer, Redacted, Schema } from "effect"
import * as Authenticator from "../src/Authenticator.js"
import * as AuthMiddleware from "../src/AuthMiddleware.js"
import { AgentRpcs, MasterRpcs } from "../src/Contracts.js"
import { Principal } from "../src/Principal.js"
import { TestAgentHandlers } from "./fixtures/TestAgent.js"
import { makeTestMasterHandlers } from "./fixtures/TestMaster.js"

const principals = new Map([["admin-token", new Principal({ name: "alice", kind: "human", role: "admin" })]])
const server = AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(Authenticator.layerMemory(principals)))

const agentClient = (token: string) =>
  RpcTest.makeClient(AgentRpcs).pipe(Effect.provide(Layer.mergeAll(TestAgentHandlers, server, AuthMiddleware.layerClient(Redacted.make(token)))))

const masterClient = (calls: Array<string>) =>
  RpcTest.makeClient(MasterRpcs).pipe(
    Effect.provide(Layer.mergeAll(makeTestMasterHandlers(calls), server, AuthMiddleware.layerClient(Redacted.make("admin-token"))))
  )

describe("unknown payload fields", () => {
  it.scoped("an extra top-level field is refused by name; the same call without it succeeds", () =>
    Effect.gen(function* () {
      const client = yield* agentClient("admin-token")
      const exit = yield* Effect.exit(client.Stop({ service: "web", force: true } as never))
      expect(exit).toEqual(Exit.fail(new Errors.UnknownFields({ rpc: "Stop", fields: ["force"] })))
      const error = yield* Effect.flip(client.Stop({ service: "web", force: true } as never))
      expect(error.message).toContain(`"force"`)
      expect((yield* client.Stop({ service: "web" as never })).active).toBe(false)
    }))

  it.scoped("an extra field inside a nested domain struct (NodeInfo) is refused by its path and never reaches the handler", () =>
    Effect.gen(function* () {
      const calls: Array<string> = []
      const client = yield* masterClient(calls)
      const info = { name: "n1", role: "worker", addresses: ["10.0.0.1:7000"], arch: "x64", version: "1", sudo: true }
      const exit = yield* Effect.exit(client.NodesAdd({ info } as never))
      expect(exit).toEqual(Exit.fail(new Errors.UnknownFields({ rpc: "NodesAdd", fields: ["info.sudo"] })))
      expect(calls).not.toContain("NodesAdd")
    }))

  it.scoped("authentication comes first: an unknown token is Unauthorized whatever the payload holds", () =>
    Effect.gen(function* () {
      const client = yield* agentClient("stolen-token")
      expect(yield* Effect.flip(client.Stop({ service: "web", force: true } as never))).toBeInstanceOf(Errors.Unauthorized)
    }))

  it("over the wire: the contract's decode keeps the unknown field, which the middleware check then names", () => {
    const rpc = AgentRpcs.requests.get("Stop")! as unknown as Rpc.AnyWithProps
    const decode = Schema.decodeUnknownSync(rpc.payloadSchema as Schema.Schema<unknown, unknown>)
    const decoded = decode({ service: "web", extra: 1 })
    expect(decoded).toEqual({ service: "web", extra: 1 })
    const exit = Effect.runSyncExit(AuthMiddleware.excessFields(rpc, decoded))
    expect(exit).toEqual(Exit.fail(new Errors.UnknownFields({ rpc: "Stop", fields: ["extra"] })))
    expect(Effect.runSyncExit(AuthMiddleware.excessFields(rpc, decode({ service: "web" })))).toEqual(Exit.void)
  })
})
