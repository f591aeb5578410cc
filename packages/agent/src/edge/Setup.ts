/**
 * What SetupEdgeRoute runs: the request is checked and its backend resolved outside the
 * hostname's actor (nothing is written before both pass), then the setup saga (Install.ts) runs
 * in the actor.
 */
import { Errors, Hostname } from "@mcp/domain"
import { Effect } from "effect"
import { isIP } from "node:net"
import { NodeSettings } from "../NodeSettings.js"
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
    const family = isIP(request.backendHostname)
    if (family === 6) {
      return yield* problem("backendHostname", `"${request.backendHostname}" is an IPv6 address; the proxy forwards to IPv4 "ip:port" backends: give an IPv4 address or a name with an A record`)
    }
    if (family === 0) {
      const badBackend = Hostname.hostnameProblem(request.backendHostname)
      if (badBackend !== undefined) return yield* problem("backendHostname", badBackend)
    }
  })

const sameTarget = (a: EdgeTarget, b: Omit<EdgeTarget, "cert">) =>
  a.service === b.service && a.workerNode === b.workerNode && a.backendHostname === b.backendHostname &&
  a.backendPort === b.backendPort && a.backend === b.backend && a.listener === b.listener

export const setup = (request: SetupRequest) =>
  Effect.gen(function* () {
    yield* validate(request)
    const ip = yield* resolveBackend(request)
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
