/**
 * The setup saga, which a renewal runs too (the same target with a fresh certificate): the row
 * is written "setting-up" with the route it replaces before any peer is touched, the certificate
 * is issued and recorded at once, the proxy route is put, and only then is the row "active". A
 * failure compensates what this call did; a compensation that keeps failing leaves the row
 * "setting-up" for the next operation on the hostname or the next agent start (Settle.ts).
 */
import { Errors } from "@mcp/domain"
import { Effect, Either, Metric, Option } from "effect"
import { CertIssuer, REUSE_MARGIN_MS } from "../certs/CertIssuer.js"
import { NodeSettings } from "../NodeSettings.js"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { type EdgeRouteRow, type EdgeTarget, Registry } from "../registry/Registry.js"
import { proxyRoute, targetOf } from "./Model.js"
import { cleanupFailures, describe, event, type PeerError, peerFailed } from "./Peers.js"
import { compensate, dropRetired, settle } from "./Settle.js"

/**
 * Makes `target` the hostname's route. Runs in the hostname's actor. `renew` forces a new
 * certificate; otherwise the replaced route's certificate is reused while it has more than
 * REUSE_MARGIN_MS left.
 */
export const install = (hostname: string, target: Omit<EdgeTarget, "cert">, renew: boolean, operation: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const proxy = yield* ProxyRoutes
    const certs = yield* CertIssuer
    const settings = yield* NodeSettings
    const current = yield* settle(hostname).pipe(
      Effect.mapError((e) => peerFailed(operation, e, `; an earlier operation on ${hostname} is unfinished and could not be finished now (it is retried at the next operation or agent start)`))
    )
    const previous = Option.getOrUndefined(current)
    if (previous !== undefined && previous.service !== target.service) {
      // A public name belongs to one service: taking it over silently would cut the other off.
      return yield* new Errors.InvalidRequest({
        problems: [{
          path: "hostname",
          message: `${hostname} is already published on ${settings.node} for service ${previous.service}; remove that edge route first (undeploy ${previous.service} or drop its public route)`
        }]
      })
    }
    const now = Date.now()
    const reuse = !renew && previous?.cert !== undefined && Date.parse(previous.cert.notAfter) - now > REUSE_MARGIN_MS ? previous.cert : undefined
    // The intent, before any peer is touched: a crash from here on leaves a row to compensate.
    let row: EdgeRouteRow = {
      hostname,
      state: "setting-up",
      ...target,
      cert: reuse,
      previous: previous === undefined ? undefined : targetOf(previous),
      retired: previous?.retired ?? []
    }
    yield* registry.putEdgeRoute(row).pipe(Effect.mapError((e) => peerFailed(operation, e)))

    // Compensation needs the row as far as it got and whether the proxy may have changed.
    let proxyTouched = false
    const steps: Effect.Effect<EdgeRouteRow, PeerError> = Effect.gen(function* () {
      if (row.cert === undefined) {
        const cert = yield* certs.issue(hostname)
        row = { ...row, cert }
        // Recorded at once, so a crash before the route is active still deletes it.
        yield* registry.putEdgeRoute(row)
      }
      proxyTouched = true
      yield* proxy.put(proxyRoute(hostname, row))
      // The edge listener changed since the replaced route was set up: it moves.
      if (previous !== undefined && previous.listener !== row.listener) yield* proxy.remove(previous.listener, hostname)
      const replaced = previous?.cert !== undefined && previous.cert.serial !== row.cert?.serial ? [previous.cert] : []
      const active: EdgeRouteRow = { ...row, state: "active", previous: undefined, retired: [...row.retired, ...replaced] }
      yield* registry.putEdgeRoute(active)
      return active
    })
    const outcome = yield* Effect.either(steps)
    if (Either.isLeft(outcome)) return yield* rollBack(row, proxyTouched, outcome.left, operation)
    const active = outcome.right
    yield* dropRetired(active)
    return { previous, active }
  })

/** Fails with the step's error, saying whether the rollback finished or was left for later. */
const rollBack = (row: EdgeRouteRow, proxyTouched: boolean, error: PeerError, operation: string) =>
  Effect.gen(function* () {
    const undone = yield* Effect.either(compensate(row, proxyTouched))
    const incomplete = Either.isLeft(undone)
    if (incomplete) yield* Metric.increment(cleanupFailures)
    const more = incomplete
      ? `; rollback incomplete (${describe(undone.left)}), it is retried at the next operation on ${row.hostname} or agent start`
      : ""
    yield* Effect.logWarning(`${operation} failed`).pipe(Effect.annotateLogs({ hostname: row.hostname, error: describe(error) + more }))
    yield* event("route", row.service, `${operation} failed: ${describe(error)}${more}`)
    return yield* Effect.fail(peerFailed(operation, error, more))
  })
