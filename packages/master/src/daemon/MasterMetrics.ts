/**
 * The gauges of what the master holds, read at each scrape of /metrics (Exposition.ts): each
 * node's health state, heartbeat age and heartbeats received from its supervisor, and the edge
 * routes by edge node. The other counters (probes, operations, RPCs, saga steps) are declared
 * where they count.
 */
import { Health } from "@mcp/domain"
import type { Observation, StateGauge } from "@mcp/rpc/Exposition"
import { Clock, Effect } from "effect"
import { MasterDb } from "../db/MasterDb.js"
import { NodeSupervisors } from "../nodes/NodeSupervisors.js"

/**
 * Each node's observations, in no particular order (Prometheus sorts nothing): read without the
 * sorted snapshot, whose copies at 10,000 nodes held the event loop for each scrape.
 */
const eachNode = <A>(f: (node: string, lastHeartbeat: number | undefined, status: Health.HealthStatus, heartbeats: number, out: Array<A>) => void) =>
  Effect.map(NodeSupervisors, (supervisors) => {
    const out: Array<A> = []
    supervisors.eachNode((node, lastHeartbeat, status, heartbeats) => f(node, lastHeartbeat, status, heartbeats, out))
    return out
  })

/** One series per node and status, 1 for the node's status and 0 for the others (a state set). */
const nodeHealth: StateGauge<NodeSupervisors> = {
  name: "mcp_node_health",
  description: "each watched node's health: 1 for its status (unknown, healthy, suspect or unhealthy), 0 for the others",
  read: eachNode<Observation>((node, _, current, __, out) => {
    for (const status of Health.HealthStatus.literals) out.push({ value: current === status ? 1 : 0, labels: { node, status } })
  })
}

/** Seconds since each node's last heartbeat; a node never heard from since the master started has none. */
const heartbeatAge: StateGauge<NodeSupervisors> = {
  name: "mcp_node_heartbeat_age_seconds",
  description: "seconds since the master received each node's last heartbeat",
  read: Effect.flatMap(Clock.currentTimeMillis, (now) =>
    eachNode<Observation>((node, lastHeartbeat, _, __, out) => {
      if (lastHeartbeat !== undefined) out.push({ value: (now - lastHeartbeat) / 1000, labels: { node } })
    }))
}

/**
 * Heartbeats received from each watched node since it was watched: a counter that starts again
 * when the master does or the node is watched anew, and goes away with the node.
 */
const heartbeatsReceived: StateGauge<NodeSupervisors> = {
  name: "mcp_heartbeats_received",
  description: "heartbeats received from watched nodes, by node",
  counter: true,
  read: eachNode<Observation>((node, _, __, heartbeats, out) => {
    out.push({ value: heartbeats, labels: { node } })
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

export const gauges: ReadonlyArray<StateGauge<NodeSupervisors | MasterDb>> = [nodeHealth, heartbeatAge, heartbeatsReceived, edgeRoutes]
