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
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Errors, Hostname, type Node, type Routes } from "@mcp/domain"
import { KeyedActors, Saga } from "@mcp/rpc"
import { Context, Effect, Either, Layer, Metric, Option, type Schedule } from "effect"
import { lookup } from "node:dns/promises"
import { isIP } from "node:net"
import { type CertError, CertIssuer, type IssuedCertificate, REUSE_MARGIN_MS } from "../certs/CertIssuer.js"
import { NodeSettings } from "../NodeSettings.js"
import { type ProxyError, type ProxyRoute, ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { type EdgeRouteRow, type EdgeTarget, Registry } from "../registry/Registry.js"

/** What the master asks for (AgentRpcs SetupEdgeRoute's payload). */
export interface SetupRequest {
  /** The public hostname, outside the internal zone. */
  readonly hostname: string
  readonly service: string
  readonly workerNode: string
  /** The worker's name for the service (usually under the internal zone), or an IP. */
  readonly backendHostname: string
  /** The worker proxy's listener for the service. */
  readonly backendPort: number
}

/** An edge certificate, for the renewal fiber. */
export interface EdgeCertificate {
  readonly hostname: string
  readonly serial: string
  /** ISO 8601. */
  readonly notAfter: string
}

/** Resolves a backend name to an IPv4 address; fails with the reason. */
export type Resolver = (name: string) => Effect.Effect<string, string>

export interface EdgeRoutesOptions {
  /** This node's role: only an edge node sets up edge routes. */
  readonly role: Node.NodeRole
  /** The proxy listener public routes are served on (config `[edge] listener`). */
  readonly listener: number
  /** Default: the system resolver (getaddrinfo, so /etc/hosts counts), IPv4 only. */
  readonly resolve?: Resolver
  /** How each compensation step is retried before it is left for later. Default: Saga.compensationRetry. */
  readonly retry?: Schedule.Schedule<unknown, unknown>
}

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

/** Compensations and certificate deletions that failed; each is also logged and kept for a retry. */
export const cleanupFailures = Metric.counter("mcp_edge_route_cleanup_failures", {
  description: "edge route compensations or certificate deletions that failed and were left for a later retry"
})

/** Events about edge routes the registry could not record (each is logged). */
export const eventFailures = Metric.counter("mcp_edge_route_event_failures", {
  description: "edge route events that could not be written to the agent registry"
})

/** The system resolver, IPv4 only: the proxy's backend is written `ip:port`. */
export const systemResolver: Resolver = (name) =>
  Effect.tryPromise({
    try: () => lookup(name, { family: 4 }),
    catch: (e) => (typeof e === "object" && e !== null && "code" in e ? `${String(e.code)} (no IPv4 address for ${name})` : String(e))
  }).pipe(Effect.map((r) => r.address))

type PeerError = ProxyError | CertError | SqlError

const describe = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)

const certsOf = (row: EdgeRouteRow): ReadonlyArray<IssuedCertificate> => {
  const all = [row.cert, row.previous?.cert, ...row.retired].filter((c): c is IssuedCertificate => c !== undefined)
  return all.filter((c, i) => all.findIndex((d) => d.serial === c.serial) === i)
}

const targetOf = (row: EdgeRouteRow): EdgeTarget => ({
  service: row.service,
  workerNode: row.workerNode,
  backendHostname: row.backendHostname,
  backendPort: row.backendPort,
  backend: row.backend,
  listener: row.listener,
  cert: row.cert
})

export const make = (options: EdgeRoutesOptions) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const proxy = yield* ProxyRoutes
    const certs = yield* CertIssuer
    const settings = yield* NodeSettings
    const actors = yield* KeyedActors.make()
    const resolve = options.resolve ?? systemResolver

    // An event the registry cannot take is logged and counted; it never changes an operation's
    // outcome (on a failure path the registry may be what failed, and that error must reach the caller).
    const event = (kind: "route" | "cert" | "recover", service: string, message: string) =>
      registry.addEvent(kind, service, message).pipe(
        Effect.catchAll((e) =>
          Effect.zipRight(
            Metric.increment(eventFailures),
            Effect.logWarning(`cannot record an event in the agent registry: ${describe(e)}`).pipe(Effect.annotateLogs({ event: message }))
          )
        )
      )

    const peerOf = (e: PeerError): string => {
      switch (e._tag) {
        case "ProxyError": return e.proxy
        case "CertError": return e.issuer
        case "SqlError": return "registry"
      }
    }
    const peerFailed = (operation: string, e: PeerError, more = "") =>
      new Errors.PeerFailed({ peer: peerOf(e), operation, reason: describe(e) + more, retryable: true })

    const proxyRoute = (hostname: string, target: EdgeTarget): ProxyRoute => ({
      listener: target.listener,
      hostname: hostname as Hostname.Hostname,
      backend: target.backend,
      mode: "l7",
      // The worker's proxy serves TLS too: the edge re-encrypts and verifies it (proxy backend_ca).
      backendTls: true,
      service: target.service,
      ...(target.cert === undefined ? {} : { tlsCert: target.cert.certPath, tlsKey: target.cert.keyPath })
    })

    const toEdgeRoute = (row: EdgeRouteRow): Routes.EdgeRoute => ({
      hostname: row.hostname as Hostname.Hostname,
      edgeNode: settings.node,
      workerNode: row.workerNode,
      backendHostname: row.backendHostname,
      backendPort: row.backendPort,
      service: row.service,
      certSerial: row.cert?.serial ?? "",
      certNotAfter: row.cert?.notAfter ?? ""
    })

    const retry = options.retry ?? Saga.compensationRetry
    const retrying = <A, E>(effect: Effect.Effect<A, E>) => Effect.retry(effect, retry)

    // -------------------------------------------------------------------------------------------
    // Closing what an earlier operation left open. All idempotent: each may run more than once.

    /**
     * Undoes a setup from its row: the proxy gets the replaced route back (or loses the new one),
     * a certificate the setup issued is deleted, and the row is restored (or deleted). With
     * `proxyTouched` false (the setup failed before the proxy call) the proxy is left alone.
     */
    const compensate = (row: EdgeRouteRow, proxyTouched: boolean) =>
      Effect.gen(function* () {
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

    /** Removal, rolled forward: marked first, so a failure part-way is finished later. */
    const finishRemoval = (row: EdgeRouteRow) =>
      Effect.gen(function* () {
        if (row.state !== "removing") yield* registry.putEdgeRoute({ ...row, state: "removing" })
        yield* proxy.remove(row.listener, row.hostname)
        if (row.previous !== undefined && row.previous.listener !== row.listener) yield* proxy.remove(row.previous.listener, row.hostname)
        for (const cert of certsOf(row)) yield* certs.revoke(cert)
        yield* registry.deleteEdgeRoute(row.hostname)
      })

    /**
     * Deletes the certificates an active row retired. A failure is logged, counted and recorded,
     * and the row keeps them for the next try; the route itself is fine, so nothing fails.
     */
    const dropRetired = (row: EdgeRouteRow) =>
      Effect.gen(function* () {
        if (row.retired.length === 0) return
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
    const settle = (hostname: string) =>
      Effect.gen(function* () {
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

    // -------------------------------------------------------------------------------------------
    // The setup saga (also a renewal: the same target with a fresh certificate).

    /**
     * Makes `target` the hostname's route. Runs in the hostname's actor. `renew` forces a new
     * certificate; otherwise the replaced route's certificate is reused while it has more than
     * REUSE_MARGIN_MS left.
     */
    const install = (hostname: string, target: Omit<EdgeTarget, "cert">, renew: boolean, operation: string) =>
      Effect.gen(function* () {
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
        if (Either.isLeft(outcome)) {
          const error = outcome.left
          const undone = yield* Effect.either(compensate(row, proxyTouched))
          const incomplete = Either.isLeft(undone)
          if (incomplete) yield* Metric.increment(cleanupFailures)
          const more = incomplete
            ? `; rollback incomplete (${describe(undone.left)}), it is retried at the next operation on ${hostname} or agent start`
            : ""
          yield* Effect.logWarning(`${operation} failed`).pipe(Effect.annotateLogs({ hostname, error: describe(error) + more }))
          yield* event("route", target.service, `${operation} failed: ${describe(error)}${more}`)
          return yield* Effect.fail(peerFailed(operation, error, more))
        }
        const active = outcome.right
        yield* dropRetired(active)
        return { previous, active }
      })

    const problem = (path: string, message: string) => new Errors.InvalidRequest({ problems: [{ path, message }] })

    /** Checks the request; nothing is written or resolved before it passes. */
    const validate = (request: SetupRequest) =>
      Effect.gen(function* () {
        if (options.role !== "edge") {
          return yield* problem("role", `${settings.node} is a ${options.role} node; edge routes are set up on edge nodes (role = "edge"): send SetupEdgeRoute to an edge node's agent`)
        }
        const bad = Hostname.hostnameProblem(request.hostname)
        if (bad !== undefined) return yield* problem("hostname", bad)
        // Internal names never appear on a public certificate, nor in the edge's public routes.
        if (Hostname.isUnder(request.hostname, settings.internalZone)) {
          return yield* problem("hostname", `"${request.hostname}" is under the internal zone ${settings.internalZone}; an edge route publishes a public name (outside ${settings.internalZone}), and the internal name goes in backendHostname`)
        }
        const family = isIP(request.backendHostname)
        if (family === 6) {
          return yield* problem("backendHostname", `"${request.backendHostname}" is an IPv6 address; the proxy forwards to IPv4 "ip:port" backends: give an IPv4 address or a name with an A record`)
        }
        if (family === 0) {
          const badBackend = Hostname.hostnameProblem(request.backendHostname)
          if (badBackend !== undefined) return yield* problem("backendHostname", badBackend)
        }
      })

    const resolveBackend = (request: SetupRequest) =>
      isIP(request.backendHostname) === 4
        ? Effect.succeed(request.backendHostname)
        : resolve(request.backendHostname).pipe(
            Effect.mapError((reason) => new Errors.PeerFailed({
              peer: "DNS resolver",
              operation: `resolve ${request.backendHostname} for edge route ${request.hostname}`,
              reason: `${reason}; check that ${request.backendHostname} resolves on ${settings.node} (its resolver or /etc/hosts)`,
              retryable: true
            }))
          )

    const sameTarget = (a: EdgeTarget, b: Omit<EdgeTarget, "cert">) =>
      a.service === b.service && a.workerNode === b.workerNode && a.backendHostname === b.backendHostname &&
      a.backendPort === b.backendPort && a.backend === b.backend && a.listener === b.listener

    const setup = (request: SetupRequest) =>
      Effect.gen(function* () {
        yield* validate(request)
        const ip = yield* resolveBackend(request)
        const target = {
          service: request.service,
          workerNode: request.workerNode,
          backendHostname: request.backendHostname,
          backendPort: request.backendPort,
          backend: `${ip}:${request.backendPort}`,
          listener: options.listener
        }
        const operation = `set up edge route ${request.hostname}`
        const { previous, active } = yield* actors.submit(request.hostname, install(request.hostname, target, false, operation))
        if (previous === undefined || !sameTarget(previous, target) || previous.cert?.serial !== active.cert?.serial) {
          const what = previous === undefined ? "set up" : "replaced"
          yield* Effect.logInfo(`edge route ${what}`).pipe(Effect.annotateLogs({ hostname: request.hostname, backend: target.backend, certSerial: active.cert?.serial ?? "" }))
          yield* event("route", request.service, `edge route ${request.hostname} ${what}: -> ${target.backend} (${request.backendHostname}:${request.backendPort} on ${request.workerNode}), certificate ${active.cert?.serial} valid until ${active.cert?.notAfter}`)
        }
        return toEdgeRoute(active)
      })

    const remove = (hostname: string) =>
      actors.submit(hostname, Effect.gen(function* () {
        const found = yield* registry.edgeRoute(hostname)
        if (Option.isNone(found)) return
        yield* finishRemoval(found.value)
        yield* Effect.logInfo("edge route removed").pipe(Effect.annotateLogs({ hostname }))
        yield* event("route", found.value.service, `edge route ${hostname} removed`)
      }).pipe(
        Effect.mapError((e) => peerFailed(`remove edge route ${hostname}`, e, "; the removal is finished at the next RemoveEdgeRoute or agent start"))
      ))

    const renewCertificate = (hostname: string) =>
      actors.submit(hostname, Effect.gen(function* () {
        const found = yield* registry.edgeRoute(hostname).pipe(Effect.mapError((e) => peerFailed(`renew the certificate of edge route ${hostname}`, e)))
        if (Option.isNone(found) || found.value.state !== "active") return
        const { cert: _, ...target } = targetOf(found.value)
        const { active } = yield* install(hostname, target, true, `renew the certificate of edge route ${hostname}`).pipe(
          // The renewal keeps the row's own service: a conflict here is a bug, not a request problem.
          Effect.catchTag("InvalidRequest", (e) => Effect.die(e))
        )
        yield* event("cert", active.service, `renewed the certificate of edge route ${hostname} (serial ${active.cert?.serial}, valid until ${active.cert?.notAfter})`)
      }))

    const rows = registry.edgeRoutes

    const list = Effect.map(rows, (all) => all.filter((r) => r.state === "active").map(toEdgeRoute)).pipe(
      Effect.mapError((e) => peerFailed("list edge routes", e))
    )

    const certificates = Effect.map(rows, (all) =>
      all.flatMap((r): ReadonlyArray<EdgeCertificate> =>
        r.state === "active" && r.cert !== undefined ? [{ hostname: r.hostname, serial: r.cert.serial, notAfter: r.cert.notAfter }] : []
      )
    )

    const resumeOpenWork = Effect.gen(function* () {
      for (const row of yield* rows) {
        const outcome = yield* Effect.either(actors.submit(row.hostname, Effect.gen(function* () {
          const settled = yield* settle(row.hostname)
          // Re-put too: a proxy that lost its state (record-only, a wiped config dir) serves it again.
          if (Option.isSome(settled)) yield* proxy.put(proxyRoute(row.hostname, settled.value))
        })))
        if (Either.isLeft(outcome)) {
          yield* Metric.increment(cleanupFailures)
          yield* Effect.logWarning(`could not close or restore the ${row.state} edge route ${row.hostname}; retried at the next start`).pipe(
            Effect.annotateLogs({ error: describe(outcome.left) })
          )
          yield* event("recover", row.service, `could not close or restore the ${row.state} edge route ${row.hostname} (${describe(outcome.left)}); retried at the next start`)
        } else if (row.state !== "active") {
          yield* Effect.logInfo(`closed the unfinished ${row.state} of edge route ${row.hostname}`)
        }
      }
    })

    return { setup, remove, list, rows, resumeOpenWork, certificates, renewCertificate } satisfies EdgeRoutes
  })

/** Scoped: the per-hostname actors end with the layer. */
export const layer = (options: EdgeRoutesOptions) => Layer.scoped(EdgeRoutes, make(options))
