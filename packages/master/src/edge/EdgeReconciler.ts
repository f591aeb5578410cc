/**
 * Converges edge nodes to the master's edge route rows: an `active` row whose route is missing
 * (or points elsewhere) is set up again, a `removing` row's route is removed and the row then
 * dropped, and a route no row accounts for is adopted when its service is placed (a master that
 * lost its database) or removed when it is not. This is what finishes the cross-node saga's
 * work when an edge node could not be reached at the time. It also removes the old copy of a
 * moved service that its old node could not remove at the time of the move (also between rounds,
 * `retireCopiesNow`, which OpenWorkRetry calls soon after a move left one). Between rounds too,
 * OpenWorkRetry has the services whose open sagas it just finished converged (`reconcileServicesNow`).
 *
 * Each service is repaired inside its actor, after any deploy or undeploy of it under way, and
 * with a fresh listing taken there: a listing from before the actor ran could be stale.
 */
import type { Node, Routes } from "@mcp/domain"
import * as Failures from "@mcp/rpc/Failures"
import { Cause, Clock, type Duration, Effect, Either, Metric, Option, Ref, Schedule } from "effect"
import { FleetCalls } from "../fleet/FleetCalls.js"
import { MasterDb } from "../db/MasterDb.js"
import { ServiceCoordinators } from "../services/ServiceCoordinators.js"

export interface Repair {
  readonly hostname: string
  readonly edgeNode: string
  readonly action: "set-up" | "removed" | "adopted" | "forgotten"
}

export interface ReconcileReport {
  readonly repairs: ReadonlyArray<Repair>
  /** Old copies of moved services removed this round. */
  readonly retired?: ReadonlyArray<{ readonly service: string; readonly node: string }>
  /** What could not be done this round (edge unreachable, …): retried on the next. */
  readonly failures: ReadonlyArray<{ readonly target: string; readonly reason: string }>
}

/** The reconciling fiber (`run`) as `mcp tree` shows it. */
export interface ReconcilerStatus {
  /** "idle" until `run` is started (tests call runOnce directly); "stopped" once `run` ended. */
  readonly state: "idle" | "running" | "restarting" | "stopped"
  /** Rounds `run` completed. */
  readonly rounds: number
  /** Times `run` crashed (a defect, e.g. the database) and was restarted. */
  readonly restarts: number
  readonly lastRoundAt: Date | undefined
  /** Failures of the last completed round (each retried next round). */
  readonly lastFailures: number
  /** The last crash, or the first failure of the last round that had any. */
  readonly lastError: string | undefined
}

const reconcileFailures = Metric.counter("mcp_edge_reconcile_failures", {
  incremental: true,
  description: "Edge route repairs that failed and wait for the next reconcile round"
})

const sameTarget = (a: Routes.EdgeRoute, b: Routes.EdgeRoute) =>
  a.workerNode === b.workerNode && a.backendHostname === b.backendHostname && a.backendPort === b.backendPort && a.service === b.service

export const make = Effect.gen(function* () {
  const db = yield* MasterDb
  const fleet = yield* FleetCalls
  const coordinators = yield* ServiceCoordinators
  const viaDb = Failures.fatal("the master database")

  /** Edge nodes the master knows, plus those named by rows (a node removed since). */
  const edgeNodes = Effect.map(viaDb(db.nodesOfRole("edge")), (rows) => rows.map((r) => r.info))

  const listAll = (edges: ReadonlyArray<Node.NodeInfo>, failures: Array<{ target: string; reason: string }>) =>
    Effect.forEach(edges, (edge) =>
      Effect.map(Effect.either(fleet.listEdgeRoutes(edge)), (listed) => {
        if (Either.isLeft(listed)) {
          failures.push({ target: edge.name, reason: `cannot list edge routes: ${listed.left.message}` })
          return [edge, undefined] as const
        }
        return [edge, listed.right] as const
      }), { concurrency: "unbounded" })

  const reconcileService = (service: string) =>
    Effect.gen(function* () {
      const repairs: Array<Repair> = []
      const failures: Array<{ target: string; reason: string }> = []
      const attempt = <E extends { readonly message: string }>(target: string, effect: Effect.Effect<unknown, E>) =>
        Effect.map(Effect.either(effect), (r) => {
          if (Either.isLeft(r)) failures.push({ target, reason: r.left.message })
          return Either.isRight(r)
        })

      // A saga left open (its worker did not answer) holds the service's routes where it left
      // them: they follow its outcome once it is finished, not this round.
      const open = (yield* viaDb(db.sagasIn("running"))).filter((s) => s.service === service)
      if (open.length > 0) {
        failures.push({ target: service, reason: `its ${open.map((s) => s.kind).join(", ")} is not finished; its edge routes wait for it` })
        return { repairs, failures } satisfies ReconcileReport
      }
      const edges = yield* edgeNodes
      const listings = yield* listAll(edges, failures)
      const rows = yield* viaDb(db.edgeRoutesOf(service))
      const placed = Option.isSome(yield* viaDb(db.placement(service)))

      for (const [edge, routes] of listings) {
        if (routes === undefined) continue
        const present = routes.filter((r) => r.service === service)
        // Rows for this edge: active ones must be there, removing ones must not.
        const handled = new Set<string>()
        for (const row of rows.filter((r) => r.route.edgeNode === edge.name)) {
          handled.add(row.route.hostname)
          const live = present.find((r) => r.hostname === row.route.hostname)
          if (row.state === "active" && (live === undefined || !sameTarget(live, row.route))) {
            const target = `${row.route.hostname} on ${edge.name}`
            const set = yield* Effect.either(fleet.setupEdgeRoute(edge, {
              hostname: row.route.hostname, service, workerNode: row.route.workerNode, backendHostname: row.route.backendHostname, backendPort: row.route.backendPort
            }))
            if (Either.isLeft(set)) failures.push({ target, reason: set.left.message })
            else {
              yield* viaDb(db.putEdgeRoute(set.right, "active"))
              repairs.push({ hostname: row.route.hostname, edgeNode: edge.name, action: "set-up" })
            }
          } else if (row.state === "removing") {
            // Asked even when the edge does not list the route: it lists the routes that serve,
            // and one whose removal it could not finish (a full disk) is still in its proxy.
            // Removing what is gone is a no-op there.
            if (!(yield* attempt(`${row.route.hostname} on ${edge.name}`, fleet.removeEdgeRoute(edge, row.route.hostname)))) continue
            yield* viaDb(db.deleteEdgeRoute(row.route.hostname))
            repairs.push({ hostname: row.route.hostname, edgeNode: edge.name, action: live === undefined ? "forgotten" : "removed" })
          } else if (row.state === "active" && live !== undefined && row.route.certSerial !== live.certSerial) {
            // The edge renewed the certificate: keep the master's record current for `mcp edge list`.
            yield* viaDb(db.putEdgeRoute(live, "active"))
          }
        }
        // Routes on this edge no row accounts for.
        for (const live of present.filter((r) => !handled.has(r.hostname))) {
          const row = Option.getOrUndefined(yield* viaDb(db.edgeRoute(live.hostname)))
          // This edge serves the name by some row (this service's, handled above, or another
          // service's that took the name over, whose own repair re-points the route).
          if (row !== undefined && row.route.edgeNode === edge.name) continue
          if (row === undefined && placed) {
            yield* viaDb(db.putEdgeRoute(live, "active"))
            repairs.push({ hostname: live.hostname, edgeNode: edge.name, action: "adopted" })
            continue
          }
          if (yield* attempt(`${live.hostname} on ${edge.name}`, fleet.removeEdgeRoute(edge, live.hostname))) {
            repairs.push({ hostname: live.hostname, edgeNode: edge.name, action: "removed" })
          }
        }
      }
      // Rows whose edge node the master no longer knows cannot be served or removed there.
      for (const row of rows.filter((r) => !edges.some((e) => e.name === r.route.edgeNode))) {
        failures.push({ target: `${row.route.hostname} on ${row.route.edgeNode}`, reason: `edge node ${row.route.edgeNode} is not known to this master; add it back (mcp node add) or undeploy ${service}` })
      }
      for (const r of repairs) {
        yield* viaDb(db.addEvent(r.edgeNode, "deploy", service, `edge reconciler: ${r.hostname} ${r.action}`))
        yield* Effect.logInfo(`edge reconciler: ${service}: ${r.hostname} on ${r.edgeNode} ${r.action}`)
      }
      return { repairs, failures } satisfies ReconcileReport
    })

  /** Removes copies of moved services from their old nodes (a copy the master placed back there stays). */
  const retireStaleCopies = (failures: Array<{ target: string; reason: string }>) =>
    Effect.gen(function* () {
      const retired: Array<{ service: string; node: string }> = []
      for (const copy of yield* viaDb(db.staleCopies)) {
        const done = yield* coordinators.submit(copy.service, Effect.gen(function* () {
          const placed = yield* viaDb(db.placement(copy.service))
          const node = yield* viaDb(db.node(copy.node))
          if (Option.isSome(placed) && placed.value === copy.node) return true
          if (Option.isNone(node)) {
            failures.push({ target: `${copy.service} on ${copy.node}`, reason: `node ${copy.node} is not known to this master; remove the copy there by hand` })
            return false
          }
          const gone = yield* Effect.either(fleet.undeploy(node.value.info, copy.service))
          if (Either.isLeft(gone) && gone.left._tag !== "ServiceNotFound") {
            failures.push({ target: `${copy.service} on ${copy.node}`, reason: `cannot remove the old copy: ${gone.left.message}` })
            return false
          }
          return true
        }))
        if (!done) continue
        yield* viaDb(db.withTransaction(Effect.all([
          db.deleteStaleCopy(copy.service, copy.node),
          db.addEvent(copy.node, "deploy", copy.service, `reconciler: old copy of ${copy.service} removed from ${copy.node}`)
        ])))
        retired.push(copy)
      }
      return retired
    })

  /** One round over every service with edge rows or edge routes, and every stale copy. */
  const runOnce = Effect.gen(function* () {
    const failures: Array<{ target: string; reason: string }> = []
    const retired = yield* retireStaleCopies(failures)
    const listings = yield* listAll(yield* edgeNodes, failures)
    const services = new Set<string>((yield* viaDb(db.edgeRoutes)).map((r) => r.route.service))
    for (const [, routes] of listings) for (const r of routes ?? []) services.add(r.service)
    const repairs: Array<Repair> = []
    for (const service of [...services].sort()) {
      const report = yield* coordinators.submit(service, reconcileService(service))
      repairs.push(...report.repairs)
      failures.push(...report.failures.filter((f) => !failures.some((g) => g.target === f.target && g.reason === f.reason)))
    }
    for (const f of failures) {
      yield* Effect.logWarning(`edge reconciler: ${f.target}: ${f.reason} (retried next round)`)
      yield* Metric.increment(reconcileFailures)
    }
    return { repairs, retired, failures } satisfies ReconcileReport
  })

  const status = yield* Ref.make<ReconcilerStatus>({ state: "idle", rounds: 0, restarts: 0, lastRoundAt: undefined, lastFailures: 0, lastError: undefined })

  const round = Effect.tap(runOnce, (report) =>
    Effect.flatMap(Clock.currentTimeMillis, (now) =>
      Ref.update(status, (s) => ({
        ...s,
        state: "running" as const,
        rounds: s.rounds + 1,
        lastRoundAt: new Date(now),
        lastFailures: report.failures.length,
        lastError: report.failures.length === 0 ? s.lastError : `${report.failures[0]!.target}: ${report.failures[0]!.reason}`
      }))))

  /**
   * Rounds forever, `every` apart; the first one at once (a restarted master may have work left).
   * A round that dies (the database, a bug) is counted and restarted with backoff: edges must not
   * silently stop converging.
   */
  const run = (every: Duration.DurationInput) =>
    Effect.gen(function* () {
      const rounds = Effect.zipRight(Ref.update(status, (s) => ({ ...s, state: "running" as const })), Effect.repeat(round, Schedule.spaced(every)))
      yield* rounds.pipe(
        Effect.catchAllDefect((defect) => Effect.fail(defect)),
        Effect.tapError((defect) =>
          Effect.zipRight(
            Effect.logError("edge reconciler crashed; restarting", Cause.die(defect)),
            Ref.update(status, (s) => ({
              ...s,
              state: "restarting" as const,
              restarts: s.restarts + 1,
              lastError: `reconciler crashed: ${defect instanceof Error ? defect.message : String(defect)}`
            }))
          )
        ),
        Effect.retry(Schedule.exponential("1 second", 2).pipe(Schedule.union(Schedule.spaced(every))))
      )
    }).pipe(
      Effect.onExit(() => Ref.update(status, (s) => ({ ...s, state: "stopped" as const }))),
      Effect.asVoid
    )

  /**
   * Between rounds (OpenWorkRetry, soon after a move left one): the old copies of moved services
   * removed now where their node can; what cannot is counted and logged at debug level (the
   * rounds log it as a warning). Returns those removed.
   */
  const retireCopiesNow = Effect.gen(function* () {
    const failures: Array<{ target: string; reason: string }> = []
    const retired = yield* retireStaleCopies(failures)
    for (const f of failures) {
      yield* Effect.logDebug(`edge reconciler: ${f.target}: ${f.reason} (retried)`)
      yield* Metric.increment(reconcileFailures)
    }
    return retired
  })

  /**
   * Between rounds (OpenWorkRetry, once sagas left open are finished): the edge routes of these
   * services converged now, each in its service's actor. A finished saga leaves its routes to the
   * reconciler, and its next round could be a whole reconcile interval away. What fails is
   * counted and logged at debug level; the rounds retry it and log it as a warning.
   */
  const reconcileServicesNow = (services: ReadonlyArray<string>) =>
    Effect.forEach(services, (service) =>
      Effect.flatMap(coordinators.submit(service, reconcileService(service)), (report) =>
        Effect.forEach(report.failures, (f) =>
          Effect.zipRight(Effect.logDebug(`edge reconciler: ${f.target}: ${f.reason} (retried)`), Metric.increment(reconcileFailures)), { discard: true })), { discard: true })

  /** The old copies of moved services not removed yet. */
  const staleCopies = viaDb(db.staleCopies)

  return { runOnce, run, reconcileService, reconcileServicesNow, retireCopiesNow, staleCopies, status: Ref.get(status) } as const
})

export class EdgeReconciler extends Effect.Service<EdgeReconciler>()("@mcp/master/EdgeReconciler", { effect: make }) {}
