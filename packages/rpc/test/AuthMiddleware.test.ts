/**
 * The server middleware on its own: how it reads the Authorization header, what it says when
 * there is no usable token, and that it hands the handler the principal the token stands for.
 */
import { Headers } from "@effect/platform"
import type { Rpc, RpcMiddleware } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Effect, Exit } from "effect"
import * as Authenticator from "../src/Authenticator.js"
import * as AuthMiddleware from "../src/AuthMiddleware.js"
import { AgentRpcs, ControlRpcs } from "../src/Contracts.js"
import { CurrentPrincipal, Principal } from "../src/Principal.js"

const bob = new Principal({ name: "bob", kind: "human", role: "user" })
const principals = new Map([["tok-1", bob]])

/** Runs the agent's middleware for `Ps` with the given Authorization header (or none). */
const callWith = (authorization: string | undefined) =>
  Effect.gen(function* () {
    const middleware = yield* AuthMiddleware.AuthMiddleware
    // The group's requests are typed with their own middleware set; the middleware takes any rpc.
    const rpc = AgentRpcs.requests.get("Ps")! as unknown as Rpc.AnyWithProps
    const headers = authorization === undefined ? Headers.empty : Headers.fromInput({ authorization })
    // The middleware wraps the handler: this one answers with the principal it was given.
    const next = CurrentPrincipal as unknown as Effect.Effect<RpcMiddleware.SuccessValue, never, CurrentPrincipal>
    return yield* Effect.exit(middleware({ clientId: 0, rpc, payload: undefined, headers, next }))
  }).pipe(
    Effect.provide(AuthMiddleware.layerServer({ guestMayRead: false })),
    Effect.provide(Authenticator.layerMemory(principals))
  )

const noBearer = new Errors.Unauthorized({
  reason: "no bearer token; pass one with the Authorization header (the CLI reads token_file from its config)"
})

describe("AuthMiddleware (server side)", () => {
  it.effect("a request without an Authorization header is Unauthorized, saying how to send a token", () =>
    Effect.gen(function* () {
      expect(yield* callWith(undefined)).toEqual(Exit.fail(noBearer))
    }))

  it.effect("the scheme is Bearer, in any case, with any amount of white space before the token", () =>
    Effect.gen(function* () {
      for (const header of ["Bearer tok-1", "bearer tok-1", "BEARER tok-1", "Bearer   tok-1", "Bearer\ttok-1"]) {
        expect(yield* callWith(header), header).toEqual(Exit.succeed(bob))
      }
    }))

  it.effect("anything but exactly `Bearer <one token>` is treated as no token at all", () =>
    Effect.gen(function* () {
      // The token is never cut out of a longer value: a header with something before the
      // scheme or after the token is refused as a whole, not read as a shorter token.
      for (const header of ["xBearer tok-1", "Basic tok-1", "Bearer tok-1 extra", "Bearer", "Bearer ", "tok-1", "NotBearer tok-1"]) {
        expect(yield* callWith(header), header).toEqual(Exit.fail(noBearer))
      }
    }))

  it.effect("a well-formed but unknown token is Unauthorized: unknown token", () =>
    Effect.gen(function* () {
      expect(yield* callWith("Bearer tok-2")).toEqual(Exit.fail(new Errors.Unauthorized({ reason: "unknown token" })))
    }))
})

describe("Admission: the middleware's checks answered at once", () => {
  const w1 = new Principal({ name: "w1", kind: "system", role: "guest" })
  const admin = new Principal({ name: "master", kind: "system", role: "admin" })
  const admitNow = (rpc: string, group: { readonly requests: ReadonlyMap<string, unknown> }, token: string | undefined, payload: unknown) =>
    Effect.gen(function* () {
      const admission = yield* AuthMiddleware.Admission
      const headers = token === undefined ? Headers.empty : Headers.fromInput({ authorization: `Bearer ${token}` })
      return admission.admitNow(group.requests.get(rpc) as Rpc.AnyWithProps, headers, payload)
    }).pipe(Effect.provide(AuthMiddleware.layerServer({ guestMayRead: true })), Effect.provide(Authenticator.layerMemory(new Map([["tok-w1", w1], ["tok-admin", admin]]))))
  const resources = { cpuCores: 1, load1: 0, memoryTotalBytes: 1, memoryFreeBytes: 1, diskTotalBytes: 1, diskFreeBytes: 1, containers: 0 }
  const heartbeat = (node: string, extra: object = {}) => ({ node, resources, services: [], ...extra })

  it.effect("lets through a node's own unaudited unary call, and nothing the middleware would refuse or record", () =>
    Effect.gen(function* () {
      expect(yield* admitNow("Heartbeat", ControlRpcs, "tok-w1", heartbeat("w1"))).toBe(w1)
      // Refused by the middleware: left to it, which gives the typed error.
      expect(yield* admitNow("Heartbeat", ControlRpcs, "tok-admin", heartbeat("w1"))).toBeUndefined()
      expect(yield* admitNow("Heartbeat", ControlRpcs, undefined, heartbeat("w1"))).toBeUndefined()
      expect(yield* admitNow("Heartbeat", ControlRpcs, "tok-nobody", heartbeat("w1"))).toBeUndefined()
      expect(yield* admitNow("Heartbeat", ControlRpcs, "tok-w1", heartbeat("w1", { extra: 1 }))).toBeUndefined()
      // Audited (Register), or a stream (Logs): the middleware records or limits it.
      expect(yield* admitNow("Register", ControlRpcs, "tok-w1", { info: { name: "w1" }, resources })).toBeUndefined()
      expect(yield* admitNow("Logs", AgentRpcs, "tok-admin", { service: "web" })).toBeUndefined()
      // A read by an admin, unaudited and unary: let through.
      expect(yield* admitNow("Ps", AgentRpcs, "tok-admin", {})).toBe(admin)
    }))
})
