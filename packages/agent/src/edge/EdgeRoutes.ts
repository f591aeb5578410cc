/**
 * Edge routes: on an edge node, a public hostname served by this node's proxy (TLS terminated
 * with a certificate for the public name only) and forwarded, re-encrypted, to a worker's proxy.
 *
 * A setup is a small saga over three peers, recorded in the registry before it touches any:
 * the row is written "setting-up" (with the route it replaces, if any), the certificate is
 * issued and recorded at once, the proxy route is put, and only then is the row "active". A
 * failure compensates what this call did (the proxy route put back or removed, a certificate it
 * issued deleted, the row restored or deleted); a compensation that keeps failing leaves the row
 * "setting-up", and the next operation on the hostname or the next agent start finishes it.
 * Removal is rolled forward the same way through a "removing" row. Every operation on one
 * hostname runs in that hostname's actor, so two never interleave.
 *
 * What holds between operations (and the property test checks): every active row has its proxy
 * route and its certificate; no proxy route or certificate exists without a row.
 *
 * This module is the service the daemon and the tests hold; the work is in its own modules:
 * the request checked and set up (Setup), the setup saga a renewal runs too (Install), closing
 * what an operation left open (Settle), the removal (Removal), certificate renewal
 * (CertificateRenewal), the start-up resume (StartupRecovery), the reads (Queries), and what
 * they share (Model; Peers: failures, events, retries, the backend's resolver).
 */
import type { SqlError } from "@effect/sql/SqlError"
import type { Errors, Routes } from "@mcp/domain"
import { KeyedActors, Saga } from "@mcp/rpc"
import { Context, Effect, Layer } from "effect"
import type { CertIssuer } from "../certs/CertIssuer.js"
import type { FleetPolicy } from "../daemon/FleetPolicy.js"
import type { NodeSettings } from "../NodeSettings.js"
import { networks } from "../proxy/BackendAddress.js"
import type { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import type { EdgeRouteRow, Registry } from "../registry/Registry.js"
import { renewCertificate } from "./CertificateRenewal.js"
import { type EdgeCertificate, EdgeOptions, type EdgeRoutesOptions, HostnameActors, type Needs, type SetupRequest } from "./Model.js"
import { systemResolver } from "./Peers.js"
import { certificates, list, rows } from "./Queries.js"
import { remove } from "./Removal.js"
import { setup } from "./Setup.js"
import { resumeOpenWork } from "./StartupRecovery.js"

export type { EdgeCertificate, EdgeRoutesOptions, Resolver, SetupRequest } from "./Model.js"
export { cleanupFailures, eventFailures, systemResolver } from "./Peers.js"

export interface EdgeRoutes {
  /**
   * Sets up (or, for a hostname that has one, replaces in place) the public route. The same
   * request again re-puts the proxy route and returns the same route, with no new certificate.
   */
  readonly setup: (request: SetupRequest) => Effect.Effect<Routes.EdgeRoute, Errors.InvalidRequest | Errors.PeerFailed>
  /** Removes the proxy route, then the certificate, then the row; a missing route succeeds. */
  readonly remove: (hostname: string) => Effect.Effect<void, Errors.PeerFailed>
  /** The active routes (those serving), by hostname. */
  readonly list: Effect.Effect<ReadonlyArray<Routes.EdgeRoute>, Errors.PeerFailed>
  /** Every recorded row, in any state. */
  readonly rows: Effect.Effect<ReadonlyArray<EdgeRouteRow>, SqlError>
  /**
   * At agent start: compensates rows a crash left "setting-up", finishes "removing" ones,
   * deletes retired certificates and re-puts every active route. Each is logged and recorded as
   * an event; one that cannot be closed now stays for the next start (and the next operation on
   * its hostname).
   */
  readonly resumeOpenWork: Effect.Effect<void, SqlError>
  /** The certificates of active routes, for the renewal fiber to pick the due ones from. */
  readonly certificates: Effect.Effect<ReadonlyArray<EdgeCertificate>, SqlError>
  /** Issues a new certificate, puts the route with it, records it, then deletes the old one. */
  readonly renewCertificate: (hostname: string) => Effect.Effect<void, Errors.PeerFailed>
}

export const EdgeRoutes = Context.GenericTag<EdgeRoutes>("@mcp/agent/EdgeRoutes")

/** What the operations run against, besides the options and the actors this service adds. */
type Ports = Registry | ProxyRoutes | CertIssuer | NodeSettings | FleetPolicy

export const make = (options: EdgeRoutesOptions) =>
  Effect.gen(function* () {
    const ports = yield* Effect.context<Ports>()
    const actors = yield* KeyedActors.make()
    const context = Context.add(ports, EdgeOptions, {
      role: options.role,
      listener: options.listener,
      resolve: options.resolve ?? systemResolver,
      retry: options.retry ?? Saga.compensationRetry,
      backendNetworks: networks(options.backendNetworks ?? [])
    })
    // A job runs in its actor's fiber, so it gets this service's context rather than its caller's.
    const all = Context.add(context, HostnameActors, {
      submit: (hostname, effect) => actors.submit(hostname, Effect.provide(effect, context))
    })
    const bound = <A, E>(effect: Effect.Effect<A, E, Needs | HostnameActors>): Effect.Effect<A, E> => Effect.provide(effect, all)
    return {
      setup: (request: SetupRequest) => bound(setup(request)),
      remove: (hostname: string) => bound(remove(hostname)),
      list: bound(list),
      rows: bound(rows),
      resumeOpenWork: bound(resumeOpenWork),
      certificates: bound(certificates),
      renewCertificate: (hostname: string) => bound(renewCertificate(hostname))
    } satisfies EdgeRoutes
  })

/** Scoped: the per-hostname actors end with the layer. */
export const layer = (options: EdgeRoutesOptions) => Layer.scoped(EdgeRoutes, make(options))
