/**
 * The CertIssuer port: TLS certificates for route hostnames. Real layers (local CA, ACME) come
 * with the integrations; `layerMemory` issues fake certificates for tests of the saga.
 */
import { Context, Data, Effect, Layer, Ref, Schema } from "effect"
import { type Faults, noFaults } from "../Faults.js"

/** A certificate's files and validity; the registry and the deploy journal keep it as this schema encodes it. */
export const IssuedCertificate = Schema.Struct({
  hostname: Schema.String,
  certPath: Schema.String,
  keyPath: Schema.String,
  serial: Schema.String,
  notAfter: Schema.String
})
export interface IssuedCertificate extends Schema.Schema.Type<typeof IssuedCertificate> {}

export class CertError extends Data.TaggedError("CertError")<{
  readonly issuer: string
  readonly hostname: string
  readonly reason: string
}> {
  override get message() {
    return `${this.issuer} could not issue a certificate for ${this.hostname}: ${this.reason}`
  }
}

export interface CertIssuer {
  readonly name: string
  readonly issue: (hostname: string) => Effect.Effect<IssuedCertificate, CertError>
  /** Deletes the certificate's files; deleting a missing one succeeds. */
  readonly revoke: (cert: IssuedCertificate) => Effect.Effect<void, CertError>
}

export const CertIssuer = Context.GenericTag<CertIssuer>("@mcp/agent/CertIssuer")

/** A certificate is reused while it has more than this left. */
export const REUSE_MARGIN_MS = 30 * 24 * 3600 * 1000

export const makeMemory = (options: { readonly faults?: Faults } = {}) =>
  Effect.gen(function* () {
    const live = yield* Ref.make(new Map<string, IssuedCertificate>())
    const counter = yield* Ref.make(0)
    const faults = options.faults ?? noFaults
    const issuer: CertIssuer & { readonly live: Effect.Effect<ReadonlyArray<IssuedCertificate>> } = {
      name: "memory CA",
      issue: (hostname) =>
        Effect.gen(function* () {
          if (yield* faults.take("cert.issue")) return yield* new CertError({ issuer: "memory CA", hostname, reason: "injected fault" })
          const n = yield* Ref.updateAndGet(counter, (c) => c + 1)
          const cert: IssuedCertificate = {
            hostname,
            certPath: `/memory/certs/${hostname}.${n}.crt`,
            keyPath: `/memory/certs/${hostname}.${n}.key`,
            serial: n.toString(16).padStart(8, "0"),
            notAfter: new Date(Date.now() + 90 * 24 * 3600 * 1000).toISOString()
          }
          yield* Ref.update(live, (m) => new Map(m).set(cert.serial, cert))
          return cert
        }),
      revoke: (cert) =>
        Effect.gen(function* () {
          if (yield* faults.take("cert.revoke")) return yield* new CertError({ issuer: "memory CA", hostname: cert.hostname, reason: "injected fault" })
          yield* Ref.update(live, (m) => {
            const next = new Map(m)
            next.delete(cert.serial)
            return next
          })
        }),
      live: Effect.map(Ref.get(live), (m) => [...m.values()])
    }
    return issuer
  })

export const layerMemory = (options: { readonly faults?: Faults } = {}) => Layer.effect(CertIssuer, makeMemory(options))
