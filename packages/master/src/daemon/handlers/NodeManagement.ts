/**
 * The CLI's node registry: list, add and remove nodes, and `mcp agent recover` on one node or
 * all of them. A node is removed only once nothing depends on it: no service placed on it, no
 * public hostname it serves as the edge.
 */
import { Errors, type Operations } from "@mcp/domain"
import { Effect, Option } from "effect"
import { MasterDb } from "../../db/MasterDb.js"
import { AgentClients } from "../../fleet/AgentClients.js"
import { asPeerFailure } from "../../fleet/FleetCalls.js"
import { NodeSupervisors } from "../../nodes/NodeSupervisors.js"
import { makeLookups, type SomeMasterHandlers, viaDb } from "./Common.js"

const stillUsed = (message: string) => new Errors.InvalidRequest({ problems: [{ path: "node", message }] })

export const handlers = Effect.gen(function* () {
  const db = yield* MasterDb
  const agents = yield* AgentClients
  const supervisors = yield* NodeSupervisors
  const { nodeRow } = yield* makeLookups

  // The supervisor's live health and last heartbeat win over the stored ones.
  const nodesList = Effect.gen(function* () {
    const rows = yield* viaDb(db.nodes)
    return yield* Effect.forEach(rows, (r) =>
      Effect.map(supervisors.health(r.info.name), (h): Operations.NodeView => {
        const live = Option.getOrUndefined(h)
        const lastHeartbeat = live?.lastHeartbeat?.toISOString() ?? r.lastHeartbeat
        return {
          info: r.info,
          health: live?.status ?? r.health,
          ...(lastHeartbeat === undefined ? {} : { lastHeartbeat }),
          ...(live === undefined ? {} : { heartbeatIntervalMs: live.intervalMs, heartbeatDeadline: live.deadline.toISOString() }),
          ...(r.resources === undefined ? {} : { resources: r.resources })
        }
      })
    )
  })

  const nodesRemove = (node: string) =>
    Effect.gen(function* () {
      yield* nodeRow(node)
      const services = (yield* viaDb(db.placements)).filter((p) => p.node === node).map((p) => p.service)
      if (services.length > 0) {
        return yield* Effect.fail(stillUsed(`node ${node} still runs ${services.join(", ")}; undeploy them first`))
      }
      const published = (yield* viaDb(db.edgeRoutes)).filter((r) => r.route.edgeNode === node).map((r) => `${r.route.hostname} (${r.route.service})`)
      if (published.length > 0) {
        return yield* Effect.fail(stillUsed(`edge node ${node} still serves ${published.join(", ")}; undeploy those services (or move their hostnames to another edge) first`))
      }
      yield* supervisors.unwatch(node)
      yield* viaDb(db.removeNode(node))
      yield* viaDb(db.addEvent(node, "node", undefined, "removed by operator"))
    })

  return {
    NodesList: () => nodesList,
    // An admin's (the RPC is unmarked): besides the node's own Register, the only way a known
    // node's addresses or role change. The master still calls it only where the certificate
    // names it (AgentClients), so a wrong address here reaches nothing else.
    NodesAdd: ({ info }) =>
      Effect.gen(function* () {
        yield* viaDb(db.upsertNode(info, "cli"))
        yield* supervisors.watch(info.name, info.addresses)
        yield* viaDb(db.addEvent(info.name, "node", undefined, `added by operator (${info.role} at ${info.addresses.join(", ")})`))
        return { info, health: "unknown" as const }
      }),
    NodesRemove: ({ node }) => nodesRemove(node),
    AgentRecover: ({ node, force }) =>
      Effect.gen(function* () {
        const rows = node === undefined ? yield* viaDb(db.nodes) : [yield* nodeRow(node)]
        return yield* Effect.forEach(rows.filter((r) => r.info.role !== "edge" || node !== undefined), (r) =>
          Effect.mapError(agents.call(r.info.name, r.info.addresses, (agent) => agent.Recover({ force })), asPeerFailure(r.info.name, "recover"))
        )
      })
  } satisfies SomeMasterHandlers
})
