/**
 * Removing an edge route, rolled forward: the row is marked "removing" before any peer is
 * touched, so a removal cut short is finished by the next operation on the hostname or the next
 * agent start instead of being undone.
 */
import { Effect, Option } from "effect"
import { CertIssuer } from "../certs/CertIssuer.js"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { type EdgeRouteRow, Registry } from "../registry/Registry.js"
import { certsOf, inActor } from "./Model.js"
import { event, peerFailed } from "./Peers.js"

/** Idempotent: it may run again on a row it already half removed. */
export const finishRemoval = (row: EdgeRouteRow) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const proxy = yield* ProxyRoutes
    const certs = yield* CertIssuer
    if (row.state !== "removing") yield* registry.putEdgeRoute({ ...row, state: "removing" })
    yield* proxy.remove(row.listener, row.hostname)
    if (row.previous !== undefined && row.previous.listener !== row.listener) yield* proxy.remove(row.previous.listener, row.hostname)
    for (const cert of certsOf(row)) yield* certs.revoke(cert)
    yield* registry.deleteEdgeRoute(row.hostname)
  })

export const remove = (hostname: string) =>
  inActor(hostname, Effect.gen(function* () {
    const registry = yield* Registry
    const found = yield* registry.edgeRoute(hostname)
    if (Option.isNone(found)) return
    yield* finishRemoval(found.value)
    yield* Effect.logInfo("edge route removed").pipe(Effect.annotateLogs({ hostname }))
    yield* event("route", found.value.service, `edge route ${hostname} removed`)
  }).pipe(
    Effect.mapError((e) => peerFailed(`remove edge route ${hostname}`, e, "; the removal is finished at the next RemoveEdgeRoute or agent start"))
  ))
