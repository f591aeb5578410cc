import { NodeHttpClient } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Context, Effect, Layer, Logger, LogLevel, Metric, Redacted, TestClock } from "effect"
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
const NAMELESS = "mcias-nameless-token-4e10"

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
          case NAMELESS:
            return send(200, { valid: true, roles: ["admin"] })
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

/** Log lines written while `body` runs (the lookup logs from the authenticating fiber). */
const logged = <A, E, R>(body: (lines: ReadonlyArray<string>) => Effect.Effect<A, E, R>) => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel.label} ${(Array.isArray(message) ? message : [message]).map(String).join(" ")}`)
  })
  return body(lines).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(LogLevel.Debug))
}

const unavailableCount = (condition: string) =>
  Effect.map(Metric.value(Metric.tagged(HttpAuthenticator.unavailableCount, "condition", condition)), (state) => state.count)

/** The caller's error says only that the service could not validate: not where it is, nor how it failed. */
const expectGeneric = (error: Error & { readonly reason: string }, stub: Stub, token: string) => {
  expect(error).toBeInstanceOf(Errors.Unauthorized)
  expect(error.reason).toBe(HttpAuthenticator.UNAVAILABLE_REASON)
  const port = new URL(stub.url).port
  for (const secret of [token, stub.url, "127.0.0.1", port]) expect(shown(error)).not.toContain(secret)
}

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

  it.scoped("a 5xx is refused with the generic reason, logged with URL and status, counted, and not cached", () =>
    logged((lines) => Effect.gen(function* () {
      const stub = yield* stubService
      const auth = yield* authenticatorFor(stub.url)
      const before = yield* unavailableCount("status")
      const error = yield* Effect.flip(auth.authenticate(Redacted.make(FLAKY)))
      // Issue 14: the status and the URL used to be in the caller's reason; now they are in the log only.
      expectGeneric(error, stub, FLAKY)
      expect(error.reason).not.toContain("503")
      expect(lines.filter((l) => l.startsWith("WARN") && l.includes(`HTTP 503 from ${stub.url}`))).toHaveLength(1)
      expect(lines.join("\n")).not.toContain(FLAKY)
      expect(yield* unavailableCount("status")).toBe(before + 1)

      const principal = yield* auth.authenticate(Redacted.make(FLAKY))
      expect(principal).toEqual(new Principal({ name: "bob", kind: "human", role: "guest" }))
      expect(stub.calls.get(FLAKY)).toBe(2)
    })))

  it.scoped("an answer without a username is refused with the generic reason; the log says what was wrong", () =>
    logged((lines) => Effect.gen(function* () {
      const stub = yield* stubService
      const auth = yield* authenticatorFor(stub.url)
      const before = yield* unavailableCount("response")
      expectGeneric(yield* Effect.flip(auth.authenticate(Redacted.make(NAMELESS))), stub, NAMELESS)
      expect(lines.some((l) => l.includes(`unexpected response from ${stub.url}: "valid": true without a username`))).toBe(true)
      expect(yield* unavailableCount("response")).toBe(before + 1)
    })))

  it.scoped("a service that is down is refused with the generic reason, not cached; the log has the URL and error", () =>
    logged((lines) => Effect.gen(function* () {
      const stub = yield* stubService
      yield* stub.close
      const auth = yield* authenticatorFor(stub.url)
      const before = yield* unavailableCount("unreachable")
      for (let i = 0; i < 2; i++) {
        const error = yield* Effect.flip(auth.authenticate(Redacted.make(ADMIN)))
        // Issue 14: was "identity service unavailable: <transport error naming the URL>".
        expectGeneric(error, stub, ADMIN)
      }
      const warnings = lines.filter((l) => l.startsWith("WARN") && l.includes(`cannot reach ${stub.url}`))
      expect(warnings).toHaveLength(2)
      expect(warnings[0]).toMatch(/ECONNREFUSED/)
      expect(lines.join("\n")).not.toContain(ADMIN)
      expect(yield* unavailableCount("unreachable")).toBe(before + 2)
    })))

  it.scoped("a dropped connection is 'unavailable' and not cached: once the service is back, the token works", () =>
    Effect.gen(function* () {
      const stub = yield* stubService
      const auth = yield* authenticatorFor(stub.url)
      stub.setDown(true)
      const error = yield* Effect.flip(auth.authenticate(Redacted.make(AGENT)))
      // Issue 14: was "identity service unavailable: …" with the transport's error.
      expectGeneric(error, stub, AGENT)

      stub.setDown(false)
      expect((yield* auth.authenticate(Redacted.make(AGENT))).name).toBe("agent-1")
      expect(stub.calls.get(AGENT)).toBe(1)
    }))
})
