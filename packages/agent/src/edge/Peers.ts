/**
 * How edge routes deal with their peers (the proxy, the CA, the registry, the backend's
 * resolver): a failure as the PeerFailed the master gets, compensations retried, events that
 * never change an outcome, and the backend resolved to the `ip:port` the proxy forwards to.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Errors } from "@mcp/domain"
import { Effect, Metric } from "effect"
import { lookup } from "node:dns/promises"
import { isIP } from "node:net"
import type { CertError } from "../certs/CertIssuer.js"
import { NodeSettings } from "../NodeSettings.js"
import type { ProxyError } from "../proxy/ProxyRoutes.js"
import { Registry } from "../registry/Registry.js"
import { EdgeOptions, type Resolver, type SetupRequest } from "./Model.js"

/** Compensations and certificate deletions that failed; each is also logged and kept for a retry. */
export const cleanupFailures = Metric.counter("mcp_edge_route_cleanup_failures", {
  incremental: true,
  description: "edge route compensations or certificate deletions that failed and were left for a later retry"
})

/** Events about edge routes the registry could not record (each is logged). */
export const eventFailures = Metric.counter("mcp_edge_route_event_failures", {
  incremental: true,
  description: "edge route events that could not be written to the agent registry"
})

export type PeerError = ProxyError | CertError | SqlError

export const describe = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)

const peerOf = (e: PeerError): string => {
  switch (e._tag) {
    case "ProxyError": return e.proxy
    case "CertError": return e.issuer
    case "SqlError": return "registry"
  }
}

export const peerFailed = (operation: string, e: PeerError, more = "") =>
  new Errors.PeerFailed({ peer: peerOf(e), operation, reason: describe(e) + more, retryable: true })

/**
 * An event the registry cannot take is logged and counted; it never changes an operation's
 * outcome (on a failure path the registry may be what failed, and that error must reach the caller).
 */
export const event = (kind: "route" | "cert" | "recover", service: string, message: string) =>
  Effect.flatMap(Registry, (registry) =>
    registry.addEvent(kind, service, message).pipe(
      Effect.catchAll((e) =>
        Effect.zipRight(
          Metric.increment(eventFailures),
          Effect.logWarning(`cannot record an event in the agent registry: ${describe(e)}`).pipe(Effect.annotateLogs({ event: message }))
        )
      )
    ))

export const retrying = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.flatMap(EdgeOptions, ({ retry }) => Effect.retry(effect, retry))

/** The system resolver, IPv4 only: the proxy's backend is written `ip:port`. */
export const systemResolver: Resolver = (name) =>
  Effect.tryPromise({
    try: () => lookup(name, { family: 4 }),
    catch: (e) => (typeof e === "object" && e !== null && "code" in e ? `${String(e.code)} (no IPv4 address for ${name})` : String(e))
  }).pipe(Effect.map((r) => r.address))

/** Resolved once, at setup: the proxy forwards to the `ip:port` the row records. */
export const resolveBackend = (request: SetupRequest) =>
  Effect.gen(function* () {
    if (isIP(request.backendHostname) === 4) return request.backendHostname
    const { resolve } = yield* EdgeOptions
    const settings = yield* NodeSettings
    return yield* resolve(request.backendHostname).pipe(
      Effect.mapError((reason) => new Errors.PeerFailed({
        peer: "DNS resolver",
        operation: `resolve ${request.backendHostname} for edge route ${request.hostname}`,
        reason: `${reason}; check that ${request.backendHostname} resolves on ${settings.node} (its resolver or /etc/hosts)`,
        retryable: true
      }))
    )
  })
