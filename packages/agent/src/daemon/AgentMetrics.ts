/**
 * The gauges of what an agent holds, read at each scrape of /metrics (Exposition.ts): the days
 * left on each certificate it serves, for its services' routes and, on an edge node, for the
 * public routes it terminates. The counters (saga steps, compensations, RPCs, monitor findings)
 * are declared where they count.
 */
import type { StateGauge } from "@mcp/rpc/Exposition"
import { Clock, Effect } from "effect"
import { Registry } from "../registry/Registry.js"

const DAY_MS = 86_400_000

const certificateExpiry: StateGauge<Registry> = {
  name: "mcp_certificate_expiry_days",
  description: "days until each certificate this node serves expires, by hostname, service and kind (route: a service's route here; edge: a public route this edge terminates)",
  read: Effect.gen(function* () {
    const registry = yield* Registry
    const now = yield* Clock.currentTimeMillis
    const days = (notAfter: string) => (Date.parse(notAfter) - now) / DAY_MS
    const routes = (yield* registry.certificates).map((c) => ({ value: days(c.notAfter), labels: { hostname: c.hostname, service: c.service, kind: "route" } }))
    const edges = (yield* registry.edgeRoutes).flatMap((r) =>
      r.state === "active" && r.cert !== undefined ? [{ value: days(r.cert.notAfter), labels: { hostname: r.hostname, service: r.service, kind: "edge" } }] : [])
    return [...routes, ...edges].filter((o) => Number.isFinite(o.value))
  })
}

export const gauges: ReadonlyArray<StateGauge<Registry>> = [certificateExpiry]
