/**
 * The embedded CertIssuer: a CA of its own, created in the agent's data dir on first use, or an
 * existing routes CA named in the config (`[certs] ca_dir`, made by `mcp ca init-routes`), so that
 * other nodes' proxies can trust what this one issues. It issues leaf certificates for route
 * hostnames with the full chain (leaf then CA) in the certificate file.
 *
 * It signs only names under the internal zone or an allowed public domain, and refuses at start a
 * ca_dir holding the platform CA: the CLI and every daemon trust that one, so a route certificate
 * from it for the master's name would let a route impersonate the master.
 */
import { FileSystem } from "@effect/platform"
import { Pki } from "@mcp/rpc"
import { Effect, Layer } from "effect"
import { randomBytes, X509Certificate } from "node:crypto"
import { join, resolve } from "node:path"
import { CertError, CertIssuer } from "./CertIssuer.js"
import { RouteDomains } from "./RouteDomains.js"
import * as SecretKeyFile from "./SecretKeyFile.js"

export interface LocalCaOptions {
  /**
   * An existing CA directory (Pki.CA_KEY_FILE and Pki.CA_CERT_FILE) to issue from. It is never
   * created: a missing or unreadable CA fails the agent's start, not the first deploy.
   * Default: `<dataDir>/ca`, created on first use.
   */
  readonly caDir?: string
  /** The fleet's internal zone: names under it are always signed. */
  readonly internalZone: string
  /**
   * The public domains names may also fall under, read at every issue so that a list replaced at
   * run time (RouteDomains.set) applies to the next certificate. Default: none.
   */
  readonly allowedDomains?: Effect.Effect<ReadonlyArray<string>>
  /** The platform CA certificate file (`[tls] ca`): a caDir holding that CA is refused. */
  readonly platformCaFile?: string
}

/** The PEM certificates in a file (a CA bundle may hold several). */
const pemBlocks = (text: string): ReadonlyArray<string> =>
  text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []

/** The DER SubjectPublicKeyInfo of a PEM certificate, or undefined when it does not parse. */
const publicKeyOf = (pem: string): Buffer | undefined => {
  try {
    return new X509Certificate(pem).publicKey.export({ type: "spki", format: "der" })
  } catch {
    return undefined
  }
}

/** The suffix a name falls under, or undefined: `*.a.example.com` counts as `a.example.com`. */
export const permittedSuffix = (hostname: string, suffixes: ReadonlyArray<string>): string | undefined => {
  const name = hostname.toLowerCase().replace(/^\*\./, "")
  return suffixes.find((s) => Pki.dnsWithin(name, s))
}

export const make = (dataDir: string, options: LocalCaOptions): Effect.Effect<CertIssuer, CertError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    // Like existsSync: a file that cannot be looked at counts as missing.
    const exists = (path: string) => Effect.orElseSucceed(fs.exists(path), () => false)
    const external = options.caDir !== undefined
    const caDir = external ? resolve(options.caDir!) : join(dataDir, "ca")
    const certDir = join(dataDir, "certs")
    const name = `local CA in ${caDir}`
    const startError = (reason: string) => new CertError({ issuer: name, hostname: "(any)", reason })
    const allowedDomains = options.allowedDomains ?? Effect.succeed([])
    const initRoutesHint = `\`mcp ca init-routes <dir> --internal-zone ${options.internalZone} --domain <each allowed domain>\``
    if (external) {
      // Checked now: an operator who names a CA wants to hear at start that it is not there.
      for (const file of [Pki.CA_KEY_FILE, Pki.CA_CERT_FILE]) {
        if (!(yield* exists(join(caDir, file)))) {
          return yield* startError(`[certs] ca_dir has no ${file}; create a routes CA with ${initRoutesHint}, or leave ca_dir out to use a CA in the data dir`)
        }
      }
      const caPem = yield* Effect.mapError(Pki.readCa(caDir), (e) => startError(e.message))
      if (options.platformCaFile !== undefined) {
        const platformFile = resolve(options.platformCaFile)
        const platformPem = yield* fs.readFileString(platformFile).pipe(
          Effect.mapError((e) => startError(`cannot read the platform CA ${platformFile} ([tls] ca) to compare it with [certs] ca_dir (${e.message}); check the path`))
        )
        // Compared by public key: a re-signed copy of the platform CA is still the platform CA.
        const caKey = publicKeyOf(caPem)
        if (caKey !== undefined && pemBlocks(platformPem).some((pem) => publicKeyOf(pem)?.equals(caKey) === true)) {
          return yield* startError(
            `[certs] ca_dir ${caDir} holds the platform CA ([tls] ca ${platformFile}), which the CLI and every daemon trust: ` +
              `a route certificate from it could impersonate the master. Create a separate routes CA with ${initRoutesHint}, ` +
              `set [certs] ca_dir to it and the proxies' backend_ca to its ca.crt`
          )
        }
      }
      const constraints = yield* Effect.mapError(Pki.readCaConstraints(caDir), (e) => startError(e.message))
      if (constraints === undefined) {
        // Not refused: the issuer's own name check still holds; but a leaked key could sign anything.
        yield* Effect.logWarning(`[certs] ca_dir ${caDir} holds a CA without name constraints; replace it with a routes CA made by ${initRoutesHint}`)
      }
    }
    // The key is checked whenever it exists at start; one created here is written 0600 by Pki.initCa.
    yield* SecretKeyFile.check(join(caDir, Pki.CA_KEY_FILE), external ? "routes CA private key ([certs] ca_dir)" : "local CA private key").pipe(
      Effect.mapError((e) => startError(e.message))
    )
    const lock = yield* Effect.makeSemaphore(1)
    // The CA made here is not name-constrained: the allowed domains change at run time and its
    // constraints could not follow; only this agent's proxies and edges trust it, and the name check
    // below runs before every signature.
    const ensureCa = Effect.gen(function* () {
      if (external || (yield* exists(join(caDir, Pki.CA_KEY_FILE)))) return
      yield* Pki.initCa(caDir, { commonName: "MCP agent local CA" })
    })
    const checkName = (hostname: string) =>
      Effect.gen(function* () {
        const suffixes = [options.internalZone, ...(yield* allowedDomains)]
        if (permittedSuffix(hostname, suffixes) !== undefined) return
        const domains = suffixes.slice(1)
        return yield* new CertError({
          issuer: name,
          hostname,
          reason:
            `"${hostname}" is neither under the internal zone "${options.internalZone}" nor under an allowed domain ` +
            `(${domains.length === 0 ? "none allowed" : domains.map((d) => `"${d}"`).join(", ")}); ` +
            `use a name under one of them, or add its domain to [certs] allowed_domains in mcp-agent.toml`
        })
      })
    return {
      name,
      issue: (hostname) =>
        Effect.zipRight(
          checkName(hostname),
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
          )
        ),
      revoke: (cert) =>
        Effect.all([fs.remove(cert.certPath, { force: true }), fs.remove(cert.keyPath, { force: true })], { concurrency: 2, discard: true }).pipe(
          Effect.mapError((e) => new CertError({ issuer: name, hostname: cert.hostname, reason: `cannot delete certificate files: ${e.description ?? e.message}` }))
        )
    } satisfies CertIssuer
  })

export const layer = (dataDir: string, options: LocalCaOptions) => Layer.effect(CertIssuer, make(dataDir, options))

/** The issuer with its allowed domains read from RouteDomains, which the agent replaces at run time. */
export const layerWithRouteDomains = (dataDir: string, options: Omit<LocalCaOptions, "allowedDomains">) =>
  Layer.effect(CertIssuer, Effect.flatMap(RouteDomains, (domains) => make(dataDir, { ...options, allowedDomains: domains.get })))
