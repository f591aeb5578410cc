/**
 * The CLI's read-only views of the fleet: ps and status (asked of the agents), logs, events,
 * edge routes, the DNS check and the master's supervision tree. A fleet-wide view answers with
 * what it could gather: a node that is down or slow is reported, not waited for.
 */
import type { Operations } from "@mcp/domain"
import * as EventLog from "@mcp/rpc/EventLog"
import { Clock, Duration, Effect, Either, Stream } from "effect"
import { MasterDb } from "../../db/MasterDb.js"
import { EdgeReconciler } from "../../edge/EdgeReconciler.js"
import * as EdgeResolver from "../../edge/EdgeResolver.js"
import { AgentClients } from "../../fleet/AgentClients.js"
import { asPeerFailure } from "../../fleet/FleetCalls.js"
import { NodeSupervisors } from "../../nodes/NodeSupervisors.js"
import { ServiceCoordinators } from "../../services/ServiceCoordinators.js"
import { makeLookups, type MasterSettings, type SomeMasterHandlers, viaDb } from "./Common.js"

/**
 * The master's supervision tree as it is now, for `mcp tree`. The root answering at all means its
 * RPC server serves, so it carries the uptime rather than a separate fixed "RpcServer" entry.
 * Children: the node supervisors (live fibers, their restarts and last errors), the service
 * actors (each with its queue and restarts) and the edge reconciler's fiber.
 */
export const supervisionTree = (startedAt: number): Effect.Effect<Operations.SupervisionNode, never, NodeSupervisors | ServiceCoordinators | EdgeReconciler> =>
  Effect.gen(function* () {
    const supervisors = yield* NodeSupervisors
    const coordinators = yield* ServiceCoordinators
    const reconciler = yield* EdgeReconciler
    const now = yield* Clock.currentTimeMillis
    const stats = [...(yield* coordinators.stats)].sort((a, b) => a.key.localeCompare(b.key))
    const nodes = yield* supervisors.tree
    const edge = yield* reconciler.status
    const edgeState = edge.state === "idle"
      ? "not started"
      : `${edge.state}, ${edge.rounds} round${edge.rounds === 1 ? "" : "s"}${edge.lastRoundAt === undefined ? "" : `, last at ${edge.lastRoundAt.toISOString()} with ${edge.lastFailures} failure${edge.lastFailures === 1 ? "" : "s"}`}`
    const reconcilerNode: Operations.SupervisionNode = {
      name: "EdgeReconciler",
      state: edgeState,
      restarts: edge.restarts,
      ...(edge.lastError === undefined ? {} : { lastError: edge.lastError }),
      children: []
    }
    const coordinatorsNode: Operations.SupervisionNode = {
      name: "ServiceCoordinators",
      state: `${stats.length} active`,
      restarts: stats.reduce((n, s) => n + s.restarts, 0),
      children: stats.map((s) => ({ name: s.key, state: `${s.pending} pending`, restarts: s.restarts, children: [] }))
    }
    return {
      name: "mcp-master",
      state: `serving, up ${Duration.format(Duration.millis(Math.max(0, now - startedAt)))}`,
      restarts: 0,
      children: [nodes, coordinatorsNode, reconcilerNode]
    }
  })

export const handlers = (settings: Pick<MasterSettings, "fanoutTimeout">) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const agents = yield* AgentClients
    const lookup = yield* EdgeResolver.DnsLookup
    const { fleet, placedOn, reachable } = yield* makeLookups
    // Uptime counts from when these handlers were built, at the master's start.
    const treeNow = supervisionTree(yield* Clock.currentTimeMillis).pipe(
      Effect.provideService(NodeSupervisors, yield* NodeSupervisors),
      Effect.provideService(ServiceCoordinators, yield* ServiceCoordinators),
      Effect.provideService(EdgeReconciler, yield* EdgeReconciler)
    )

    /** Every node's services, asked of all agents at once; an unhealthy node is not asked. */
    const ps = Effect.gen(function* () {
      const nodes = yield* fleet
      const results = yield* Effect.forEach(nodes, ({ row, health }) => {
        if (health === "unhealthy") return Effect.succeed(Either.left({ node: row.info.name, reason: "node is unhealthy (missed heartbeats and failed its probe)" }))
        return agents.call(row.info.name, row.info.addresses, (agent) => agent.Ps()).pipe(
          Effect.timeoutFail({ duration: settings.fanoutTimeout, onTimeout: () => `no answer within ${Duration.toMillis(settings.fanoutTimeout)} ms` }),
          Effect.map((services) => Either.right(services)),
          Effect.catchAll((e) => Effect.succeed(Either.left({ node: row.info.name, reason: typeof e === "string" ? e : e.message })))
        )
      }, { concurrency: "unbounded" })
      return {
        services: results.flatMap((r) => (Either.isRight(r) ? r.right : [])),
        unreachable: results.flatMap((r) => (Either.isLeft(r) ? [r.left] : []))
      }
    })

    return {
      Ps: () => ps,
      Status: ({ service }) =>
        Effect.gen(function* () {
          const info = yield* placedOn(service)
          return yield* Effect.mapError(agents.call(info.name, info.addresses, (agent) => agent.Status({ service })), asPeerFailure(info.name, `status of ${service}`))
        }),
      Logs: (payload) =>
        Stream.unwrap(
          Effect.map(Effect.flatMap(placedOn(payload.service), (info) => Effect.map(reachable(info), (agent) => ({ agent, info }))), ({ agent, info }) =>
            Stream.mapError(agent.Logs(payload), asPeerFailure(info.name, `logs of ${payload.service}`)))
        ),
      Events: ({ follow, limit }) =>
        EventLog.stream((n, afterId) => viaDb(db.events(n, afterId)), { limit, follow }).pipe(Stream.map((e) => EventLog.toFleetEvent(e, e.node))),
      EdgeRoutesList: () => Effect.map(viaDb(db.edgeRoutes), (rows) => rows.filter((r) => r.state === "active").map((r) => r.route)),
      DnsCheck: () =>
        Effect.gen(function* () {
          const rows = (yield* viaDb(db.edgeRoutes)).filter((r) => r.state === "active")
          const edges = EdgeResolver.edgeCandidates((yield* viaDb(db.nodes)).map((n) => n.info))
          return yield* EdgeResolver.dnsCheck(rows.map((r) => ({ hostname: r.route.hostname, edgeNode: r.route.edgeNode })), edges).pipe(Effect.provideService(EdgeResolver.DnsLookup, lookup))
        }),
      Tree: () => treeNow
    } satisfies SomeMasterHandlers
  })
