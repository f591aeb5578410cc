/**
 * The embedded CertIssuer: a CA created in the agent's data dir on first use, issuing leaf
 * certificates for route hostnames with the full chain (leaf then CA) in the certificate file.
 */
import { Pki } from "@mcp/rpc"
import { Effect, Layer } from "effect"
import { existsSync } from "node:fs"
import { chmod, rm } from "node:fs/promises"
import { join } from "node:path"
import { CertError, CertIssuer } from "./CertIssuer.js"

export const make = (dataDir: string): Effect.Effect<CertIssuer> =>
  Effect.gen(function* () {
    const caDir = join(dataDir, "ca")
    const certDir = join(dataDir, "certs")
    const name = `local CA in ${caDir}`
    const lock = yield* Effect.makeSemaphore(1)
    const ensureCa = Effect.suspend(() =>
      existsSync(join(caDir, Pki.CA_KEY_FILE)) ? Effect.void : Effect.asVoid(Pki.initCa(caDir, { commonName: "MCP agent local CA" }))
    )
    return {
      name,
      issue: (hostname) =>
        lock.withPermits(1)(
          Effect.gen(function* () {
            yield* ensureCa
            // One file pair per issue: a reissue never overwrites what a live route serves.
            const stamp = Date.now().toString(36)
            const written = yield* Pki.issueCertificate(caDir, `${hostname.slice(0, 50)}-${stamp}`, { ips: [], dns: [hostname], usage: "server", days: 90, outDir: certDir })
            // Route certificates are the agent's alone: neither file is for other users to read.
            yield* Effect.promise(() => chmod(written.certPath, 0o600))
            return { hostname, certPath: written.certPath, keyPath: written.keyPath, serial: written.serial, notAfter: written.notAfter.toISOString() }
          })
        ).pipe(Effect.mapError((e) => new CertError({ issuer: name, hostname, reason: e.message }))),
      revoke: (cert) =>
        Effect.tryPromise({
          try: () => Promise.all([rm(cert.certPath, { force: true }), rm(cert.keyPath, { force: true })]),
          catch: (e) => new CertError({ issuer: name, hostname: cert.hostname, reason: `cannot delete certificate files: ${String(e)}` })
        })
    } satisfies CertIssuer
  })

export const layer = (dataDir: string) => Layer.effect(CertIssuer, make(dataDir))
