/**
 * What the edge route modules share: the request, the options, the services they run against
 * (the agent's ports, the resolved options and the per-hostname actors) and the pure mappings
 * from a registry row to a proxy route, a target and the wire's EdgeRoute.
 */
import type { Hostname, Node, Routes } from "@mcp/domain"
import { Context, Effect, type Schedule } from "effect"
import type { CertIssuer, IssuedCertificate } from "../certs/CertIssuer.js"
import type { FleetPolicy } from "../daemon/FleetPolicy.js"
import type { NodeSettings } from "../NodeSettings.js"
import type { Networks } from "../proxy/BackendAddress.js"
import type { ProxyRoute, ProxyRoutes } from "../proxy/ProxyRoutes.js"
import type { EdgeRouteRow, EdgeTarget, Registry } from "../registry/Registry.js"

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
  /** `[proxy] backend_networks`: where an IP-literal backend may be. Default none. */
  readonly backendNetworks?: ReadonlyArray<string>
}

/** The options with their defaults filled in (EdgeRoutes.make does it once). */
export interface EdgeOptions {
  readonly role: Node.NodeRole
  readonly listener: number
  readonly resolve: Resolver
  readonly retry: Schedule.Schedule<unknown, unknown>
  readonly backendNetworks: Networks
}
export const EdgeOptions = Context.GenericTag<EdgeOptions>("@mcp/agent/edge/EdgeOptions")

/** What the work on one hostname runs against. */
export type Needs = Registry | ProxyRoutes | CertIssuer | NodeSettings | FleetPolicy | EdgeOptions

/**
 * One actor per hostname, so two operations on one hostname never interleave. A job gets the
 * services EdgeRoutes was built with, not the caller's: it runs in the actor's fiber.
 */
export interface HostnameActors {
  readonly submit: <A, E>(hostname: string, effect: Effect.Effect<A, E, Needs>) => Effect.Effect<A, E>
}
export const HostnameActors = Context.GenericTag<HostnameActors>("@mcp/agent/edge/HostnameActors")

/** Runs `effect` in the hostname's actor, after the operations already queued for it. */
export const inActor = <A, E>(hostname: string, effect: Effect.Effect<A, E, Needs>) =>
  Effect.flatMap(HostnameActors, (actors) => actors.submit(hostname, effect))

/** A removal deletes them all, each once: a reused certificate is both the row's and the replaced route's. */
export const certsOf = (row: EdgeRouteRow): ReadonlyArray<IssuedCertificate> => {
  const all = [row.cert, row.previous?.cert, ...row.retired].filter((c): c is IssuedCertificate => c !== undefined)
  return all.filter((c, i) => all.findIndex((d) => d.serial === c.serial) === i)
}

export const targetOf = (row: EdgeRouteRow): EdgeTarget => ({
  service: row.service,
  workerNode: row.workerNode,
  backendHostname: row.backendHostname,
  backendPort: row.backendPort,
  backend: row.backend,
  listener: row.listener,
  cert: row.cert
})

export const proxyRoute = (hostname: string, target: EdgeTarget): ProxyRoute => ({
  listener: target.listener,
  hostname: hostname as Hostname.Hostname,
  backend: target.backend,
  mode: "l7",
  // The worker's proxy serves TLS too: the edge re-encrypts and verifies it (proxy backend_ca).
  backendTls: true,
  service: target.service,
  ...(target.cert === undefined ? {} : { tlsCert: target.cert.certPath, tlsKey: target.cert.keyPath })
})

export const toEdgeRoute = (edgeNode: string, row: EdgeRouteRow): Routes.EdgeRoute => ({
  hostname: row.hostname as Hostname.Hostname,
  edgeNode,
  workerNode: row.workerNode,
  backendHostname: row.backendHostname,
  backendPort: row.backendPort,
  service: row.service,
  certSerial: row.cert?.serial ?? "",
  certNotAfter: row.cert?.notAfter ?? ""
})

