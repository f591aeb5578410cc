import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Context, Effect, Layer, Redacted, TestClock } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { Authenticator } from "../src/Authenticator.js"
import * as HttpAuthenticator from "../src/HttpAuthenticator.js"
import { Principal } from "../src/Principal.js"

const ADMIN = "mcias-admin-token-3f9a"
const AGENT = "mcias-agent-token-77c1"
const REJECTED = "mcias-revoked-token-0d2e"
const FALSE = "mcias-false-token-51aa"
const FLAKY = "mcias-flaky-token-9b0c"

interface Stub {
  readonly url: string
  /** Requests received, by bearer token. */
  readonly calls: Map<string, number>
  /** While down, connections are dropped without an answer, as a crashed service would. */
  readonly setDown: (down: boolean) => void
  readonly close: Effect.Effect<void>
}

/** An MCIAS-shaped validation endpoint on 127.0.0.1:0. FLAKY gets a 503 on its first request only. */
const stubService = Effect.acquireRelease(
  Effect.async<Stub>((resume) => {
    const calls = new Map<string, number>()
    let down = false
    const server = http.createServer((req, res) => {
      if (down) return void req.socket.destroy()
      let body = ""
      req.on("data", (chunk) => (body += chunk))
      req.on("end", () => {
        const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? ""
        const n = (calls.get(token) ?? 0) + 1
        calls.set(token, n)
        const send = (status: number, payload: unknown) => {
          res.writeHead(status, { "content-type": "application/json" })
          res.end(JSON.stringify(payload))
        }
        if (req.method !== "POST" || JSON.parse(body || "null") === null) return send(400, { error: "bad request" })
        switch (token) {
          case ADMIN:
            return send(200, { valid: true, username: "alice", roles: ["user", "admin"] })
          case AGENT:
            return send(200, { valid: true, username: "agent-1", roles: ["user"], kind: "system" })
          case FALSE:
            return send(200, { valid: false })
          case FLAKY:
            return n === 1 ? send(503, { error: "overloaded" }) : send(200, { valid: true, username: "bob", roles: ["viewer"] })
          default:
            return send(401, { valid: false })
        }
      })
    })
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo
      const close = Effect.async<void>((done) => {
        server.closeAllConnections()
        server.close(() => done(Effect.void))
      })
      resume(Effect.succeed({ url: `http://127.0.0.1:${port}/v1/token/validate`, calls, setDown: (d) => (down = d), close }))
    })
  }),
  (stub) => stub.close
)

/** Built in the test's scope, so the HTTP client lives as long as the test. */
const authenticatorFor = (url: string) =>
  Layer.build(HttpAuthenticator.layer({ url, cacheTtl: "30 seconds" }).pipe(Layer.provide(NodeHttpClient.layerUndici))).pipe(
    Effect.map(Context.get(Authenticator))
  )

const shown = (e: Error) => `${e.message} ${String(e)} ${JSON.stringify(e)}`

describe("HttpAuthenticator", () => {
  it.scoped("a valid token becomes a principal with the highest role, and the verdict is cached for the TTL", () =>
    Effect.gen(function* () {
      const stub = yield* stubService
      const auth = yield* authenticatorFor(stub.url)

      const principal = yield* auth.authenticate(Redacted.make(ADMIN))
      expect(principal).toEqual(new Principal({ name: "alice", kind: "human", role: "admin" }))
      expect(stub.calls.get(ADMIN)).toBe(1)

      yield* TestClock.adjust("29 seconds")
      expect((yield* auth.authenticate(Redacted.make(ADMIN))).name).toBe("alice")
      expect(stub.calls.get(ADMIN)).toBe(1)

      yield* TestClock.adjust("2 seconds")
      expect((yield* auth.authenticate(Redacted.make(ADMIN))).name).toBe("alice")
      expect(stub.calls.get(ADMIN)).toBe(2)
    }))

  it.scoped("the service's kind is used, and roles without admin or user make a guest", () =>
    Effect.gen(function* () {
      const stub = yield* stubService
      const auth = yield* authenticatorFor(stub.url)
      expect(yield* auth.authenticate(Redacted.make(AGENT))).toEqual(new Principal({ name: "agent-1", kind: "system", role: "user" }))
      expect(HttpAuthenticator.roleOf([])).toBe("guest")
      expect(HttpAuthenticator.roleOf(["viewer", "user"])).toBe("user")
    }))

  it.scoped("a rejected token (401 or valid: false) is Unauthorized, cached, and not in the error", () =>
    Effect.gen(function* () {
      const stub = yield* stubService
      const auth = yield* authenticatorFor(stub.url)
      for (const token of [REJECTED, FALSE]) {
        const error = yield* Effect.flip(auth.authenticate(Redacted.make(token)))
        expect(error).toBeInstanceOf(Errors.Unauthorized)
        expect(error.reason).toBe("token rejected by the identity service")
        expect(shown(error)).not.toContain(token)
        yield* Effect.flip(auth.authenticate(Redacted.make(token)))
        expect(stub.calls.get(token)).toBe(1)
      }
      yield* TestClock.adjust("31 seconds")
      yield* Effect.flip(auth.authenticate(Redacted.make(REJECTED)))
      expect(stub.calls.get(REJECTED)).toBe(2)
    }))

  it.scoped("a 5xx is 'unavailable' and not cached: the next call asks again", () =>
    Effect.gen(function* () {
      const stub = yield* stubService
      const auth = yield* authenticatorFor(stub.url)
      const error = yield* Effect.flip(auth.authenticate(Redacted.make(FLAKY)))
      expect(error.reason).toContain("identity service unavailable")
      expect(error.reason).toContain("503")
      expect(shown(error)).not.toContain(FLAKY)

      const principal = yield* auth.authenticate(Redacted.make(FLAKY))
      expect(principal).toEqual(new Principal({ name: "bob", kind: "human", role: "guest" }))
      expect(stub.calls.get(FLAKY)).toBe(2)
    }))

  it.scoped("a service that is down is 'unavailable', not cached, and the token is not in the error", () =>
    Effect.gen(function* () {
      const stub = yield* stubService
      yield* stub.close
      const auth = yield* authenticatorFor(stub.url)
      for (let i = 0; i < 2; i++) {
        const error = yield* Effect.flip(auth.authenticate(Redacted.make(ADMIN)))
        expect(error).toBeInstanceOf(Errors.Unauthorized)
        expect(error.reason).toMatch(/^identity service unavailable: /)
        expect(shown(error)).not.toContain(ADMIN)
      }
    }))

  it.scoped("a dropped connection is 'unavailable' and not cached: once the service is back, the token works", () =>
    Effect.gen(function* () {
      const stub = yield* stubService
      const auth = yield* authenticatorFor(stub.url)
      stub.setDown(true)
      const error = yield* Effect.flip(auth.authenticate(Redacted.make(AGENT)))
      expect(error.reason).toMatch(/^identity service unavailable: /)
      expect(shown(error)).not.toContain(AGENT)

      stub.setDown(false)
      expect((yield* auth.authenticate(Redacted.make(AGENT))).name).toBe("agent-1")
      expect(stub.calls.get(AGENT)).toBe(1)
    }))
})
