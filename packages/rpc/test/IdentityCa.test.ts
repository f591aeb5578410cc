/**
 * `[auth] identity_ca` pins the identity service's CA: tokens go only to a service whose
 * certificate chains to it. A service with a certificate from any other CA gets nothing, and the
 * caller is told only that the identity service could not validate the token.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Context, Effect, Layer, Redacted } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Authenticator } from "../src/Authenticator.js"
import * as Daemon from "../src/Daemon.js"
import * as HttpAuthenticator from "../src/HttpAuthenticator.js"
import * as Pki from "../src/Pki.js"

const TOKEN = "mcias-pinned-token-5c3e"

/** A CA and, from it, a certificate for 127.0.0.1, in a fresh temp dir. */
const caWithServer = (name: string) =>
  Effect.gen(function* () {
    const dir = mkdtempSync(join(tmpdir(), `mcp-identity-ca-${name}-`))
    yield* Pki.initCa(dir, { commonName: `${name} CA` })
    const server = yield* Pki.issueCertificate(dir, "identity", { ips: ["127.0.0.1"], dns: [], usage: "server" })
    return { caFile: join(dir, Pki.CA_CERT_FILE), cert: readFileSync(server.certPath, "utf8"), key: readFileSync(server.keyPath, "utf8") }
  }).pipe(Effect.provide(NodeFileSystem.layer))

/** An identity service on https://127.0.0.1:<port> that counts the requests it gets. */
const identityService = (tls: { readonly cert: string; readonly key: string }) =>
  Effect.acquireRelease(
    Effect.async<{ readonly url: string; readonly requests: () => number; readonly server: https.Server }>((resume) => {
      let requests = 0
      const server = https.createServer(tls, (req, res) => {
        requests++
        req.resume()
        req.on("end", () => {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ valid: true, username: "alice", roles: ["admin"] }))
        })
      })
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address() as AddressInfo
        resume(Effect.succeed({ url: `https://127.0.0.1:${port}/v1/token/validate`, requests: () => requests, server }))
      })
    }),
    ({ server }) => Effect.async<void>((done) => {
      server.closeAllConnections()
      server.close(() => done(Effect.void))
    })
  )

const authenticate = (url: string, identityCa: string) =>
  Effect.gen(function* () {
    const context = yield* Layer.build(HttpAuthenticator.layer({ url }).pipe(Layer.provide(Daemon.identityClientLayer({ identity_ca: identityCa }))))
    return yield* Effect.either(Context.get(context, Authenticator).authenticate(Redacted.make(TOKEN)))
  })

describe("[auth] identity_ca", () => {
  it.scopedLive("a service whose certificate chains to the pinned CA validates the token", () =>
    Effect.gen(function* () {
      const own = yield* caWithServer("identity")
      const service = yield* identityService(own)
      const result = yield* authenticate(service.url, own.caFile)
      expect(result._tag).toBe("Right")
      expect(result._tag === "Right" && result.right.name).toBe("alice")
      expect(service.requests()).toBe(1)
    }))

  it.scopedLive("a service with a certificate from another CA never receives the token; the caller gets the generic reason", () =>
    Effect.gen(function* () {
      const pinned = yield* caWithServer("pinned")
      const impostor = yield* caWithServer("impostor")
      const service = yield* identityService(impostor)
      const result = yield* authenticate(service.url, pinned.caFile)
      expect(result._tag).toBe("Left")
      const error = (result as { left: Errors.Unauthorized }).left
      expect(error).toBeInstanceOf(Errors.Unauthorized)
      expect(error.reason).toBe(HttpAuthenticator.UNAVAILABLE_REASON)
      expect(service.requests()).toBe(0)
    }))

  it("is refused in the config without an https identity_url, and a missing file is named at start", () => {
    const decode = Daemon.decodeConfig(Daemon.AuthSection, "auth")
    const problems = decode(`token_file = "/srv/mcp/tokens.toml"\nidentity_ca = "/srv/mcp/identity-ca.crt"\n`)
    expect(problems._tag).toBe("Left")
    expect(JSON.stringify(problems)).toContain("pins the CA of an https:// identity_url")
    expect(() => Daemon.identityClientLayer({ identity_ca: "/nonexistent/identity-ca.crt" })).toThrow(/\[auth\] identity_ca: cannot read \/nonexistent\/identity-ca.crt/)
  })
})
