/**
 * The CertIssuer contract for issuers that write files: one suite every such adapter must pass
 * (the local CA here, ACME against pebble in the top-level integration tests).
 */
import { assert, expect, layer } from "@effect/vitest"
import { Effect, Either, type Layer } from "effect"
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto"
import { existsSync, readFileSync, statSync } from "node:fs"
import type { AddressInfo } from "node:net"
import * as tls from "node:tls"
import { CertError, CertIssuer, type IssuedCertificate } from "../src/certs/CertIssuer.js"

/** A fresh name under a test-only suffix, so parallel runs never share a certificate. */
export const contractHostname = (): string => `c${randomBytes(4).toString("hex")}.mcp-contract.test`

/** The PEM blocks of a file, in order. */
export const pemBlocks = (text: string): ReadonlyArray<string> =>
  text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []

/**
 * Checks, without a network, that `chainPem` (leaf first, then intermediates, maybe the root)
 * leads from a leaf naming `hostname` to `rootPem`: each certificate is issued and signed by the
 * next one, the last by the root. Returns the leaf.
 */
export const verifyChain = (chainPem: string, rootPem: string, hostname: string): X509Certificate => {
  const chain = pemBlocks(chainPem).map((pem) => new X509Certificate(pem))
  const root = new X509Certificate(rootPem)
  assert.isAtLeast(chain.length, 1, "the certificate file holds no certificate")
  const leaf = chain[0]!
  // checkHost answers the name that matched (`*.example.test` for a wildcard), or undefined.
  expect(leaf.checkHost(hostname), `the leaf does not name ${hostname}`).toBeDefined()
  expect(leaf.ca).toBe(false)
  chain.forEach((cert, i) => {
    const issuer = chain[i + 1] ?? root
    expect(cert.checkIssued(issuer), `certificate ${i} (${cert.subject}) is not issued by ${issuer.subject}`).toBe(true)
    expect(cert.verify(issuer.publicKey), `certificate ${i} (${cert.subject}) is not signed by ${issuer.subject}`).toBe(true)
    const now = Date.now()
    expect(new Date(cert.validFrom).getTime()).toBeLessThanOrEqual(now)
    expect(new Date(cert.validTo).getTime()).toBeGreaterThan(now)
  })
  return leaf
}

/**
 * A real TLS handshake: a server on 127.0.0.1 serves the issued key and chain, a client that
 * trusts only `rootPem` connects with SNI `hostname`. Resolves `authorized` and any error.
 */
export const tlsHandshake = (
  cert: IssuedCertificate,
  rootPem: string
): Effect.Effect<{ readonly authorized: boolean; readonly error: string | undefined }> =>
  Effect.acquireUseRelease(
    Effect.async<tls.Server>((resume) => {
      const server = tls.createServer({ key: readFileSync(cert.keyPath), cert: readFileSync(cert.certPath) }, (socket) => {
        socket.end()
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async((resume) => {
        const { port } = server.address() as AddressInfo
        const socket = tls.connect({ host: "127.0.0.1", port, servername: cert.hostname, ca: rootPem })
        socket.once("secureConnect", () => {
          resume(Effect.succeed({ authorized: socket.authorized, error: socket.authorizationError?.message }))
          socket.destroy()
        })
        socket.once("error", (e) => resume(Effect.succeed({ authorized: false, error: e.message })))
      }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )

const mode = (file: string): number => statSync(file).mode & 0o777

/**
 * @param trust the root to verify issued chains with, read after the first issue (a local CA is
 *   created on first use; pebble's root is new at every start).
 */
export const certIssuerContract = <E>(name: string, issuerLayer: Layer.Layer<CertIssuer, E>, trust: () => string) =>
  layer(issuerLayer, { excludeTestServices: true, timeout: "60 seconds" })(`CertIssuer contract: ${name}`, (it) => {
    it.effect("issues a certificate that verifies for the hostname against the trust root", () =>
      Effect.gen(function*() {
        const issuer = yield* CertIssuer
        const hostname = contractHostname()
        const cert = yield* issuer.issue(hostname)
        expect(cert.hostname).toBe(hostname)
        const leaf = verifyChain(readFileSync(cert.certPath, "utf8"), trust(), hostname)
        // What the port reports is what the file holds.
        expect(cert.serial.toUpperCase()).toBe(leaf.serialNumber.toUpperCase())
        expect(new Date(cert.notAfter).getTime()).toBe(new Date(leaf.validTo).getTime())
        expect(new Date(cert.notAfter).getTime()).toBeGreaterThan(Date.now())
        yield* issuer.revoke(cert)
      }))

    it.effect("a TLS server with the issued key and chain is accepted by a client trusting the root", () =>
      Effect.gen(function*() {
        const issuer = yield* CertIssuer
        const cert = yield* issuer.issue(contractHostname())
        const result = yield* tlsHandshake(cert, trust())
        expect(result.error).toBeUndefined()
        expect(result.authorized).toBe(true)
        yield* issuer.revoke(cert)
      }))

    it.effect("the key belongs to the certificate and is readable by its owner only", () =>
      Effect.gen(function*() {
        const issuer = yield* CertIssuer
        const cert = yield* issuer.issue(contractHostname())
        const leaf = new X509Certificate(pemBlocks(readFileSync(cert.certPath, "utf8"))[0]!)
        expect(leaf.checkPrivateKey(createPrivateKey(readFileSync(cert.keyPath)))).toBe(true)
        expect(mode(cert.keyPath).toString(8)).toBe("600")
        // Route certificates and keys are written 0600: only the agent (and its proxy) read them.
        expect(mode(cert.certPath).toString(8)).toBe("600")
        yield* issuer.revoke(cert)
      }))

    it.effect("a reissue writes new files and leaves the served ones alone", () =>
      Effect.gen(function*() {
        const issuer = yield* CertIssuer
        const hostname = contractHostname()
        const first = yield* issuer.issue(hostname)
        const before = readFileSync(first.certPath, "utf8")
        const second = yield* issuer.issue(hostname)
        expect(second.certPath).not.toBe(first.certPath)
        expect(second.keyPath).not.toBe(first.keyPath)
        expect(second.serial).not.toBe(first.serial)
        expect(readFileSync(first.certPath, "utf8")).toBe(before)
        yield* issuer.revoke(first)
        yield* issuer.revoke(second)
      }))

    it.effect("revoke deletes both files, and revoking again succeeds", () =>
      Effect.gen(function*() {
        const issuer = yield* CertIssuer
        const cert = yield* issuer.issue(contractHostname())
        expect(existsSync(cert.certPath) && existsSync(cert.keyPath)).toBe(true)
        yield* issuer.revoke(cert)
        expect(existsSync(cert.certPath)).toBe(false)
        expect(existsSync(cert.keyPath)).toBe(false)
        yield* issuer.revoke(cert)
      }))

    it.effect("a name that is not a DNS name fails with a CertError naming the issuer", () =>
      Effect.gen(function*() {
        const issuer = yield* CertIssuer
        const result = yield* Effect.either(issuer.issue("not a hostname"))
        assert(Either.isLeft(result), "issuing for an invalid name succeeded")
        expect(result.left).toBeInstanceOf(CertError)
        expect(result.left.issuer).toBe(issuer.name)
        expect(result.left.hostname).toBe("not a hostname")
        expect(result.left.message).toContain(issuer.name)
      }))
  })
