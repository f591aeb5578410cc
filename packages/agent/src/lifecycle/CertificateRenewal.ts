/**
 * Renewing one certificate: a new certificate, pushed to the routes that serve the hostname,
 * then the old one revoked. Routes keep serving throughout (put replaces in place). CertRenewer
 * decides when; this is what it runs, in the service's actor.
 */
import { Effect } from "effect"
import { CertIssuer } from "../certs/CertIssuer.js"
import { Registry } from "../registry/Registry.js"
import { putRoute, recordedRoutes } from "./Converge.js"
import * as ServiceEvents from "./ServiceEvents.js"

export const renewCertificate = (hostname: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const certs = yield* CertIssuer
    const current = (yield* registry.certificates).find((c) => c.hostname === hostname)
    if (current === undefined) return
    const fresh = yield* certs.issue(hostname)
    yield* registry.putCertificate({ ...fresh, service: current.service })
    for (const r of yield* recordedRoutes(current.service)) {
      if (r.hostname === hostname) yield* putRoute(current.service, { ...r, tlsCert: fresh.certPath, tlsKey: fresh.keyPath })
    }
    yield* certs.revoke({ hostname, certPath: current.certPath, keyPath: current.keyPath, serial: current.serial, notAfter: current.notAfter })
    yield* ServiceEvents.record("cert", current.service, `renewed the certificate for ${hostname} (serial ${fresh.serial}, valid until ${fresh.notAfter})`)
  })
