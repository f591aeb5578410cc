/**
 * Revoking (deleting) route certificates the registry stops recording: those of hostnames a
 * committed deploy no longer serves or served with a certificate it replaced, and the one a
 * renewal replaced. It rolls forward like stop/start/undeploy: the journal entry ("revoke", one
 * step naming the certificates) is written in the transaction that forgets them, so the rows go
 * only once the new version is live, and an agent that dies before the files are deleted deletes
 * them at its next start (StartupRecovery). A certificate a registry row serves again by then is
 * kept.
 */
import { Effect, Either, Option, Schema } from "effect"
import { randomUUID } from "node:crypto"
import { CertIssuer, IssuedCertificate } from "../certs/CertIssuer.js"
import { type CertificateRow, Registry } from "../registry/Registry.js"
import { Saga } from "@mcp/rpc"
import * as ServiceEvents from "./ServiceEvents.js"
import { describe } from "./StepErrors.js"

const STEP = "revoke"
const Intent = Schema.Struct({ certificates: Schema.Array(IssuedCertificate) })

export const toIssued = (c: CertificateRow): IssuedCertificate => ({
  hostname: c.hostname,
  certPath: c.certPath,
  keyPath: c.keyPath,
  serial: c.serial,
  notAfter: c.notAfter
})

/**
 * Journals that `certificates` are to be revoked, as a "revoke" saga of `service`; its id, or
 * none when there is nothing to revoke. Run it in the transaction that forgets them.
 */
export const record = (service: string, certificates: ReadonlyArray<IssuedCertificate>) =>
  Effect.gen(function* () {
    if (certificates.length === 0) return Option.none<string>()
    const registry = yield* Registry
    const id = randomUUID()
    yield* registry.beginSaga(id, service, "revoke")
    yield* registry.journal(id, STEP, "started", Schema.encodeSync(Intent)({ certificates }))
    return Option.some(id)
  })

/**
 * At a deploy's commit, before the served certificates are written: forgets the certificates of
 * `service` for hostnames the new version does not serve, and journals their revoking together
 * with that of every recorded certificate `served` replaces with another (a reissue). Run it in
 * the commit's transaction.
 */
export const recordUnserved = (service: string, served: ReadonlyMap<string, { readonly serial: string }>) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const gone = (yield* registry.certificates).filter((c) => {
      const next = served.get(c.hostname)
      return next === undefined ? c.service === service : next.serial !== c.serial
    })
    for (const c of gone) if (!served.has(c.hostname)) yield* registry.deleteCertificate(c.hostname)
    return yield* record(service, gone.map(toIssued))
  })

/**
 * Revokes those of `certificates` that no registry row serves (by serial or by file): a journal
 * read long after it was written must not take a certificate in use since. Idempotent.
 */
export const revokeUnserved = (certificates: ReadonlyArray<IssuedCertificate>) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const certs = yield* CertIssuer
    const rows = yield* registry.certificates
    const serials = new Set(rows.map((c) => c.serial))
    const paths = new Set(rows.flatMap((c) => [c.certPath, c.keyPath]))
    for (const c of certificates) {
      if (serials.has(c.serial) || paths.has(c.certPath) || paths.has(c.keyPath)) continue
      yield* certs.revoke(c)
    }
  })

/** Revokes the saga's certificates that no registry row serves, then ends it. Idempotent. */
export const finish = (sagaId: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const started = (yield* registry.sagaSteps(sagaId)).find((r) => r.step === STEP && r.phase === "started")
    const { certificates } = started === undefined ? { certificates: [] } : yield* Schema.decodeUnknown(Intent)(started.data)
    yield* revokeUnserved(certificates)
    yield* registry.endSaga(sagaId, "committed")
  })

/**
 * After the commit that journaled it: revokes at once, with the compensations' retries. A revoke
 * that keeps failing is logged and recorded and the saga stays open for the next start; what was
 * committed stands.
 */
export const finishAfterCommit = (service: string, sagaId: Option.Option<string>) =>
  Effect.gen(function* () {
    if (Option.isNone(sagaId)) return
    const retry = yield* Saga.CompensationRetry
    const outcome = yield* Effect.either(Effect.retry(finish(sagaId.value), retry))
    if (Either.isLeft(outcome)) {
      const reason = describe(outcome.left)
      yield* Effect.logWarning(`revoking the certificates ${service} no longer serves failed; retried every 10 s and at the next agent start`).pipe(Effect.annotateLogs({ service, error: reason }))
      yield* ServiceEvents.record("cert", service, `could not delete certificates no longer served (${reason}); retried every 10 s and at the next agent start`)
    }
  })
