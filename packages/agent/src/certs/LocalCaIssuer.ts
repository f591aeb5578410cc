/**
 * The embedded CertIssuer: a CA of its own, created in the agent's data dir on first use, or an
 * existing CA directory named in the config (`[certs] ca_dir`, e.g. the platform CA made by
 * `mcp ca init`), so that other nodes' proxies can trust what this one issues. It issues leaf
 * certificates for route hostnames with the full chain (leaf then CA) in the certificate file.
 */
import { FileSystem } from "@effect/platform"
import { Pki } from "@mcp/rpc"
import { Effect, Layer } from "effect"
import { randomBytes } from "node:crypto"
import { join, resolve } from "node:path"
import { CertError, CertIssuer } from "./CertIssuer.js"

export interface LocalCaOptions {
  /**
   * An existing CA directory (Pki.CA_KEY_FILE and Pki.CA_CERT_FILE) to issue from. It is never
   * created: a missing or unreadable CA fails the agent's start, not the first deploy.
   * Default: `<dataDir>/ca`, created on first use.
   */
  readonly caDir?: string
}

export const make = (dataDir: string, options: LocalCaOptions = {}): Effect.Effect<CertIssuer, CertError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    // Like existsSync: a file that cannot be looked at counts as missing.
    const exists = (path: string) => Effect.orElseSucceed(fs.exists(path), () => false)
    const external = options.caDir !== undefined
    const caDir = external ? resolve(options.caDir!) : join(dataDir, "ca")
    const certDir = join(dataDir, "certs")
    const name = `local CA in ${caDir}`
    if (external) {
      // Checked now: an operator who names a CA wants to hear at start that it is not there.
      for (const file of [Pki.CA_KEY_FILE, Pki.CA_CERT_FILE]) {
        if (!(yield* exists(join(caDir, file)))) {
          return yield* new CertError({
            issuer: name,
            hostname: "(any)",
            reason: `[certs] ca_dir has no ${file}; create the CA with \`mcp ca init ${caDir}\`, or leave ca_dir out to use a CA in the data dir`
          })
        }
      }
      yield* Effect.mapError(Pki.readCa(caDir), (e) => new CertError({ issuer: name, hostname: "(any)", reason: e.message }))
    }
    const lock = yield* Effect.makeSemaphore(1)
    const ensureCa = Effect.gen(function* () {
      if (external || (yield* exists(join(caDir, Pki.CA_KEY_FILE)))) return
      yield* Pki.initCa(caDir, { commonName: "MCP agent local CA" })
    })
    return {
      name,
      issue: (hostname) =>
        lock.withPermits(1)(
          Effect.gen(function* () {
            yield* ensureCa
            // One file pair per issue: a reissue never overwrites what a live route serves (the
            // random part keeps two issues within one millisecond apart; the name stays <= 64).
            const stamp = Date.now().toString(36) + randomBytes(2).toString("hex")
            const written = yield* Pki.issueCertificate(caDir, `${hostname.slice(0, 50)}-${stamp}`, { ips: [], dns: [hostname], usage: "server", days: 90, outDir: certDir })
            // Route certificates are the agent's alone: neither file is for other users to read.
            yield* fs.chmod(written.certPath, 0o600)
            return { hostname, certPath: written.certPath, keyPath: written.keyPath, serial: written.serial, notAfter: written.notAfter.toISOString() }
          })
        ).pipe(
          Effect.mapError((e) => new CertError({ issuer: name, hostname, reason: e.message })),
          Effect.provideService(FileSystem.FileSystem, fs)
        ),
      revoke: (cert) =>
        Effect.all([fs.remove(cert.certPath, { force: true }), fs.remove(cert.keyPath, { force: true })], { concurrency: 2, discard: true }).pipe(
          Effect.mapError((e) => new CertError({ issuer: name, hostname: cert.hostname, reason: `cannot delete certificate files: ${e.description ?? e.message}` }))
        )
    } satisfies CertIssuer
  })

export const layer = (dataDir: string, options: LocalCaOptions = {}) => Layer.effect(CertIssuer, make(dataDir, options))
