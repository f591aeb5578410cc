/**
 * The gauges of what the master holds, read at each scrape of /metrics (Exposition.ts): each
 * node's health state and heartbeat age from its supervisor, and the edge routes by edge node.
 * The counters (heartbeats, probes, operations, RPCs, saga steps) are declared where they count.
 */
import { Health } from "@mcp/domain"
import type { StateGauge } from "@mcp/rpc/Exposition"
import { Clock, Effect } from "effect"
import { MasterDb } from "../db/MasterDb.js"
import { NodeSupervisors } from "../nodes/NodeSupervisors.js"

/** One series per node and status, 1 for the node's status and 0 for the others (a state set). */
const nodeHealth: StateGauge<NodeSupervisors> = {
  name: "mcp_node_health",
  description: "each watched node's health: 1 for its status (unknown, healthy, suspect or unhealthy), 0 for the others",
  read: Effect.map(Effect.flatMap(NodeSupervisors, (s) => s.snapshot), (nodes) =>
    nodes.flatMap((n) => Health.HealthStatus.literals.map((status) => ({ value: n.status === status ? 1 : 0, labels: { node: n.node, status } }))))
}

/** Seconds since each node's last heartbeat; a node never heard from since the master started has none. */
const heartbeatAge: StateGauge<NodeSupervisors> = {
  name: "mcp_node_heartbeat_age_seconds",
  description: "seconds since the master received each node's last heartbeat",
  read: Effect.gen(function* () {
    const nodes = yield* Effect.flatMap(NodeSupervisors, (s) => s.snapshot)
    const now = yield* Clock.currentTimeMillis
    return nodes.flatMap((n) => n.lastHeartbeat === undefined ? [] : [{ value: (now - n.lastHeartbeat.getTime()) / 1000, labels: { node: n.node } }])
  })
}

/** Public routes the master records, by edge node and state (active, or removing until the edge confirms). */
const edgeRoutes: StateGauge<MasterDb> = {
  name: "mcp_edge_routes",
  description: "public edge routes the master records, by edge node and state (active, or removing until the edge has removed it)",
  read: Effect.gen(function* () {
    const rows = yield* Effect.flatMap(MasterDb, (db) => db.edgeRoutes)
    const counts = new Map<string, { edge: string; state: string; n: number }>()
    for (const row of rows) {
      const key = `${row.route.edgeNode}\u0000${row.state}`
      const entry = counts.get(key) ?? { edge: row.route.edgeNode, state: row.state, n: 0 }
      counts.set(key, { ...entry, n: entry.n + 1 })
    }
    return [...counts.values()].map((c) => ({ value: c.n, labels: { edge: c.edge, state: c.state } }))
  })
}

export const gauges: ReadonlyArray<StateGauge<NodeSupervisors | MasterDb>> = [nodeHealth, heartbeatAge, edgeRoutes]
