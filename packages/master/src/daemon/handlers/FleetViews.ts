/**
 * The CLI's read-only views of the fleet: ps and status (asked of the agents), logs, events,
 * edge routes, the DNS check, the master's supervision tree and the fleet's software versions
 * (agent status). A fleet-wide view answers with
 * what it could gather: a node that is down or slow is reported, not waited for.
 */
import type { Operations } from "@mcp/domain"
import * as EventLog from "@mcp/rpc/EventLog"
import { PROTOCOL_VERSION } from "@mcp/rpc/Protocol"
import { Clock, Duration, Effect, Either, Option, Stream } from "effect"
import { MasterDb } from "../../db/MasterDb.js"
import { EdgeReconciler } from "../../edge/EdgeReconciler.js"
import * as EdgeResolver from "../../edge/EdgeResolver.js"
import { AgentClients } from "../../fleet/AgentClients.js"
import { asPeerFailure } from "../../fleet/FleetCalls.js"
import { NodeSupervisors } from "../../nodes/NodeSupervisors.js"
import { ServiceCoordinators } from "../../services/ServiceCoordinators.js"
import { FANOUT_CONCURRENCY, makeLookups, type MasterSettings, type SomeMasterHandlers, viaDb } from "./Common.js"

/**
 * What one node's agent supervises besides its RPC server (the `supervised` of its NodeInfo), or,
 * failing, why it did not say, short enough to sit in the node's line of `mcp tree`.
 */
export type AgentChildren = (node: string) => Effect.Effect<ReadonlyArray<Operations.SupervisionNode>, string>

/**
 * The node supervisors' entry with what each node's agent supervises nested under that node's
 * entry, all agents asked at once. An unhealthy node is not asked: it missed its heartbeats and
 * failed its probe, so asking would only hold the tree up until the timeout. A node whose agent
 * does not answer keeps its entry, childless, with the reason in its state, so the tree still
 * answers and says why that node's children are missing.
 */
const withAgentChildren = (supervisorsEntry: Operations.SupervisionNode, agentChildren: AgentChildren): Effect.Effect<Operations.SupervisionNode, never, NodeSupervisors> =>
  Effect.gen(function* () {
    const supervisors = yield* NodeSupervisors
    // The supervisors' entries are named by their node.
    const nodeEntries = yield* Effect.forEach(supervisorsEntry.children, (nodeEntry) =>
      Effect.flatMap(supervisors.health(nodeEntry.name), (health): Effect.Effect<Operations.SupervisionNode> =>
        Option.exists(health, (h) => h.status === "unhealthy")
          ? Effect.succeed(nodeEntry)
          : Effect.match(agentChildren(nodeEntry.name), {
            onSuccess: (children) => ({ ...nodeEntry, children }),
            onFailure: (reason) => ({ ...nodeEntry, state: `${nodeEntry.state}, agent did not answer: ${reason}` })
          })), { concurrency: FANOUT_CONCURRENCY })
    return { ...supervisorsEntry, children: nodeEntries }
  })

/**
 * The master's supervision tree as it is now, for `mcp tree`. The root answering at all means its
 * RPC server serves, so it carries the uptime rather than a separate fixed "RpcServer" entry.
 * Children: the node supervisors (live fibers, their restarts and last errors, and under each
 * node what its agent supervises, from `agentChildren`), the service actors (each with its queue
 * and restarts) and the edge reconciler's fiber.
 */
export const supervisionTree = (
  startedAt: number,
  agentChildren: AgentChildren
): Effect.Effect<Operations.SupervisionNode, never, NodeSupervisors | ServiceCoordinators | EdgeReconciler> =>
  Effect.gen(function* () {
    const supervisors = yield* NodeSupervisors
    const coordinators = yield* ServiceCoordinators
    const reconciler = yield* EdgeReconciler
    const now = yield* Clock.currentTimeMillis
    const stats = [...(yield* coordinators.stats)].sort((a, b) => a.key.localeCompare(b.key))
    const nodes = yield* withAgentChildren(yield* supervisors.tree, agentChildren)
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

/** Whole seconds from an ISO time to `now` (ms), never negative; undefined for an unreadable time. */
export const secondsSince = (iso: string, now: number): number | undefined => {
  const t = Date.parse(iso)
  return Number.isNaN(t) ? undefined : Math.max(0, Math.floor((now - t) / 1000))
}

export const handlers = (settings: Pick<MasterSettings, "fanoutTimeout" | "version">) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const agents = yield* AgentClients
    const lookup = yield* EdgeResolver.DnsLookup
    const { fleet, nodeRow, placedOn, reachable } = yield* makeLookups
    // Uptime counts from when these handlers were built, at the master's start.
    const startedAt = yield* Clock.currentTimeMillis

    /** What the node's agent answers it supervises, within the fan-out timeout; else why not. */
    const agentChildren: AgentChildren = (node) =>
      nodeRow(node).pipe(
        Effect.flatMap((row) => agents.call(node, row.info.addresses, (agent) => agent.NodeInfo())),
        Effect.timeoutFail({ duration: settings.fanoutTimeout, onTimeout: () => `timed out after ${Duration.toMillis(settings.fanoutTimeout)} ms` }),
        // An agent that predates reporting them supervises nothing the tree can show.
        Effect.map((report) => report.supervised ?? []),
        // NodeUnreachable's message repeats the node the tree line already names: its reason says it.
        Effect.mapError((e) => (typeof e === "string" ? e : e._tag === "NodeUnreachable" ? e.reason : e.message))
      )
    const treeNow = supervisionTree(startedAt, agentChildren).pipe(
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
      }, { concurrency: FANOUT_CONCURRENCY })
      return {
        services: results.flatMap((r) => (Either.isRight(r) ? r.right : [])),
        unreachable: results.flatMap((r) => (Either.isLeft(r) ? [r.left] : []))
      }
    })

    /**
     * The master's version and protocol, then each node's as its agent answers NodeInfo now, all
     * asked at once within the fan-out timeout; a node that does not answer (or is unhealthy, so
     * not asked) is reported unreachable with what it last registered with.
     */
    const agentStatus = Effect.gen(function* () {
      const nodes = yield* fleet
      const now = yield* Clock.currentTimeMillis
      const rows = yield* Effect.forEach(nodes, ({ row, health }): Effect.Effect<Operations.AgentVersion> => {
        const stored = { node: row.info.name, role: row.info.role, version: row.info.version, arch: row.info.arch }
        const unreachable = (reason: string): Operations.AgentVersion => ({ ...stored, reachable: false, unreachable: reason })
        if (health === "unhealthy") return Effect.succeed(unreachable("node is unhealthy (missed heartbeats and failed its probe)"))
        return agents.call(row.info.name, row.info.addresses, (agent) => agent.NodeInfo()).pipe(
          Effect.timeoutFail({ duration: settings.fanoutTimeout, onTimeout: () => `no answer within ${Duration.toMillis(settings.fanoutTimeout)} ms` }),
          Effect.flatMap((report) =>
            Effect.map(Clock.currentTimeMillis, (answeredAt): Operations.AgentVersion => {
              const uptimeSeconds = report.startedAt === undefined ? undefined : secondsSince(report.startedAt, answeredAt)
              return {
                ...stored,
                reachable: true,
                version: report.info.version,
                arch: report.info.arch,
                protocol: report.protocol,
                ...(report.startedAt === undefined ? {} : { startedAt: report.startedAt }),
                ...(uptimeSeconds === undefined ? {} : { uptimeSeconds })
              }
            })
          ),
          Effect.catchAll((e) => Effect.succeed(unreachable(typeof e === "string" ? e : e.message)))
        )
      }, { concurrency: FANOUT_CONCURRENCY })
      return {
        at: new Date(now).toISOString(),
        master: {
          version: settings.version,
          protocol: PROTOCOL_VERSION,
          startedAt: new Date(startedAt).toISOString(),
          uptimeSeconds: Math.max(0, Math.floor((now - startedAt) / 1000))
        },
        nodes: rows
      }
    })

    return {
      Ps: () => ps,
      AgentStatus: () => agentStatus,
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
      Events: ({ follow, limit, ...filter }) =>
        EventLog.stream((n, afterId) => viaDb(db.events(n, afterId, filter)), { limit, follow }).pipe(Stream.map((e) => EventLog.toFleetEvent(e, e.node))),
      EdgeRoutesList: () => Effect.map(viaDb(db.edgeRoutes), (rows) => rows.filter((r) => r.state === "active").map((r) => r.route)),
      DnsCheck: () =>
        Effect.gen(function* () {
          const rows = (yield* viaDb(db.edgeRoutes)).filter((r) => r.state === "active")
          const edges = EdgeResolver.edgeCandidates((yield* viaDb(db.nodesOfRole("edge"))).map((n) => n.info))
          return yield* EdgeResolver.dnsCheck(rows.map((r) => ({ hostname: r.route.hostname, edgeNode: r.route.edgeNode })), edges).pipe(Effect.provideService(EdgeResolver.DnsLookup, lookup))
        }),
      Tree: () => treeNow
    } satisfies SomeMasterHandlers
  })
