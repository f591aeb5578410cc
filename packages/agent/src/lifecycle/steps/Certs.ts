/**
 * Deploy step "certs": a certificate for every L7 hostname of the plan, reusing a recorded one
 * that has more than REUSE_MARGIN_MS left. Each new certificate is journaled as soon as it
 * exists (the last "done" record wins), so if the step fails or the agent dies before it ends,
 * compensation revokes what was issued, with retries, and a revoke that keeps failing leaves
 * the saga open.
 */
import { Effect, Schema } from "effect"
import { CertIssuer, IssuedCertificate, REUSE_MARGIN_MS } from "../../certs/CertIssuer.js"
import { type CertificateRow, Registry } from "../../registry/Registry.js"
import { recordedCerts } from "../Converge.js"
import { Saga } from "@mcp/rpc"

export const journaled = Saga.journaled({
  name: "certs",
  Intent: Schema.Null,
  Result: Schema.Struct({ issued: Schema.Array(IssuedCertificate) }),
  compensate: ({ result }) =>
    Effect.flatMap(CertIssuer, (certs) => Effect.forEach(result?.issued ?? [], (c) => certs.revoke(c), { discard: true }))
})

/** The certificates the routes will serve, by hostname: recorded ones reused, and new ones. */
export type Served = Map<string, IssuedCertificate | CertificateRow>

export const step = (sagaId: string, hostnames: ReadonlyArray<string>) =>
  Saga.step(
    journaled,
    null,
    Effect.gen(function* () {
      const certs = yield* CertIssuer
      const registry = yield* Registry
      const recorded = yield* recordedCerts
      const served: Served = new Map()
      const issued: Array<IssuedCertificate> = []
      for (const hostname of hostnames) {
        const have = recorded.get(hostname)
        if (have !== undefined && Date.parse(have.notAfter) - Date.now() > REUSE_MARGIN_MS) {
          served.set(hostname, have)
          continue
        }
        const fresh = yield* certs.issue(hostname)
        issued.push(fresh)
        served.set(hostname, fresh)
        yield* registry.journal(sagaId, journaled.name, "done", Schema.encodeSync(journaled.Result)({ issued }))
      }
      return { issued, served }
    }),
    ({ issued }) => ({ issued })
  )
