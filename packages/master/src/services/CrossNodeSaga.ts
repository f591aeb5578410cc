/**
 * Deploy and undeploy of one service across nodes: the worker's deploy, then one edge route per
 * public hostname on an edge node, then the master's record. A failure at any step undoes the
 * earlier ones on every node; what cannot be undone right away is left recorded for the edge
 * reconciler (EdgeReconciler.ts), never forgotten. Callers run these inside the service's actor.
 *
 * The master's edge route rows are the intent the reconciler converges edges to: an `active` row
 * is a route that must exist on its edge, a `removing` row one that must not.
 */
import { Deploy, Errors, Node, PublicRoutes, type Routes, type ServiceDefinition } from "@mcp/domain"
import { Failures } from "@mcp/rpc"
import { Context, Effect, Either, Layer, Option, Stream } from "effect"
import * as EdgeResolver from "../edge/EdgeResolver.js"
import { type EdgeRouteRequest, FleetCalls } from "../fleet/FleetCalls.js"
import { type EdgeRouteRow, MasterDb } from "../db/MasterDb.js"

export interface EdgeSettings {
  readonly internalZone: string
  readonly allowedDomains: ReadonlyArray<string>
  /** Used when a public hostname's DNS points at no known edge node. */
  readonly defaultEdge: string | undefined
}
export const EdgeSettings = Context.GenericTag<EdgeSettings>("@mcp/master/EdgeSettings")

export type DeployError = Errors.InvalidDefinition | Errors.DeployFailed | Errors.PeerFailed | Errors.PlacementFailed | Errors.NodeUnreachable
export type UndeployError = Errors.ServiceNotFound | Errors.DeployFailed | Errors.PeerFailed | Errors.NodeUnreachable

export interface DeployRequest {
  readonly definition: ServiceDefinition.ServiceDefinition
  /** The definition as the operator wrote it: what the worker decodes and the master stores. */
  readonly raw: unknown
  readonly worker: Node.NodeInfo
  readonly placementReason: string
  readonly dryRun: boolean
}

type Emit = (event: Deploy.DeployEvent) => Effect.Effect<void>

/** An edge route the saga wants, with the node that will serve it. */
interface WantedEdgeRoute {
  readonly request: EdgeRouteRequest
  readonly edge: Node.NodeInfo
}

const routeOf = (wanted: WantedEdgeRoute, fields?: Pick<Routes.EdgeRoute, "certSerial" | "certNotAfter">): Routes.EdgeRoute => ({
  hostname: wanted.request.hostname as Routes.EdgeRoute["hostname"],
  edgeNode: wanted.edge.name,
  workerNode: wanted.request.workerNode,
  backendHostname: wanted.request.backendHostname,
  backendPort: wanted.request.backendPort,
  service: wanted.request.service,
  certSerial: fields?.certSerial ?? "",
  certNotAfter: fields?.certNotAfter ?? ""
})

const requestOf = (route: Routes.EdgeRoute): EdgeRouteRequest => ({
  hostname: route.hostname,
  service: route.service,
  workerNode: route.workerNode,
  backendHostname: route.backendHostname,
  backendPort: route.backendPort
})

export const make = Effect.gen(function* () {
  const db = yield* MasterDb
  const fleet = yield* FleetCalls
  const settings = yield* EdgeSettings
  const lookup = yield* EdgeResolver.DnsLookup
  const viaDb = Failures.fatal("the master database")

  const nodeInfo = (name: string) => Effect.map(viaDb(db.node(name)), Option.map((row) => row.info))

  const edgeNodes = Effect.map(viaDb(db.nodes), (rows) => rows.filter((r) => r.info.role === "edge").map((r) => r.info))

  /** Picks the edge node for each public hostname; fails before anything changes. */
  const chooseEdges = (def: ServiceDefinition.ServiceDefinition, emit: Emit) =>
    Effect.gen(function* () {
      const routes = PublicRoutes.publicRoutes(def)
      if (routes.length === 0) return []
      const edges = yield* edgeNodes
      const candidates = EdgeResolver.edgeCandidates(edges)
      return yield* Effect.forEach(routes, (route) =>
        Effect.gen(function* () {
          const choice = yield* EdgeResolver.chooseEdge(def.name, route.hostname, candidates, settings.defaultEdge).pipe(Effect.provideService(EdgeResolver.DnsLookup, lookup))
          const edge = edges.find((e) => e.name === choice.node)!
          const detail = `${route.hostname} -> edge node ${edge.name} (${choice.via === "default" ? "default edge node" : `DNS ${choice.via}`})`
          if (choice.warning !== undefined) yield* Effect.logWarning(`deploy ${def.name}: ${choice.warning}`)
          yield* emit(new Deploy.DeployStep({ node: edge.name, step: "edge-resolve", status: "done", detail: choice.warning === undefined ? detail : `${detail}; warning: ${choice.warning}` }))
          return { route, edge }
        })
      )
    })

  /**
   * Puts back what a failed deploy changed on the worker: the previous definition when the
   * service ran there before, else nothing at all. Fails when the worker cannot be rolled back.
   */
  const restoreWorker = (service: string, worker: Node.NodeInfo, emit: Emit) =>
    Effect.gen(function* () {
      const before = yield* viaDb(db.placement(service))
      const previous = yield* viaDb(db.definition(service))
      if (Option.isSome(before) && before.value === worker.name && Option.isSome(previous)) {
        yield* emit(new Deploy.DeployStep({ node: worker.name, step: "worker", status: "compensating", detail: `redeploying the previous definition of ${service}` }))
        yield* Stream.runDrain(fleet.deploy(worker, previous.value, false))
      } else {
        yield* emit(new Deploy.DeployStep({ node: worker.name, step: "worker", status: "compensating", detail: `undeploying ${service}` }))
        yield* fleet.undeploy(worker, service)
      }
      yield* emit(new Deploy.DeployStep({ node: worker.name, step: "worker", status: "compensated", detail: `${service} is as it was before this deploy` }))
    })

  /**
   * Removes the routes a deployed service had before and no longer has (or that moved to
   * another edge node). A failure is left to the reconciler: the service itself is deployed.
   */
  const dropOldEdgeRoutes = (previousRows: ReadonlyArray<EdgeRouteRow>, chosen: ReadonlyArray<{ readonly route: PublicRoutes.PublicRoute; readonly edge: Node.NodeInfo }>, emit: Emit) =>
    Effect.gen(function* () {
      const kept = new Set(chosen.map((c) => `${c.route.hostname} ${c.edge.name}`))
      for (const old of previousRows) {
        if (kept.has(`${old.route.hostname} ${old.route.edgeNode}`)) continue
        const oldEdge = yield* nodeInfo(old.route.edgeNode)
        if (Option.isNone(oldEdge)) {
          yield* Effect.logWarning(`edge route ${old.route.hostname}: its edge node ${old.route.edgeNode} is no longer known; forgetting the route`)
          if (!chosen.some((c) => c.route.hostname === old.route.hostname)) yield* viaDb(db.deleteEdgeRoute(old.route.hostname))
          continue
        }
        const gone = yield* removeOrDefer(oldEdge.value, old.route.hostname, Option.some(old.route))
        yield* emit(new Deploy.DeployStep({ node: old.route.edgeNode, step: "edge", status: gone ? "done" : "skipped", detail: gone ? `${old.route.hostname} removed (no longer in the definition here)` : `${old.route.hostname} to be removed by the reconciler` }))
      }
    })

  /**
   * Undoes one edge route this deploy touched: a route that existed before gets its previous
   * backend back; a new one is removed. What the edge cannot do now is left for the reconciler.
   */
  const restoreEdgeRoute = (hostname: string, previous: Option.Option<EdgeRouteRow>, wanted: WantedEdgeRoute, emit: Emit) =>
    Effect.gen(function* () {
      if (Option.isSome(previous) && previous.value.state === "active") {
        const old = previous.value.route
        yield* viaDb(db.putEdgeRoute(old, "active"))
        const oldEdge = yield* nodeInfo(old.edgeNode)
        if (Option.isSome(oldEdge)) {
          const put = yield* Effect.either(fleet.setupEdgeRoute(oldEdge.value, requestOf(old)))
          if (Either.isLeft(put)) yield* Effect.logWarning(`edge route ${hostname}: cannot restore it on ${old.edgeNode} now (${put.left.message}); the reconciler retries`)
        }
        if (old.edgeNode !== wanted.edge.name) yield* removeOrDefer(wanted.edge, hostname, Option.none())
        yield* emit(new Deploy.DeployStep({ node: old.edgeNode, step: "edge", status: "compensated", detail: `${hostname} points at ${old.workerNode} again` }))
        return
      }
      yield* removeOrDefer(wanted.edge, hostname, Option.some(routeOf(wanted)))
      yield* emit(new Deploy.DeployStep({ node: wanted.edge.name, step: "edge", status: "compensated", detail: `${hostname} removed` }))
    })

  /**
   * Removes a route from an edge. When the edge cannot be reached the row is kept as `removing`
   * (`record` is what to keep when there is no row), so the reconciler finishes the job.
   */
  const removeOrDefer = (edge: Node.NodeInfo, hostname: string, record: Option.Option<Routes.EdgeRoute>) =>
    Effect.gen(function* () {
      const removed = yield* Effect.either(fleet.removeEdgeRoute(edge, hostname))
      const row = yield* viaDb(db.edgeRoute(hostname))
      // A row that now belongs to another edge node is someone else's intent: leave it.
      const ours = Option.isSome(row) && row.value.route.edgeNode === edge.name
      if (Either.isRight(removed)) {
        if (ours) yield* viaDb(db.deleteEdgeRoute(hostname))
        return true
      }
      yield* Effect.logWarning(`edge route ${hostname} on ${edge.name}: removal deferred (${removed.left.message}); the reconciler retries`)
      const keep = ours ? Option.some(row.value.route) : Option.isNone(row) ? record : Option.none()
      if (Option.isSome(keep)) yield* viaDb(db.putEdgeRoute(keep.value, "removing"))
      return false
    })

  const deploy = (request: DeployRequest, emit: Emit): Effect.Effect<void, DeployError> =>
    Effect.gen(function* () {
      const { definition: def, worker } = request
      const publics = PublicRoutes.publicRoutes(def)
      const disallowed = PublicRoutes.disallowedProblems(publics, settings.internalZone, settings.allowedDomains)
      // A public name belongs to one service at a time: taking another's would strand its route.
      const taken = yield* Effect.forEach(publics, (r) =>
        Effect.map(viaDb(db.edgeRoute(r.hostname)), Option.match({
          onNone: () => [],
          onSome: (row) => row.route.service === def.name ? [] : [{
            path: `${r.path}.hostname`,
            message: `public hostname "${r.hostname}" is already published by service ${row.route.service}; undeploy ${row.route.service} first, or use another name`
          }]
        })))
      const problems = [...disallowed, ...taken.flat()]
      if (problems.length > 0) return yield* new Errors.InvalidDefinition({ service: def.name, problems })
      const chosen = yield* chooseEdges(def, emit)

      if (request.dryRun) {
        return yield* Stream.runForEach(fleet.deploy(worker, request.raw, true), (e) =>
          emit(e._tag === "DeployPlanned"
            ? new Deploy.DeployPlanned({ plan: { ...e.plan, node: worker.name, placementReason: request.placementReason, edgeRoutes: chosen.map((c) => ({ hostname: c.route.hostname, edgeNode: c.edge.name })) } })
            : e)
        )
      }

      // Where the edges will forward to, asked before anything changes (a read).
      const backendHostname = chosen.length === 0 ? "" : yield* fleet.proxyAddress(worker)
      const wantedAll = chosen.map(({ route, edge }): WantedEdgeRoute => ({
        edge,
        request: { hostname: route.hostname, service: def.name, workerNode: worker.name, backendHostname, backendPort: route.listener }
      }))

      // Where the service ran before: a changed pin moves it, and the old copy goes last.
      const placedBefore = yield* viaDb(db.placement(def.name))

      // 1. The worker: its own saga either deploys the service or leaves it as it was.
      let done: Deploy.DeployDone | undefined
      yield* Stream.runForEach(fleet.deploy(worker, request.raw, false), (e) => {
        if (e._tag === "DeployDone") {
          done = e
          return Effect.void
        }
        return emit(e)
      })

      // 2. The edge routes, each recorded as intent before the edge is asked.
      const previousRows = yield* viaDb(db.edgeRoutesOf(def.name))
      const touched: Array<{ hostname: string; previous: Option.Option<EdgeRouteRow>; wanted: WantedEdgeRoute }> = []
      const edgeStep = Effect.forEach(wantedAll, (wanted) =>
        Effect.gen(function* () {
          const { hostname, backendPort } = wanted.request
          touched.push({ hostname, previous: Option.fromNullable(previousRows.find((r) => r.route.hostname === hostname)), wanted })
          yield* emit(new Deploy.DeployStep({ node: wanted.edge.name, step: "edge", status: "started", detail: `${hostname} -> ${backendHostname}:${backendPort} on ${worker.name}` }))
          yield* viaDb(db.putEdgeRoute(routeOf(wanted), "active"))
          const set = yield* fleet.setupEdgeRoute(wanted.edge, wanted.request)
          yield* viaDb(db.putEdgeRoute(set, "active"))
          yield* emit(new Deploy.DeployStep({ node: wanted.edge.name, step: "edge", status: "done", detail: `${hostname} served by ${wanted.edge.name} (certificate ${set.certSerial}, expires ${set.certNotAfter})` }))
        }), { discard: true })
      const edgeOutcome = yield* Effect.either(edgeStep)

      if (Either.isLeft(edgeOutcome)) {
        const cause = edgeOutcome.left
        const failedAt = touched.at(-1)
        const step = `edge route ${failedAt!.hostname} on ${failedAt!.wanted.edge.name}`
        yield* emit(new Deploy.DeployStep({ node: failedAt!.wanted.edge.name, step: "edge", status: "failed", detail: cause.message }))
        const workerRestored = yield* Effect.either(restoreWorker(def.name, worker, emit))
        if (Either.isLeft(workerRestored)) {
          // The worker keeps the new service: roll forward. The routes stay wanted and the
          // reconciler sets them up once the edge answers.
          yield* viaDb(db.withTransaction(Effect.all([db.place(def.name, worker.name), db.storeDefinition(def.name, request.raw)])))
          for (const wanted of wantedAll) yield* viaDb(db.putEdgeRoute(routeOf(wanted), "active"))
          yield* dropOldEdgeRoutes(previousRows, chosen, emit)
          if (Option.isSome(placedBefore) && placedBefore.value !== worker.name) yield* retireOldCopy(def.name, placedBefore.value, worker.name, emit)
          yield* viaDb(db.addEvent("master", "deploy", def.name, `edge step failed (${cause.message}) and the worker could not be rolled back (${workerRestored.left.message}); the edge routes are retried by the reconciler`))
          return yield* new Errors.PeerFailed({
            peer: `agent on ${worker.name}`,
            operation: `roll back ${def.name} after its edge step failed`,
            reason: `${cause.message}; rolling back failed too (${workerRestored.left.message}), so ${def.name} stays deployed on ${worker.name} and the master keeps retrying its edge routes`,
            retryable: true
          })
        }
        // Newest first, like any compensation.
        for (const t of [...touched].reverse()) yield* restoreEdgeRoute(t.hostname, t.previous, t.wanted, emit)
        yield* viaDb(db.addEvent("master", "deploy", def.name, `deploy rolled back on every node: ${cause.message}`))
        return yield* new Errors.DeployFailed({ service: def.name, step, reason: cause.message, retryable: cause._tag === "PeerFailed" ? cause.retryable : cause._tag === "NodeUnreachable" })
      }

      // 3. Routes this definition no longer has (or that moved to another edge) go.
      yield* dropOldEdgeRoutes(previousRows, chosen, emit)

      // 4. The master's record, in one transaction.
      yield* viaDb(db.withTransaction(Effect.all([
        db.place(def.name, worker.name),
        db.storeDefinition(def.name, request.raw),
        db.addEvent(worker.name, "deploy", def.name, `deployed on ${worker.name}${chosen.length === 0 ? "" : `; public: ${chosen.map((c) => `${c.route.hostname} via ${c.edge.name}`).join(", ")}`}`)
      ])))
      // 5. A moved service leaves its old node only now, when the new one serves (and any
      // failure above has already undeployed the new copy instead).
      if (Option.isSome(placedBefore) && placedBefore.value !== worker.name) yield* retireOldCopy(def.name, placedBefore.value, worker.name, emit)
      if (done !== undefined) yield* emit(done)
    })

  /**
   * Undeploys a moved service from the node it ran on. A failure does not fail the deploy (the
   * service runs where it should); the copy is recorded, and the reconciler removes it later.
   */
  const retireOldCopy = (service: string, oldNode: string, newNode: string, emit: Emit) =>
    Effect.gen(function* () {
      const old = yield* nodeInfo(oldNode)
      const gone = Option.isNone(old)
        ? Either.left(`node ${oldNode} is no longer known to the master`)
        : Either.mapLeft(yield* Effect.either(fleet.undeploy(old.value, service)), (e) => e._tag === "ServiceNotFound" ? undefined : e.message)
      if (Either.isRight(gone) || gone.left === undefined) {
        yield* emit(new Deploy.DeployStep({ node: oldNode, step: "move", status: "done", detail: `${service} moved to ${newNode}; removed from ${oldNode}` }))
        yield* viaDb(db.addEvent(oldNode, "deploy", service, `moved to ${newNode}; removed from ${oldNode}`))
        return
      }
      const reason = `${service} now runs on ${newNode}, but its old copy on ${oldNode} could not be removed yet (${gone.left}); the master retries until it is gone`
      yield* Effect.logWarning(reason)
      yield* viaDb(db.withTransaction(Effect.all([db.addStaleCopy(service, oldNode), db.addEvent(oldNode, "deploy", service, reason)])))
      yield* emit(new Deploy.DeployStep({ node: oldNode, step: "move", status: "failed", detail: reason }))
    })

  /** Edge routes first, then the worker; a failure puts the removed edge routes back. */
  const undeploy = (service: string, worker: Node.NodeInfo): Effect.Effect<void, UndeployError> =>
    Effect.gen(function* () {
      const rows = yield* viaDb(db.edgeRoutesOf(service))
      const removed: Array<{ edge: Node.NodeInfo; route: Routes.EdgeRoute }> = []
      const deferred = new Set<string>()
      const putBack = Effect.forEach(removed, ({ edge, route }) =>
        Effect.either(fleet.setupEdgeRoute(edge, requestOf(route))).pipe(
          Effect.tap((r) => Either.isLeft(r) ? Effect.logWarning(`undeploy ${service}: cannot put edge route ${route.hostname} back now (${r.left.message}); the reconciler retries`) : Effect.void)
        ), { discard: true })

      for (const row of rows) {
        const edge = yield* nodeInfo(row.route.edgeNode)
        if (Option.isNone(edge)) {
          yield* Effect.logWarning(`undeploy ${service}: edge node ${row.route.edgeNode} of ${row.route.hostname} is no longer known; forgetting the route`)
          continue
        }
        const gone = yield* Effect.either(fleet.removeEdgeRoute(edge.value, row.route.hostname))
        if (Either.isLeft(gone)) {
          // Routes already marked for removal stay the reconciler's; an active one blocks.
          if (row.state === "removing") {
            deferred.add(row.route.hostname)
            continue
          }
          yield* putBack
          return yield* new Errors.PeerFailed({
            peer: `agent on ${edge.value.name}`,
            operation: `remove edge route ${row.route.hostname} of ${service}`,
            reason: `${gone.left.message}; nothing was undeployed (the service still runs on ${worker.name}); retry when ${edge.value.name} is back`,
            retryable: true
          })
        }
        if (row.state === "active") removed.push({ edge: edge.value, route: row.route })
      }

      const undeployed = yield* Effect.either(fleet.undeploy(worker, service))
      if (Either.isLeft(undeployed)) {
        yield* putBack
        return yield* undeployed.left
      }
      // Old copies a move left behind go too; one that cannot go now stays recorded for the reconciler.
      const staleGone: Array<string> = []
      for (const copy of (yield* viaDb(db.staleCopies)).filter((c) => c.service === service)) {
        const node = yield* nodeInfo(copy.node)
        if (Option.isNone(node)) continue
        const gone = yield* Effect.either(fleet.undeploy(node.value, service))
        if (Either.isRight(gone) || gone.left._tag === "ServiceNotFound") staleGone.push(copy.node)
        else yield* Effect.logWarning(`undeploy ${service}: its old copy on ${copy.node} cannot be removed now (${gone.left.message}); the reconciler retries`)
      }
      yield* viaDb(db.withTransaction(Effect.all([
        Effect.forEach(rows.filter((r) => !deferred.has(r.route.hostname)), (r) => db.deleteEdgeRoute(r.route.hostname), { discard: true }),
        Effect.forEach(staleGone, (node) => db.deleteStaleCopy(service, node), { discard: true }),
        db.unplace(service),
        db.addEvent("master", "deploy", service, rows.length === 0 ? "undeployed" : `undeployed; edge routes removed: ${rows.map((r) => r.route.hostname).join(", ")}`)
      ])))
    })

  return { deploy, undeploy } as const
})

export class CrossNodeSaga extends Context.Tag("@mcp/master/CrossNodeSaga")<CrossNodeSaga, Effect.Effect.Success<typeof make>>() {}

export const layer = Layer.effect(CrossNodeSaga, make)
