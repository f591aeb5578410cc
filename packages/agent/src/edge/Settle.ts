/**
 * Closing what an earlier operation on a hostname left open, from its row alone: a setup cut
 * short is undone, a removal cut short is finished, certificates an active route retired are
 * deleted. Every operation on a hostname settles it first, and so does the agent's start. All
 * idempotent: each may run more than once.
 */
import { Effect, Either, Metric, Option } from "effect"
import { CertIssuer, type IssuedCertificate } from "../certs/CertIssuer.js"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { type EdgeRouteRow, Registry } from "../registry/Registry.js"
import { proxyRoute } from "./Model.js"
import { cleanupFailures, describe, event, retrying } from "./Peers.js"
import { finishRemoval } from "./Removal.js"

/**
 * Undoes a setup from its row: the proxy gets the replaced route back (or loses the new one),
 * a certificate the setup issued is deleted, and the row is restored (or deleted). With
 * `proxyTouched` false (the setup failed before the proxy call) the proxy is left alone.
 */
export const compensate = (row: EdgeRouteRow, proxyTouched: boolean) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const proxy = yield* ProxyRoutes
    const certs = yield* CertIssuer
    const previous = row.previous
    if (proxyTouched) {
      if (previous === undefined || previous.listener !== row.listener) yield* retrying(proxy.remove(row.listener, row.hostname))
      if (previous !== undefined) yield* retrying(proxy.put(proxyRoute(row.hostname, previous)))
    }
    if (row.cert !== undefined && row.cert.serial !== previous?.cert?.serial) yield* retrying(certs.revoke(row.cert))
    yield* retrying(
      previous === undefined
        ? registry.deleteEdgeRoute(row.hostname)
        : registry.putEdgeRoute({ hostname: row.hostname, state: "active", ...previous, previous: undefined, retired: row.retired })
    )
  })

/**
 * Deletes the certificates an active row retired. A failure is logged, counted and recorded,
 * and the row keeps them for the next try; the route itself is fine, so nothing fails.
 */
export const dropRetired = (row: EdgeRouteRow) =>
  Effect.gen(function* () {
    if (row.retired.length === 0) return
    const registry = yield* Registry
    const certs = yield* CertIssuer
    const kept: Array<IssuedCertificate> = []
    for (const cert of row.retired) {
      const outcome = yield* Effect.either(retrying(certs.revoke(cert)))
      if (Either.isLeft(outcome)) {
        kept.push(cert)
        yield* Metric.increment(cleanupFailures)
        yield* Effect.logWarning(`edge route ${row.hostname}: cannot delete the replaced certificate ${cert.serial}; retried later`).pipe(
          Effect.annotateLogs({ error: describe(outcome.left) })
        )
        yield* event("cert", row.service, `edge route ${row.hostname}: deleting the replaced certificate ${cert.serial} failed (${describe(outcome.left)}); retried at the next change or start`)
      }
    }
    if (kept.length !== row.retired.length) {
      yield* registry.putEdgeRoute({ ...row, retired: kept }).pipe(
        Effect.catchAll((e) => Effect.zipRight(Metric.increment(cleanupFailures), Effect.logWarning(`edge route ${row.hostname}: cannot record deleted certificates: ${describe(e)}`)))
      )
    }
  })

/** Closes whatever an earlier operation left open for the hostname; the active row that remains, if any. */
export const settle = (hostname: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const found = yield* registry.edgeRoute(hostname)
    if (Option.isNone(found)) return Option.none<EdgeRouteRow>()
    const row = found.value
    switch (row.state) {
      case "active":
        yield* dropRetired(row)
        return yield* registry.edgeRoute(hostname)
      case "setting-up":
        // Whether the proxy call happened is not known: assume it did (both undos are idempotent).
        yield* compensate(row, true)
        yield* event("recover", row.service, `rolled back an unfinished setup of edge route ${hostname}`)
        return yield* registry.edgeRoute(hostname)
      case "removing":
        yield* finishRemoval(row)
        yield* event("recover", row.service, `finished an unfinished removal of edge route ${hostname}`)
        return Option.none<EdgeRouteRow>()
    }
  })
