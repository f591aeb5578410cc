/**
 * Routes in a node's TLS proxy (internal and manual ones) and public edge routes, as the
 * agents and the master report them.
 */
import { Schema } from "effect"
import { Hostname } from "./Hostname.js"
import { RouteMode } from "./RouteMode.js"

/** Far above a real chain (a leaf and two intermediates are ~6 KB); bounds what one request makes the agent write. */
export const MAX_PEM_LENGTH = 64 * 1024

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----/
const PEM_PRIVATE_KEY = /^\s*-----BEGIN ((RSA|EC) )?PRIVATE KEY-----[A-Za-z0-9+/=\s]+-----END ((RSA|EC) )?PRIVATE KEY-----\s*$/

/** One or more PEM certificates (a leaf, then its chain), and nothing but them. */
export const PemCertificates = Schema.String.pipe(
  Schema.maxLength(MAX_PEM_LENGTH, { message: () => `must be at most ${MAX_PEM_LENGTH} characters of PEM; send the leaf certificate and its chain only` }),
  Schema.filter((text) => {
    const rest = text.replace(new RegExp(PEM_CERTIFICATE.source, "g"), "").trim()
    return PEM_CERTIFICATE.test(text) && rest === ""
      ? true
      : `must be PEM certificates ("-----BEGIN CERTIFICATE-----" blocks, leaf first) and nothing else; send the certificate file's content`
  })
)

/** One unencrypted PEM private key (PKCS#8, or PKCS#1 / SEC1): the proxy cannot ask for a passphrase. */
export const PemPrivateKey = Schema.String.pipe(
  Schema.maxLength(MAX_PEM_LENGTH, { message: () => `must be at most ${MAX_PEM_LENGTH} characters of PEM` }),
  Schema.filter((text) =>
    PEM_PRIVATE_KEY.test(text)
      ? true
      : `must be one unencrypted PEM private key ("-----BEGIN PRIVATE KEY-----"); send the key file's content, decrypted (openssl pkey -in <file>)`
  )
)

export const ProxyRoute = Schema.Struct({
  listener: Schema.Int.pipe(Schema.between(1, 65535)),
  hostname: Hostname,
  /** `host:port` the proxy forwards to. */
  backend: Schema.String.pipe(Schema.pattern(/^[^\s:]+:[0-9]{1,5}$/, { message: () => `backend must be "host:port", e.g. "127.0.0.1:8080"` })),
  mode: RouteMode,
  backendTls: Schema.Boolean,
  /**
   * L7 only: the certificate served for the hostname, as files on the agent's node. In a
   * ProxyRoutesAdd request the agent takes only names (or paths) inside its own certificate
   * directory (`<data_dir>/certs`); anything else is sent as PEM below.
   */
  tlsCert: Schema.optional(Schema.String),
  tlsKey: Schema.optional(Schema.String),
  /**
   * ProxyRoutesAdd only: the certificate (full chain) and its private key as PEM text, which the
   * agent checks and writes 0600 into its certificate directory. Never present in a listing.
   */
  tlsCertPem: Schema.optional(PemCertificates),
  /** Redacted: a route is printed in errors and logs, its private key must never be. */
  tlsKeyPem: Schema.optional(Schema.Redacted(PemPrivateKey)),
  /** The service that owns the route, or absent for a manual route. */
  service: Schema.optional(Schema.String)
})
export type ProxyRoute = typeof ProxyRoute.Type

export const EdgeRoute = Schema.Struct({
  hostname: Hostname,
  edgeNode: Schema.String,
  workerNode: Schema.String,
  /** The worker's internal hostname and proxy listener the edge forwards to. */
  backendHostname: Schema.String,
  backendPort: Schema.Int,
  service: Schema.String,
  certSerial: Schema.String,
  certNotAfter: Schema.String
})
export type EdgeRoute = typeof EdgeRoute.Type

export const DnsCheckResult = Schema.Struct({
  hostname: Schema.String,
  edgeNode: Schema.String,
  ok: Schema.Boolean,
  resolvesTo: Schema.Array(Schema.String),
  problem: Schema.optional(Schema.String),
  fix: Schema.optional(Schema.String)
})
