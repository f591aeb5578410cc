/**
 * The master's RPC handlers: MasterRpcs for the CLI (placement, deploy routing, fleet views,
 * node registry) and ControlRpcs for agents (register, heartbeat). Commands for one service
 * go through that service's actor, so they never race across nodes.
 */
import { Deploy, Errors, Health, Node, Operations, Placement, Validation } from "@mcp/domain"
import { ControlRpcs, EventLog, Failures, MasterRpcs } from "@mcp/rpc"
import { Clock, Duration, Effect, Either, Layer, Mailbox, Option, Stream } from "effect"
import { AgentClients } from "../fleet/AgentClients.js"
import { MasterDb } from "../db/MasterDb.js"
import { NodeSupervisors } from "../nodes/NodeSupervisors.js"
import { ServiceCoordinators } from "../services/ServiceCoordinators.js"
import * as CrossNodeSaga from "../services/CrossNodeSaga.js"
import { EdgeReconciler } from "../edge/EdgeReconciler.js"
import * as EdgeResolver from "../edge/EdgeResolver.js"
import { asPeerFailure } from "../fleet/FleetCalls.js"

export interface MasterSettings {
  readonly internalZone: string
  readonly heartbeatInterval: Duration.Duration
  readonly missThreshold: number
  readonly fanoutTimeout: Duration.Duration
}

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

const nameOf = (raw: unknown) => (typeof raw === "object" && raw !== null && "name" in raw ? String(raw.name) : "(unnamed)")

export const layer = (settings: MasterSettings) => {
  const master = MasterRpcs.toLayer(
    Effect.gen(function* () {
      const db = yield* MasterDb
      const agents = yield* AgentClients
      const supervisors = yield* NodeSupervisors
      const coordinators = yield* ServiceCoordinators
      const saga = yield* CrossNodeSaga.CrossNodeSaga
      const lookup = yield* EdgeResolver.DnsLookup
      const viaDb = Failures.fatal("the master database")
      const treeNow = supervisionTree(yield* Clock.currentTimeMillis).pipe(
        Effect.provideService(NodeSupervisors, supervisors),
        Effect.provideService(ServiceCoordinators, coordinators),
        Effect.provideService(EdgeReconciler, yield* EdgeReconciler)
      )

      const healthOf = (name: string, stored: Health.HealthStatus) =>
        Effect.map(supervisors.health(name), Option.match({ onNone: () => stored, onSome: (h) => h.status }))

      const fleet = Effect.gen(function* () {
        const nodes = yield* viaDb(db.nodes)
        return yield* Effect.forEach(nodes, (n) =>
          Effect.map(healthOf(n.info.name, n.health), (health) => ({ row: n, health }))
        )
      })

      const nodeRow = (name: string) =>
        Effect.flatMap(viaDb(db.node(name)), Option.match({
          onNone: () => Effect.fail(new Errors.NodeNotFound({ node: name })),
          onSome: Effect.succeed
        }))

      /** The node a service was placed on, or ServiceNotFound. */
      const placedOn = (service: string) =>
        Effect.flatMap(viaDb(db.placement(service)), Option.match({
          onNone: () => Effect.fail(new Errors.ServiceNotFound({ service })),
          onSome: (node) => Effect.map(Effect.orElseFail(nodeRow(node), () => new Errors.ServiceNotFound({ service })), (row) => row.info)
        }))

      /** An agent client for the node, on the first address that answers. */
      const reachable = (info: Node.NodeInfo) =>
        Effect.mapError(agents.call(info.name, info.addresses, (agent) => Effect.as(agent.Health(), agent)), asPeerFailure(info.name, "answer a health check"))

      const forward = <A, E extends { readonly _tag: string }>(service: string, operation: string, f: (agent: Effect.Effect.Success<ReturnType<typeof reachable>>) => Effect.Effect<A, E>) =>
        coordinators.submit(service, Effect.gen(function* () {
          const info = yield* placedOn(service)
          return yield* Effect.mapError(agents.call(info.name, info.addresses, f), asPeerFailure(info.name, operation))
        }))

      /** Decodes and places the definition, then runs the cross-node saga, streaming its steps. */
      const deployJob = (raw: unknown, dryRun: boolean, emit: (e: Deploy.DeployEvent) => Effect.Effect<void>) =>
        Effect.gen(function* () {
          const decoded = Validation.decodeDefinition(raw, { internalZone: settings.internalZone })
          if (Either.isLeft(decoded)) return yield* new Errors.InvalidDefinition({ service: nameOf(raw), problems: decoded.left })
          const def = decoded.right
          // A deployed service stays where it is unless its pin changes; new ones are placed.
          const current = yield* viaDb(db.placement(def.name))
          const nodes = yield* fleet
          const placed = Option.isSome(current) && (def.node === undefined || def.node === current.value)
            ? Either.right({ node: current.value, reason: "already placed there (redeploy)" })
            : Placement.place(
                { service: def.name, node: def.node, tier: def.tier },
                nodes.map(({ row, health }) => ({ name: row.info.name, role: row.info.role, health, resources: row.resources }))
              )
          if (Either.isLeft(placed)) return yield* new Errors.PlacementFailed({ service: def.name, reason: placed.left })
          const target = nodes.find((n) => n.row.info.name === placed.right.node)!.row.info
          yield* emit(new Deploy.DeployStep({ node: target.name, step: "place", status: "done", detail: `${target.name}: ${placed.right.reason}` }))
          yield* saga.deploy({ definition: def, raw, worker: target, placementReason: placed.right.reason, dryRun }, emit)
        })

      /** Runs a stream inside the service's actor, so one service's deploys never overlap. */
      const serialized = <A, E>(service: string, job: (emit: (a: A) => Effect.Effect<void>) => Effect.Effect<void, E>) =>
        Stream.unwrapScoped(
          Effect.gen(function* () {
            const mailbox = yield* Mailbox.make<A, E>()
            const run = job((a) => Effect.asVoid(mailbox.offer(a))).pipe(Effect.exit, Effect.flatMap((exit) => mailbox.done(exit)))
            yield* Effect.forkScoped(coordinators.submit(service, run))
            return Mailbox.toStream(mailbox)
          })
        )

      return {
        Deploy: ({ definition: raw, dryRun }) => serialized<Deploy.DeployEvent, CrossNodeSaga.DeployError>(nameOf(raw), (emit) => deployJob(raw, dryRun, emit)),
        Undeploy: ({ service }) => coordinators.submit(service, Effect.flatMap(placedOn(service), (worker) => saga.undeploy(service, worker))),
        Stop: ({ service }) => forward(service, "stop {service}".replace("{service}", service), (agent) => agent.Stop({ service })),
        Start: ({ service }) => forward(service, "start {service}".replace("{service}", service), (agent) => agent.Start({ service })),
        Restart: ({ service }) => forward(service, "restart {service}".replace("{service}", service), (agent) => agent.Restart({ service })),
        Ps: () =>
          Effect.gen(function* () {
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
          }),
        Status: ({ service }) =>
          Effect.gen(function* () {
            const info = yield* placedOn(service)
            return yield* Effect.mapError(agents.call(info.name, info.addresses, (agent) => agent.Status({ service })), asPeerFailure(info.name, `status of ${service}`))
          }),
        Sync: ({ definitions }) =>
          Effect.gen(function* () {
            const decoded = definitions.map((raw) => ({ raw, result: Validation.decodeDefinition(raw, { internalZone: settings.internalZone }) }))
            const bad = decoded.find((d) => Either.isLeft(d.result))
            if (bad !== undefined && Either.isLeft(bad.result)) {
              return yield* Effect.fail(new Errors.InvalidDefinition({ service: nameOf(bad.raw), problems: bad.result.left }))
            }
            const stored: Array<string> = []
            const unchanged: Array<string> = []
            yield* viaDb(db.withTransaction(Effect.forEach(decoded, ({ raw }) =>
              Effect.gen(function* () {
                const name = nameOf(raw)
                const before = yield* db.definition(name)
                if (Option.isSome(before) && JSON.stringify(before.value) === JSON.stringify(raw)) unchanged.push(name)
                else {
                  yield* db.storeDefinition(name, raw)
                  stored.push(name)
                }
              })
            )))
            return { stored, unchanged }
          }),
        NodesList: () =>
          Effect.gen(function* () {
            const rows = yield* viaDb(db.nodes)
            return yield* Effect.forEach(rows, (r) =>
              Effect.map(supervisors.health(r.info.name), (h): Operations.NodeView => {
                const live = Option.getOrUndefined(h)
                const lastHeartbeat = live?.lastHeartbeat?.toISOString() ?? r.lastHeartbeat
                return {
                  info: r.info,
                  health: live?.status ?? r.health,
                  ...(lastHeartbeat === undefined ? {} : { lastHeartbeat }),
                  ...(r.resources === undefined ? {} : { resources: r.resources })
                }
              })
            )
          }),
        NodesAdd: ({ info }) =>
          Effect.gen(function* () {
            yield* viaDb(db.upsertNode(info, "cli"))
            yield* supervisors.watch(info.name, info.addresses)
            yield* viaDb(db.addEvent(info.name, "node", undefined, `added by operator (${info.role} at ${info.addresses.join(", ")})`))
            return { info, health: "unknown" as const }
          }),
        NodesRemove: ({ node }) =>
          Effect.gen(function* () {
            yield* nodeRow(node)
            const services = (yield* viaDb(db.placements)).filter((p) => p.node === node).map((p) => p.service)
            if (services.length > 0) {
              return yield* Effect.fail(new Errors.InvalidRequest({ problems: [{ path: "node", message: `node ${node} still runs ${services.join(", ")}; undeploy them first` }] }))
            }
            const published = (yield* viaDb(db.edgeRoutes)).filter((r) => r.route.edgeNode === node).map((r) => `${r.route.hostname} (${r.route.service})`)
            if (published.length > 0) {
              return yield* Effect.fail(new Errors.InvalidRequest({ problems: [{ path: "node", message: `edge node ${node} still serves ${published.join(", ")}; undeploy those services (or move their hostnames to another edge) first` }] }))
            }
            yield* supervisors.unwatch(node)
            yield* viaDb(db.removeNode(node))
            yield* viaDb(db.addEvent(node, "node", undefined, "removed by operator"))
          }),
        EdgeRoutesList: () => Effect.map(viaDb(db.edgeRoutes), (rows) => rows.filter((r) => r.state === "active").map((r) => r.route)),
        DnsCheck: () =>
          Effect.gen(function* () {
            const rows = (yield* viaDb(db.edgeRoutes)).filter((r) => r.state === "active")
            const edges = EdgeResolver.edgeCandidates((yield* viaDb(db.nodes)).map((n) => n.info))
            return yield* EdgeResolver.dnsCheck(rows.map((r) => ({ hostname: r.route.hostname, edgeNode: r.route.edgeNode })), edges).pipe(Effect.provideService(EdgeResolver.DnsLookup, lookup))
          }),
        Logs: (payload) =>
          Stream.unwrap(
            Effect.map(Effect.flatMap(placedOn(payload.service), (info) => Effect.map(reachable(info), (agent) => ({ agent, info }))), ({ agent, info }) =>
              Stream.mapError(agent.Logs(payload), asPeerFailure(info.name, `logs of ${payload.service}`)))
          ),
        Events: ({ follow, limit }) =>
          EventLog.stream((n, afterId) => viaDb(db.events(n, afterId)), { limit, follow }).pipe(Stream.map((e) => EventLog.toFleetEvent(e, e.node))),
        AgentRecover: ({ node, force }) =>
          Effect.gen(function* () {
            const rows = node === undefined ? yield* viaDb(db.nodes) : [yield* nodeRow(node)]
            return yield* Effect.forEach(rows.filter((r) => r.info.role !== "edge" || node !== undefined), (r) =>
              Effect.mapError(agents.call(r.info.name, r.info.addresses, (agent) => agent.Recover({ force })), asPeerFailure(r.info.name, "recover"))
            )
          }),
        Tree: () => treeNow
      }
    })
  )

  // The agents' contract counts in milliseconds.
  const heartbeatIntervalMs = Duration.toMillis(settings.heartbeatInterval)
  const deadlineMs = heartbeatIntervalMs * settings.missThreshold
  const control = ControlRpcs.toLayer(
    Effect.gen(function* () {
      const db = yield* MasterDb
      const supervisors = yield* NodeSupervisors
      return {
        Register: ({ info, resources }) =>
          Effect.gen(function* () {
            yield* Failures.fatal("the master database")(db.upsertNode(info, "register", resources))
            yield* supervisors.watch(info.name, info.addresses)
            yield* supervisors.heartbeat(info.name)
            yield* Failures.fatal("the master database")(db.addEvent(info.name, "node", undefined, `registered (${info.role}, ${info.arch}, version ${info.version})`))
            return { heartbeatIntervalMs, deadlineMs }
          }),
        Heartbeat: ({ node, resources, services }) =>
          Effect.gen(function* () {
            const known = yield* supervisors.heartbeat(node)
            if (!known) return { known }
            yield* Failures.fatal("the master database")(db.heartbeat(node, resources))
            // Agents are the truth about what runs: a master that lost its database learns
            // the placements back from heartbeats. Not for a service the master is deploying or
            // undeploying, or just did: its saga (or the recovery of one a killed master left
            // open) decides, and this heartbeat may predate what it did.
            const placed = new Set((yield* Failures.fatal("the master database")(db.placements)).map((p) => p.service))
            const settledSince = new Date((yield* Clock.currentTimeMillis) - 2 * deadlineMs)
            for (const s of services) {
              if (placed.has(s.service)) continue
              if (yield* Failures.fatal("the master database")(db.busySince(s.service, settledSince))) continue
              yield* Failures.fatal("the master database")(db.place(s.service, node))
              yield* Failures.fatal("the master database")(db.addEvent(node, "node", s.service, `placement learned from ${node}'s heartbeat`))
            }
            return { known }
          })
      }
    })
  )

  return Layer.merge(master, control)
}
