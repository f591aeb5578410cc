/**
 * What SetupEdgeRoute runs: the request is checked and its backend resolved outside the
 * hostname's actor (nothing is written before both pass), then the setup saga (Install.ts) runs
 * in the actor. The checks keep the edge from being pointed anywhere: the public name must be
 * under an allowed domain the master pushed (FleetPolicy), and the backend a worker's internal
 * name or an address inside `[proxy] backend_networks`, never loopback, link-local (cloud
 * metadata) or unroutable.
 */
import { Errors, Hostname } from "@mcp/domain"
import { Effect } from "effect"
import { isIP } from "node:net"
import { FleetPolicy } from "../daemon/FleetPolicy.js"
import { NodeSettings } from "../NodeSettings.js"
import * as BackendAddress from "../proxy/BackendAddress.js"
import type { EdgeTarget } from "../registry/Registry.js"
import { install } from "./Install.js"
import { EdgeOptions, inActor, type SetupRequest, toEdgeRoute } from "./Model.js"
import { event, resolveBackend } from "./Peers.js"

const problem = (path: string, message: string) => new Errors.InvalidRequest({ problems: [{ path, message }] })

/** Checks the request; nothing is written or resolved before it passes. */
const validate = (request: SetupRequest) =>
  Effect.gen(function* () {
    const { role } = yield* EdgeOptions
    const settings = yield* NodeSettings
    if (role !== "edge") {
      return yield* problem("role", `${settings.node} is a ${role} node; edge routes are set up on edge nodes (role = "edge"): send SetupEdgeRoute to an edge node's agent`)
    }
    const bad = Hostname.hostnameProblem(request.hostname)
    if (bad !== undefined) return yield* problem("hostname", bad)
    // Internal names never appear on a public certificate, nor in the edge's public routes.
    if (Hostname.isUnder(request.hostname, settings.internalZone)) {
      return yield* problem("hostname", `"${request.hostname}" is under the internal zone ${settings.internalZone}; an edge route publishes a public name (outside ${settings.internalZone}), and the internal name goes in backendHostname`)
    }
    // Only the public domains the fleet allows (the master's [edge] allowed_domains, as it last
    // pushed them): an edge never issues and serves a certificate for a name nobody allowed.
    const { allowedDomains } = yield* Effect.flatMap(FleetPolicy, (f) => f.get)
    const name = request.hostname.toLowerCase()
    if (!allowedDomains.some((d) => Hostname.isUnder(name, d.toLowerCase()))) {
      const allowed = allowedDomains.length === 0 ? "none yet: the master pushes them when this agent registers" : allowedDomains.join(", ")
      return yield* problem("hostname", `"${request.hostname}" is not under an allowed public domain (${allowed}); add its domain to [edge] allowed_domains in the master's config, or publish a name under one`)
    }
    if (!Number.isInteger(request.backendPort) || request.backendPort < 1 || request.backendPort > 65535) {
      return yield* problem("backendPort", `${request.backendPort} is not a port (1-65535); give the worker proxy's listener for the service`)
    }
    const family = isIP(request.backendHostname)
    if (family === 6) {
      return yield* problem("backendHostname", `"${request.backendHostname}" is an IPv6 address; the proxy forwards to IPv4 "ip:port" backends: give an IPv4 address or a name with an A record`)
    }
    if (family === 4) {
      // The edge cannot know the fleet's node addresses: an address is taken only where the
      // operator said workers are, and never one that reaches the edge itself or cloud metadata.
      const { backendNetworks } = yield* EdgeOptions
      const kind = BackendAddress.classify(request.backendHostname)
      if (kind !== "other") {
        return yield* problem("backendHostname", `"${request.backendHostname}" is a ${kind} address; an edge forwards only to a worker's proxy: give the worker's address or its name under ${settings.internalZone}`)
      }
      if (!backendNetworks.contains(request.backendHostname)) {
        const allowed = backendNetworks.list.length === 0 ? "none configured" : backendNetworks.list.join(", ")
        return yield* problem("backendHostname", `"${request.backendHostname}" is not inside [proxy] backend_networks (${allowed}) of ${settings.node}; add the workers' network to backend_networks in the edge's mcp-agent.toml, or give the worker's name under ${settings.internalZone}`)
      }
      return
    }
    const badBackend = Hostname.hostnameProblem(request.backendHostname)
    if (badBackend !== undefined) return yield* problem("backendHostname", badBackend)
    if (!Hostname.isUnder(request.backendHostname.toLowerCase(), settings.internalZone)) {
      return yield* problem("backendHostname", `"${request.backendHostname}" is not under the internal zone ${settings.internalZone}; an edge forwards to a worker's internal name or its address (inside [proxy] backend_networks)`)
    }
  })

/**
 * The resolved address passes the same rules as a literal one would, minus the networks (the
 * fleet's own zone names the workers). The message does not say what the name resolved to: the
 * refusal must not make the edge a way to read its resolver's answers.
 */
const checkResolved = (request: SetupRequest, ip: string) =>
  BackendAddress.classify(ip) === "other"
    ? Effect.void
    : Effect.flatMap(NodeSettings, (settings) =>
        problem("backendHostname", `"${request.backendHostname}" does not resolve to a worker's address on ${settings.node}; point its record at the worker's node address`))

const sameTarget = (a: EdgeTarget, b: Omit<EdgeTarget, "cert">) =>
  a.service === b.service && a.workerNode === b.workerNode && a.backendHostname === b.backendHostname &&
  a.backendPort === b.backendPort && a.backend === b.backend && a.listener === b.listener

export const setup = (request: SetupRequest) =>
  Effect.gen(function* () {
    yield* validate(request)
    const ip = yield* resolveBackend(request)
    yield* checkResolved(request, ip)
    const { listener } = yield* EdgeOptions
    const settings = yield* NodeSettings
    const target = {
      service: request.service,
      workerNode: request.workerNode,
      backendHostname: request.backendHostname,
      backendPort: request.backendPort,
      backend: `${ip}:${request.backendPort}`,
      listener
    }
    const operation = `set up edge route ${request.hostname}`
    const { previous, active } = yield* inActor(request.hostname, install(request.hostname, target, false, operation))
    // The same request again changes nothing, so it is neither logged nor recorded.
    if (previous === undefined || !sameTarget(previous, target) || previous.cert?.serial !== active.cert?.serial) {
      const what = previous === undefined ? "set up" : "replaced"
      yield* Effect.logInfo(`edge route ${what}`).pipe(Effect.annotateLogs({ hostname: request.hostname, backend: target.backend, certSerial: active.cert?.serial ?? "" }))
      yield* event("route", request.service, `edge route ${request.hostname} ${what}: -> ${target.backend} (${request.backendHostname}:${request.backendPort} on ${request.workerNode}), certificate ${active.cert?.serial} valid until ${active.cert?.notAfter}`)
    }
    return toEdgeRoute(settings.node, active)
  })
