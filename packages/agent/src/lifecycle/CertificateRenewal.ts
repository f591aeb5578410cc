/**
 * Renewing one certificate, as a journaled saga ("renew") like a deploy: a new certificate
 * (steps/Reissue), the proxy routes of the hostname switched to it while the service is active
 * (the routes step of a deploy, steps/Routes), then the commit, which records the new certificate,
 * ends the saga and journals the revoking of the old one in one transaction; the old one is
 * revoked after it (CertRevocation). Routes keep serving throughout (put replaces in place).
 *
 * A failed step, or a commit the registry refuses, compensates what the journal shows: the proxy
 * converges on the registry's certificate again and the new one is revoked. A renewal the agent
 * died in is compensated at the next start (StartupRecovery); one that died after its commit has
 * its old certificate revoked then. CertRenewer decides when; this is what it runs, in the
 * service's actor.
 */
import { Data, Effect, Either } from "effect"
import { randomUUID } from "node:crypto"
import type { CertIssuer } from "../certs/CertIssuer.js"
import { NodeSettings } from "../NodeSettings.js"
import type { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { Registry } from "../registry/Registry.js"
import { Saga } from "@mcp/rpc"
import * as CertRevocation from "./CertRevocation.js"
import { isActive, routeSnapshot } from "./Converge.js"
import * as ServiceEvents from "./ServiceEvents.js"
import { describe } from "./StepErrors.js"
import * as Reissue from "./steps/Reissue.js"
import * as Routes from "./steps/Routes.js"

/** How a renewal saga is undone, by step name. */
export const compensators: Readonly<Record<string, Saga.Compensator<Registry | ProxyRoutes | CertIssuer | NodeSettings>>> = {
  [Reissue.journaled.name]: Saga.compensator(Reissue.journaled),
  [Routes.journaled.name]: Saga.compensator(Routes.journaled)
}

/** Compensates an open renewal saga; gives the compensations that failed (the saga then stays open). */
export const compensateRenewal = (sagaId: string) => Effect.flatMap(Registry, (registry) => Saga.compensate(registry, sagaId, compensators))

export class RenewalFailed extends Data.TaggedError("RenewalFailed")<{
  readonly hostname: string
  readonly step: string
  readonly reason: string
}> {
  override get message() {
    return `renewing the certificate for ${this.hostname} failed at ${this.step}: ${this.reason}`
  }
}

const incomplete = (compensationErrors: ReadonlyArray<string>) =>
  compensationErrors.length > 0 ? `; rollback incomplete (${compensationErrors.join("; ")}), it is retried every 10 s while the agent runs, and at its next start` : ""

export const renewCertificate = (hostname: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const settings = yield* NodeSettings
    const current = (yield* registry.certificates).find((c) => c.hostname === hostname)
    if (current === undefined) return
    const service = current.service
    const sagaId = randomUUID()
    yield* registry.beginSaga(sagaId, service, "renew")

    const outcome = yield* Effect.either(
      Saga.sequence(registry, sagaId, compensators, () => Effect.void, (runStep) =>
        Effect.gen(function* () {
          const fresh = yield* runStep(Reissue.step(service, hostname))
          // A stopped service serves nothing: starting it puts its routes with the recorded certificate.
          const routes = (yield* isActive(service)) ? (yield* registry.serviceRoutes(service)).filter((r) => r.hostname === hostname) : []
          const served = new Map([[hostname, fresh]])
          yield* runStep(Routes.step(service, [], routes.map((r) => routeSnapshot(settings, r, served))))
          return fresh
        })
      ).pipe(
        // The registry itself failing leaves the saga open for the next start.
        Effect.catchTag("SqlError", (e) => Effect.fail(new Saga.StepFailed({ step: "registry", error: e, compensationErrors: [] })))
      )
    )
    if (Either.isLeft(outcome)) {
      const { step, error, compensationErrors } = outcome.left
      return yield* new RenewalFailed({ hostname, step, reason: describe(error) + incomplete(compensationErrors) })
    }

    // Commit: the new certificate, the saga's end and the old certificate's revoking, together.
    const fresh = outcome.right
    const committed = yield* Effect.either(registry.withTransaction(
      Effect.gen(function* () {
        yield* registry.putCertificate({ ...fresh, service })
        yield* registry.endSaga(sagaId, "committed")
        return yield* CertRevocation.record(service, [CertRevocation.toIssued(current)])
      })
    ))
    if (Either.isLeft(committed)) {
      const compensationErrors = yield* compensateRenewal(sagaId)
      return yield* new RenewalFailed({ hostname, step: "commit", reason: `the registry refused to record the new certificate (${describe(committed.left)})${incomplete(compensationErrors)}` })
    }
    yield* CertRevocation.finishAfterCommit(service, committed.right)
    yield* ServiceEvents.record("cert", service, `renewed the certificate for ${hostname} (serial ${fresh.serial}, valid until ${fresh.notAfter})`)
  })
