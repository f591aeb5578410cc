/**
 * The ACME CertIssuer (Let's Encrypt, pebble, any RFC 8555 CA): keeps one account key in the data
 * dir and answers http-01 from a short-lived HTTP server or dns-01 through a `Dns01Solver`.
 */
import { type Error as PlatformError, FileSystem, HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import * as acme from "acme-client"
import { Failures } from "@mcp/rpc"
import { Duration, Effect, Layer, Runtime, type Scope } from "effect"
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto"
import * as http from "node:http"
import type * as https from "node:https"
import { join } from "node:path"
import { CertError, CertIssuer, type IssuedCertificate } from "./CertIssuer.js"
import * as SecretKeyFile from "./SecretKeyFile.js"

/** Sets and clears the TXT record a dns-01 challenge asks for; the agent adapts its DNS port to this. */
export interface Dns01Solver {
  /** Adds `value` to the TXT records of `name` (e.g. `_acme-challenge.app.example.com`, no trailing dot). */
  readonly set: (name: string, value: string) => Effect.Effect<void, string>
  /** Removes what `set` added; clearing a missing record succeeds. */
  readonly clear: (name: string) => Effect.Effect<void, string>
}

export type AcmeChallenge =
  | {
    readonly kind: "http-01"
    /** Where the issuer listens while a challenge is open; the CA connects to port 80 of the name. */
    readonly serve: { readonly port: number; readonly host?: string }
  }
  | { readonly kind: "dns-01"; readonly solver: Dns01Solver }

export interface AcmeIssuerOptions {
  readonly directoryUrl: string
  /** The account key lives at `<dataDir>/acme/account.key`, certificates under `<dataDir>/certs`. */
  readonly dataDir: string
  readonly email?: string
  readonly challenge: AcmeChallenge
  /** PEM to trust for the ACME server's own TLS (e.g. pebble's); the system roots otherwise. */
  readonly caBundle?: string
  /** Bound on one issuance, account to certificate; default 3 minutes. */
  readonly timeout?: Duration.DurationInput
}

const DEFAULT_TIMEOUT = Duration.minutes(3)
// The directory probe fails fast when the server is down, before acme-client's own retries
// (5 attempts, 5 to 25 s apart on connection errors) could use up the whole timeout.
const PROBE_TIMEOUT_MS = 10_000
// Status polling: starts quick (pebble answers in milliseconds) and backs off to 10 s (polite for
// Let's Encrypt); about 75 s in all before acme-client gives up on a pending item.
const POLL = { backoffAttempts: 12, backoffMin: 500, backoffMax: 10_000 } as const

// A DNS name, optionally with one leading wildcard label (dns-01 only).
const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/

/** The error a solver or the challenge server raised inside acme-client, carried out unchanged. */
class ChallengeSetupError extends Error {}

/** The CA looked at a challenge and found it wanting. */
class ChallengeFailedError extends Error {
  constructor(readonly challengeType: string, readonly identifier: string, readonly detail: string) {
    super(detail)
  }
}

export const make = (options: AcmeIssuerOptions): Effect.Effect<CertIssuer, never, HttpClient.HttpClient | FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const name = `ACME (${options.directoryUrl})`
    const keyPath = accountKeyPath(options.dataDir)
    const certDir = join(options.dataDir, "certs")
    const timeout = Duration.decode(options.timeout ?? DEFAULT_TIMEOUT)
    // One issuance at a time: http-01 owns one port, and the CA's rate limits favour a queue anyway.
    const lock = yield* Effect.makeSemaphore(1)
    const platform = yield* Effect.context<HttpClient.HttpClient | FileSystem.FileSystem>()
    const fs = yield* FileSystem.FileSystem

    const issue = (hostname: string): Effect.Effect<IssuedCertificate, CertError> => {
      const fail = (reason: string) => new CertError({ issuer: name, hostname, reason })
      return Effect.gen(function*() {
        const directory = yield* parseDirectoryUrl(options.directoryUrl, fail)
        yield* validateHostname(hostname, options.challenge.kind, fail)
        const accountKey = yield* ensureAccountKey(keyPath, fail)
        yield* probeDirectory(yield* trustedClient(directory.origin, options.caBundle), options.directoryUrl, fail)

        const leafKey = yield* Effect.tryPromise({
          try: () => acme.crypto.createPrivateEcdsaKey("P-256"),
          catch: () => fail("could not generate the certificate key; this is a bug, please report it")
        })
        const [, csr] = yield* Effect.tryPromise({
          try: () => acme.crypto.createCsr({ commonName: hostname, altNames: [hostname] }, leafKey),
          catch: () => fail("could not create the certificate signing request; this is a bug, please report it")
        })

        const hooks = yield* challengeHooks(options.challenge, hostname, fail)
        // A client per issuance: it registers (or finds) the account each time, so a CA that lost
        // its state (pebble restarts, a new staging environment) costs one request, not an error.
        const client = new acme.Client({ directoryUrl: options.directoryUrl, accountKey, ...POLL })
        adaptClient(client, hostname)
        const chainPem = yield* Effect.tryPromise({
          try: () =>
            client.auto({
              csr,
              // Configuring an ACME directory is the operator's agreement to its terms.
              termsOfServiceAgreed: true,
              ...(options.email !== undefined ? { email: options.email } : {}),
              challengePriority: [options.challenge.kind],
              // acme-client's self-check would resolve the name and fetch/lookup it from this host,
              // which proves nothing about what the CA sees; the CA's own verdict is reported instead.
              skipChallengeVerification: true,
              challengeCreateFn: hooks.create,
              challengeRemoveFn: hooks.remove
            }),
          catch: (e) => fail(explainAcmeFailure(e, options, hostname))
        })

        const written = yield* writeCertificate(certDir, hostname, chainPem, leafKey, fail)
        yield* Effect.logInfo("ACME certificate issued").pipe(
          Effect.annotateLogs({ hostname, serial: written.serial, notAfter: written.notAfter, certPath: written.certPath })
        )
        return written
      }).pipe(
        Effect.scoped,
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () =>
            fail(
              `the ACME server at ${options.directoryUrl} did not finish the order within ${Duration.format(timeout)}; ` +
                `check that it is reachable and that it can validate the ${options.challenge.kind} challenge`
            )
        }),
        lock.withPermits(1),
        Effect.provide(platform)
      )
    }

    return {
      name,
      issue,
      // Deleting the files is what the port promises; an ACME revocation is not needed for a
      // certificate that is merely replaced, and would need the CA to be reachable.
      revoke: (cert) =>
        Effect.all([fs.remove(cert.certPath, { force: true }), fs.remove(cert.keyPath, { force: true })], { concurrency: 2, discard: true }).pipe(
          Effect.mapError((e) =>
            new CertError({
              issuer: name,
              hostname: cert.hostname,
              reason: `cannot delete ${cert.certPath} or ${cert.keyPath} (${fileErrorCode(e)}); check the permissions of ${certDir}`
            })
          )
        )
    } satisfies CertIssuer
  })

/** The account key's path in a data dir. */
export const accountKeyPath = (dataDir: string): string => join(dataDir, "acme", "account.key")

/**
 * Refuses an account key readable by others or owned by another user, with the chmod/chown fix.
 * A missing key passes: the first issue creates it 0600 in a 0700 directory.
 */
export const checkAccountKey = (dataDir: string): Effect.Effect<void, CertError, FileSystem.FileSystem> =>
  SecretKeyFile.check(accountKeyPath(dataDir), "ACME account key").pipe(
    Effect.mapError((e) => new CertError({ issuer: "ACME", hostname: "(any)", reason: e.message }))
  )

/** The issuer, after the account key check: a too-open key fails the agent's start. */
export const layer = (options: AcmeIssuerOptions) => Layer.effect(CertIssuer, Effect.zipRight(checkAccountKey(options.dataDir), make(options)))

// ---------------------------------------------------------------------------------------------

type Fail = (reason: string) => CertError

const errorCode = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined

/** A failed file call's errno code ("EACCES"), as operators know it; the platform's words when it has none. */
const fileErrorCode = (e: PlatformError.PlatformError): string => errorCode(e.cause) ?? e.message

const isSystemError = (e: PlatformError.PlatformError, reason: PlatformError.SystemErrorReason): boolean =>
  e._tag === "SystemError" && e.reason === reason

const parseDirectoryUrl = (url: string, fail: Fail): Effect.Effect<URL, CertError> =>
  Effect.try({
    try: () => {
      const parsed = new URL(url)
      if (parsed.protocol !== "https:" && parsed.protocol !== "http:") throw new Error("not http(s)")
      return parsed
    },
    catch: () => fail(`directoryUrl ${JSON.stringify(url)} is not an http(s) URL; set it to the CA's ACME directory`)
  })

const validateHostname = (hostname: string, kind: AcmeChallenge["kind"], fail: Fail): Effect.Effect<void, CertError> => {
  if (!DNS_NAME.test(hostname) || hostname.length > 253) {
    return Effect.fail(fail(`${JSON.stringify(hostname)} is not a DNS name with at least two labels; fix the route's hostname`))
  }
  if (hostname.startsWith("*.") && kind !== "dns-01") {
    return Effect.fail(fail(`a wildcard name can only be validated with dns-01, and this issuer uses ${kind}`))
  }
  return Effect.void
}

const TLS_TRUST_CODES = new Set([
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "CERT_HAS_EXPIRED",
  "ERR_TLS_CERT_ALTNAME_INVALID"
])

/** Why a request to the ACME server failed, in words an operator can act on. */
const transportReason = (url: string, e: unknown): string | undefined => {
  const code = errorCode(e)
  if (code === undefined) return undefined
  if (TLS_TRUST_CODES.has(code)) {
    return `the ACME server at ${url} presented a TLS certificate this host does not trust (${code}); ` +
      `pass the CA that signed it as caBundle, or fix directoryUrl`
  }
  if (["ECONNREFUSED", "ECONNRESET", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNABORTED", "EPIPE"].includes(code)) {
    return unreachable(url, code)
  }
  return undefined
}

const unreachable = (url: string, code: string): string =>
  `the ACME server at ${url} is not reachable (${code}); check directoryUrl and that the server is up`

/**
 * Make acme-client trust `agent`'s CA for this issuer's origin only. acme-client shares one axios
 * instance per process and has no per-client agent option; an interceptor keyed on the origin keeps
 * the CA from widening trust for any other ACME server. Removed when the issuance ends.
 */
const trustForOrigin = (origin: string, agent: https.Agent): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() =>
      acme.axios.interceptors.request.use((config) => {
        if (config.url !== undefined && URL.canParse(config.url) && new URL(config.url).origin === origin) {
          config.httpsAgent = agent
        }
        return config
      })
    ),
    (id) => Effect.sync(() => acme.axios.interceptors.request.eject(id))
  )

/**
 * The client this issuance asks the ACME server with, trusting what acme-client trusts: with a
 * `caBundle`, one agent (closed when the issuance ends) serves both; without, the platform's
 * client and acme-client's default both use the system roots.
 */
const trustedClient = (
  origin: string,
  caBundle: string | undefined
): Effect.Effect<HttpClient.HttpClient, never, HttpClient.HttpClient | Scope.Scope> =>
  caBundle === undefined
    ? HttpClient.HttpClient
    : Effect.gen(function*() {
      const agent = yield* NodeHttpClient.makeAgent({ ca: caBundle })
      yield* trustForOrigin(origin, agent.https)
      return yield* Effect.provideService(NodeHttpClient.make, NodeHttpClient.HttpAgent, agent)
    })

/** One GET of the directory with a short timeout, so a dead or untrusted server fails at once. */
const probeDirectory = (client: HttpClient.HttpClient, url: string, fail: Fail): Effect.Effect<void, CertError> =>
  HttpClient.withScope(client).get(url).pipe(
    Effect.mapError((e) =>
      fail(
        transportReason(url, e.cause) ??
          `the ACME server at ${url} could not be asked for its directory: ${e.cause instanceof Error ? e.cause.message : e.message}`
      )
    ),
    Effect.timeoutFail({ duration: Duration.millis(PROBE_TIMEOUT_MS), onTimeout: () => fail(unreachable(url, "ETIMEDOUT")) }),
    Effect.flatMap((res) =>
      res.status === 200
        ? Effect.void
        : Effect.fail(fail(`the ACME server at ${url} answered HTTP ${res.status} for its directory; check directoryUrl`))
    ),
    // The body is not needed: the request ends with the status.
    Effect.scoped
  )

/** Reads the account key, or creates it (ECDSA P-256, 0600) on first use. Never logs or echoes it. */
const ensureAccountKey = (keyPath: string, fail: Fail): Effect.Effect<string, CertError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const existing = yield* fs.readFileString(keyPath).pipe(
      Effect.map((text): string | undefined => text),
      Effect.catchAll((e) =>
        isSystemError(e, "NotFound")
          ? Effect.succeed(undefined)
          : Effect.fail(fail(`cannot read the ACME account key ${keyPath} (${fileErrorCode(e)}); check its permissions`))
      )
    )
    if (existing !== undefined) {
      // Checked again at each use: a key opened up since the start is not used.
      yield* SecretKeyFile.check(keyPath, "ACME account key").pipe(Effect.mapError((e) => fail(e.message)))
      // No cause kept: a parse error could quote the key.
      yield* Effect.try({
        try: () => createPrivateKey(existing),
        catch: () => fail(`${keyPath} is not a PEM private key; restore it, or delete it to register a new ACME account`)
      })
      return existing
    }
    const key = (yield* Effect.tryPromise({
      try: () => acme.crypto.createPrivateEcdsaKey("P-256"),
      catch: () => fail("could not generate the ACME account key; this is a bug, please report it")
    })).toString("utf8")
    const dir = join(keyPath, "..")
    yield* fs.makeDirectory(dir, { recursive: true, mode: 0o700 }).pipe(
      // "wx": never replace an account key, even one written since the read above.
      Effect.zipRight(fs.writeFileString(keyPath, key, { mode: 0o600, flag: "wx" })),
      Effect.catchAll((e) =>
        isSystemError(e, "AlreadyExists")
          ? Effect.void
          : Effect.fail(fail(`cannot write the ACME account key ${keyPath} (${fileErrorCode(e)}); check that ${dir} is writable`))
      )
    )
    return yield* fs.readFileString(keyPath).pipe(
      Effect.mapError((e) => fail(`cannot read the ACME account key ${keyPath} (${fileErrorCode(e)}); check its permissions`))
    )
  })

interface ChallengeHooks {
  readonly create: (authz: acme.Authorization, challenge: { type: string; token: string }, keyAuthorization: string) => Promise<void>
  readonly remove: (authz: acme.Authorization, challenge: { type: string; token: string }, keyAuthorization: string) => Promise<void>
}

/**
 * The callbacks acme-client calls per authorization. Whatever they set up is also undone when the
 * issuance's scope closes, so a timeout or interruption leaves no server or TXT record behind.
 */
const challengeHooks = (
  challenge: AcmeChallenge,
  hostname: string,
  fail: Fail
): Effect.Effect<ChallengeHooks, CertError, Scope.Scope> =>
  Effect.gen(function*() {
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromise(runtime)
    const offered = (type: string) => {
      if (type !== challenge.kind) {
        throw new ChallengeSetupError(`the ACME server offered no ${challenge.kind} challenge for ${hostname} (it offered ${type}); choose another challenge kind`)
      }
    }

    if (challenge.kind === "http-01") {
      const tokens = yield* startChallengeServer(challenge.serve, fail)
      return {
        create: async (_authz, c, keyAuthorization) => {
          offered(c.type)
          tokens.set(c.token, keyAuthorization)
        },
        remove: async (_authz, c) => {
          tokens.delete(c.token)
        }
      }
    }

    const solver = challenge.solver
    const open = new Set<string>()
    const clear = (record: string) =>
      solver.clear(record).pipe(
        Effect.tap(() => Effect.sync(() => open.delete(record))),
        // acme-client ignores a failing remove callback; say so here instead.
        Effect.catchAll((reason) =>
          Effect.logWarning(`could not clear the dns-01 TXT record ${record}; remove it by hand`).pipe(Effect.annotateLogs({ reason }))
        )
      )
    yield* Effect.addFinalizer(() => Effect.forEach([...open], clear, { discard: true }))
    return {
      create: async (authz, c, keyAuthorization) => {
        offered(c.type)
        const record = `_acme-challenge.${authz.identifier.value.replace(/^\*\./, "")}`
        const result = await run(Effect.either(solver.set(record, keyAuthorization)))
        if (result._tag === "Left") throw new ChallengeSetupError(`the DNS solver could not set the TXT record ${record}: ${result.left}`)
        open.add(record)
      },
      remove: async (authz) => {
        await run(clear(`_acme-challenge.${authz.identifier.value.replace(/^\*\./, "")}`))
      }
    }
  })

/** Serves `/.well-known/acme-challenge/<token>` while the issuance's scope is open. */
const startChallengeServer = (
  serve: { readonly port: number; readonly host?: string },
  fail: Fail
): Effect.Effect<Map<string, string>, CertError, Scope.Scope> => {
  const tokens = new Map<string, string>()
  const prefix = "/.well-known/acme-challenge/"
  const where = `${serve.host ?? "*"}:${serve.port}`
  return Effect.acquireRelease(
    Effect.async<http.Server, CertError>((resume) => {
      const server = http.createServer((req, res) => {
        const token = req.method === "GET" && req.url?.startsWith(prefix) ? req.url.slice(prefix.length) : undefined
        const answer = token !== undefined ? tokens.get(token) : undefined
        if (answer === undefined) {
          res.writeHead(404, { "content-type": "text/plain" }).end("not found\n")
        } else {
          res.writeHead(200, { "content-type": "text/plain" }).end(answer)
        }
      })
      server.once("error", (e) =>
        resume(Effect.fail(fail(
          `cannot listen on ${where} to answer http-01 challenges (${errorCode(e) ?? e.message}); ` +
            `free the port or set challenge.serve.port to one the CA's port 80 reaches`
        )))
      )
      server.listen({ port: serve.port, ...(serve.host !== undefined ? { host: serve.host } : {}) }, () => resume(Effect.succeed(server)))
    }),
    (server) =>
      Effect.async<void>((resume) => {
        server.close(() => resume(Effect.void))
        server.closeAllConnections()
      })
  ).pipe(Effect.as(tokens))
}

/** Turns what acme-client threw into a reason naming the step and what to check. */
const explainAcmeFailure = (e: unknown, options: AcmeIssuerOptions, hostname: string): string => {
  if (e instanceof ChallengeSetupError) return e.message
  if (e instanceof ChallengeFailedError) {
    const how = options.challenge.kind === "http-01"
      ? `check that http://${e.identifier}/.well-known/acme-challenge/ reaches port ${options.challenge.serve.port} on this host`
      : `check that the zone's authoritative DNS serves _acme-challenge.${e.identifier.replace(/^\*\./, "")} TXT`
    return `the ACME server could not validate the ${e.challengeType} challenge for ${e.identifier}: ${e.detail}; ${how}`
  }
  const transport = transportReason(options.directoryUrl, e)
  if (transport !== undefined) return transport
  const detail = e instanceof Error ? e.message : String(e)
  return `the ACME server at ${options.directoryUrl} refused the order for ${hostname}: ${detail}`
}

/**
 * Two changes to one client instance (never to acme-client's prototype), both for auto():
 * - When the account already exists, auto() re-sends `{termsOfServiceAgreed}` as an account update;
 *   pebble rejects an update that changes nothing ("Use POST-as-GET ..."), so only a contact is
 *   sent, and otherwise the update becomes the POST-as-GET it means.
 * - A challenge's failed validation is marked, since that is the one failure fixed on this side.
 */
const adaptClient = (client: acme.Client, hostname: string): void => {
  const update = client.updateAccount.bind(client)
  client.updateAccount = (data) => update(data?.contact !== undefined ? { contact: data.contact } : {})
  const wait = client.waitForValidStatus.bind(client)
  client.waitForValidStatus = async <T>(item: T): Promise<T> => {
    try {
      return await wait(item)
    } catch (e) {
      if (typeof item === "object" && item !== null && "type" in item && "token" in item && typeof item.type === "string") {
        // Each order here names one host, so the challenge is for it.
        throw new ChallengeFailedError(item.type, hostname, e instanceof Error ? e.message : String(e))
      }
      throw e
    }
  }
}

/** Writes `<host>-<stamp>.crt` (chain as returned) and `.key`, both 0600, and reads serial and expiry. */
const writeCertificate = (
  certDir: string,
  hostname: string,
  chainPem: string,
  keyPem: Buffer,
  fail: Fail
): Effect.Effect<IssuedCertificate, CertError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const chain = acme.crypto.splitPemChain(chainPem)
    const leaf = yield* Effect.try({
      try: () => new X509Certificate(chain[0] ?? ""),
      catch: () => fail("the ACME server returned no readable certificate; retry, or report it to the CA")
    })
    if (leaf.checkHost(hostname) === undefined) {
      return yield* fail(`the ACME server returned a certificate that does not name ${hostname} (${leaf.subjectAltName ?? leaf.subject})`)
    }
    if (!leaf.checkPrivateKey(createPrivateKey(keyPem))) {
      return yield* fail("the ACME server returned a certificate for another key; retry, or report it to the CA")
    }
    // A fresh pair of names per issue: a reissue never overwrites what a live route serves.
    const base = join(certDir, `${hostname.replace(/^\*\./, "_wildcard.").slice(0, 50)}-${Date.now().toString(36)}${randomBytes(3).toString("hex")}`)
    const certPath = `${base}.crt`
    const keyPath = `${base}.key`
    yield* fs.makeDirectory(certDir, { recursive: true, mode: 0o700 }).pipe(
      Effect.zipRight(writePrivate(keyPath, keyPem)),
      Effect.zipRight(
        writePrivate(certPath, Buffer.from(chain.map((pem) => `${pem.trim()}\n`).join(""))).pipe(
          Effect.tapError(() => Failures.bestEffort(`remove ${keyPath} after a failed certificate write`)(fs.remove(keyPath, { force: true })))
        )
      ),
      Effect.mapError((e) => fail(`cannot write the certificate under ${certDir} (${fileErrorCode(e)}); check that it is writable`))
    )
    return {
      hostname,
      certPath,
      keyPath,
      serial: leaf.serialNumber.toUpperCase(),
      notAfter: new Date(leaf.validTo).toISOString()
    }
  })

// Written to a temp name created with the mode, then renamed: a reader never sees half a key.
const writePrivate = (target: string, data: Uint8Array): Effect.Effect<void, PlatformError.PlatformError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => {
    const temp = `${target}.${randomBytes(6).toString("hex")}.tmp`
    return fs.writeFile(temp, data, { mode: 0o600, flag: "wx" }).pipe(
      Effect.zipRight(fs.rename(temp, target)),
      Effect.tapError(() => Failures.bestEffort(`remove the temporary file ${temp}`)(fs.remove(temp, { force: true })))
    )
  })
