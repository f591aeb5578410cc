/**
 * Real TLS traffic through a proxy under test: a throwaway CA, tiny node backends on loopback, and
 * a client that speaks TLS with a chosen SNI and trusts only that CA.
 */
import { Pki } from "@mcp/rpc"
import { Effect, Either } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import { tmpdir } from "node:os"
import * as path from "node:path"
import type * as tls from "node:tls"
import { layerPlatform } from "../../packages/agent/test/Platform.js"


export const CA_NAME = "MCP proxy test CA"

/** A CA in a temporary directory; `issue` gives a full-chain certificate for one hostname. */
export const scopedPki = Effect.gen(function*() {
  const dir = yield* Effect.acquireRelease(
    Effect.sync(() => mkdtempSync(path.join(tmpdir(), "mcp-proxy-pki-"))),
    (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
  )
  const caDir = path.join(dir, "ca")
  const ca = yield* Pki.initCa(caDir, { commonName: CA_NAME })
  const caPem = readFileSync(ca.certPath, "utf8")
  const issue = (hostname: string, name: string = hostname) =>
    Pki.issueCertificate(caDir, name, { ips: [], dns: [hostname], usage: "server", outDir: path.join(dir, "leaf") }).pipe(
      Effect.provide(layerPlatform)
    )
  return { caPath: ca.certPath, caPem, issue }
}).pipe(Effect.orDie, Effect.provide(layerPlatform))

/** An HTTP (or HTTPS, given a certificate) server on 127.0.0.1 answering `<name> <host header>`. */
export const scopedBackend = (name: string, tlsFiles?: { readonly certPath: string; readonly keyPath: string }) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly server: http.Server }>((resume) => {
      const handler: http.RequestListener = (req, res) => res.end(`${name} ${req.headers.host ?? ""}`)
      const server = tlsFiles === undefined
        ? http.createServer(handler)
        : https.createServer({ cert: readFileSync(tlsFiles.certPath), key: readFileSync(tlsFiles.keyPath) }, handler)
      server.listen(0, "127.0.0.1", () => {
        const address = server.address()
        resume(Effect.succeed({ port: typeof address === "object" && address !== null ? address.port : 0, server }))
      })
    }),
    ({ server }) =>
      Effect.async<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

export interface Answer {
  readonly status: number
  readonly body: string
  readonly issuer: string
  readonly serial: string
}

/** GET https://<hostname>:<listener>/ against 127.0.0.1 with SNI `hostname`, trusting only `ca`. */
export const get = (listener: number, hostname: string, ca: string, hostHeader?: string): Effect.Effect<Answer, Error> =>
  Effect.async((resume) => {
    const req = https.get(
      { host: "127.0.0.1", port: listener, servername: hostname, headers: { host: hostHeader ?? `${hostname}:${listener}` }, ca, agent: false, timeout: 3000 },
      (res) => {
        const peer = (res.socket as tls.TLSSocket).getPeerCertificate()
        let body = ""
        res.setEncoding("utf8")
        res.on("data", (chunk: string) => (body += chunk))
        res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body, issuer: [peer.issuer?.CN ?? ""].flat().join(","), serial: peer.serialNumber ?? "" })))
      }
    )
    req.on("timeout", () => req.destroy(new Error("timeout")))
    req.on("error", (e) => resume(Effect.fail(e)))
  })

/** True when the proxy no longer serves the name: 404, or the handshake / connection is refused. */
export const notServed = (listener: number, hostname: string, ca: string) =>
  Effect.map(Effect.either(get(listener, hostname, ca)), (r) => Either.isLeft(r) || r.right.status === 404)

