/**
 * Routes in a node's TLS proxy (internal and manual ones) and public edge routes, as the
 * agents and the master report them.
 */
import { Schema } from "effect"
import { Hostname } from "./Hostname.js"
import { RouteMode } from "./ServiceDefinition.js"

export const ProxyRoute = Schema.Struct({
  listener: Schema.Int.pipe(Schema.between(1, 65535)),
  hostname: Hostname,
  /** `host:port` the proxy forwards to. */
  backend: Schema.String.pipe(Schema.pattern(/^[^\s:]+:[0-9]{1,5}$/, { message: () => `backend must be "host:port", e.g. "127.0.0.1:8080"` })),
  mode: RouteMode,
  backendTls: Schema.Boolean,
  /** L7 only: the certificate served for the hostname (paths on the agent's node). */
  tlsCert: Schema.optional(Schema.String),
  tlsKey: Schema.optional(Schema.String),
  /** The service that owns the route, or absent for a manual route. */
  service: Schema.optional(Schema.String)
})
export type ProxyRoute = typeof ProxyRoute.Type

export const EdgeRoute = Schema.Struct({
  hostname: Hostname,
  edgeNode: Schema.String,
  workerNode: Schema.String,
  /** The worker's internal hostname and proxy listener the edge forwards to. */
  backendHostname: Schema.String,
  backendPort: Schema.Int,
  service: Schema.String,
  certSerial: Schema.String,
  certNotAfter: Schema.String
})
export type EdgeRoute = typeof EdgeRoute.Type

export const DnsCheckResult = Schema.Struct({
  hostname: Schema.String,
  edgeNode: Schema.String,
  ok: Schema.Boolean,
  resolvesTo: Schema.Array(Schema.String),
  problem: Schema.optional(Schema.String),
  fix: Schema.optional(Schema.String)
})
