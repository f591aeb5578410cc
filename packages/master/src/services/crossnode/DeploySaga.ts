/**
 * The cross-node deploy: choose each public hostname's edge (before anything changes), then the
 * saga: the worker's deploy, one edge route per public hostname, and the commit. A failure at an
 * edge undoes the edges and the worker; a worker that refuses to be put back rolls forward. A
 * worker that does not answer (its deploy, or its rollback) leaves the saga open, rolled back
 * once it answers: the master cannot tell which definition it runs until then.
 */
import { Deploy, Errors, PublicRoutes, type ServiceDefinition } from "@mcp/domain"
import * as Saga from "@mcp/rpc/Saga"
import { Effect, Either, Option, Stream } from "effect"
import * as EdgeResolver from "../../edge/EdgeResolver.js"
import { FleetCalls } from "../../fleet/FleetCalls.js"
import { MasterDb } from "../../db/MasterDb.js"
import { publishedBy } from "../HostnameOwners.js"
import { commitDeploy, finishAfterCommit, rollForward } from "./Commit.js"
import { type DeployError, type DeployRequest, EdgeSettings, edgeNodes, type Emit, journalFatal, stepError, viaDb, type WantedEdgeRoute, workerDidNotAnswer } from "./Model.js"
import { retryWorkerRollback, setUpEdgeRoute } from "./NodeChanges.js"
import { deploySteps } from "./Steps.js"

/** Picks the edge node for each public hostname; fails before anything changes. */
export const chooseEdges = (def: ServiceDefinition.ServiceDefinition, emit: Emit) =>
  Effect.gen(function* () {
    const settings = yield* EdgeSettings
    const routes = PublicRoutes.publicRoutes(def)
    if (routes.length === 0) return []
    const edges = yield* edgeNodes
    const candidates = EdgeResolver.edgeCandidates(edges)
    return yield* Effect.forEach(routes, (route) =>
      Effect.gen(function* () {
        const choice = yield* EdgeResolver.chooseEdge(def.name, route.hostname, candidates, settings.defaultEdge)
        const edge = edges.find((e) => e.name === choice.node)!
        const detail = `${route.hostname} -> edge node ${edge.name} (${choice.via === "default" ? "default edge node" : `DNS ${choice.via}`})`
        if (choice.warning !== undefined) yield* Effect.logWarning(`deploy ${def.name}: ${choice.warning}`)
        yield* emit(new Deploy.DeployStep({ node: edge.name, step: "edge-resolve", status: "done", detail: choice.warning === undefined ? detail : `${detail}; warning: ${choice.warning}` }))
        return { route, edge }
      })
    )
  })

export const deploy = (request: DeployRequest, emit: Emit): Effect.Effect<void, DeployError, MasterDb | FleetCalls | EdgeSettings | EdgeResolver.DnsLookup> =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const fleet = yield* FleetCalls
    const settings = yield* EdgeSettings
    const { definition: def, worker } = request
    const publics = PublicRoutes.publicRoutes(def)
    const disallowed = PublicRoutes.disallowedProblems(publics, settings.internalZone, settings.allowedDomains)
    // A public name belongs to one service at a time: taking another's would strand its route.
    const taken = yield* Effect.forEach(publics, (r) =>
      Effect.map(viaDb(db.edgeRoute(r.hostname)), Option.match({
        onNone: () => [],
        onSome: (row) => row.route.service === def.name ? [] : [{
          path: `${r.path}.hostname`,
          message: publishedBy(r.hostname, row.route.service)
        }]
      })))
    const problems = [...disallowed, ...taken.flat()]
    if (problems.length > 0) return yield* new Errors.InvalidDefinition({ service: def.name, problems })
    const chosen = yield* chooseEdges(def, emit)

    if (request.dryRun) {
      return yield* Stream.runForEach(fleet.deploy(worker, request.raw, true, request.onBehalfOf), (e) =>
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
    const previousRows = yield* viaDb(db.edgeRoutesOf(def.name))

    const sagaId = crypto.randomUUID()
    const steps = deploySteps(emit)
    yield* viaDb(db.beginSaga(sagaId, def.name, "deploy"))
    const ran = yield* Effect.either(journalFatal(Saga.sequence(db, sagaId, steps.compensators, () => Effect.void, (runStep) =>
      Effect.gen(function* () {
        // 1. The worker: its own saga either deploys the service or leaves it as it was, so a
        // failure it answers has nothing left to undo on the worker. One it did not answer (the
        // agent killed, the stream broken off) may have deployed: the saga stays open and is
        // rolled back once the worker answers (Recovery.settleOpenSagas).
        const onWorker = Stream.runFoldEffect(fleet.deploy(worker, request.raw, false, request.onBehalfOf), Option.none<Deploy.DeployDone>(), (done, e) =>
          e._tag === "DeployDone" ? Effect.succeed(Option.some(e)) : Effect.as(emit(e), done)
        ).pipe(Effect.tapError((e) => (workerDidNotAnswer(e) ? Effect.void : viaDb(db.journal(sagaId, steps.worker.name, "compensated", null)))))
        const done = yield* runStep(Saga.inDoubtWhen(Saga.step(steps.worker, { service: def.name, worker, definition: request.raw }, onWorker, () => null), workerDidNotAnswer))
        // 2. The edge routes, each journaled with the row it replaces.
        for (const wanted of wantedAll) {
          const previous = Option.fromNullable(previousRows.find((r) => r.route.hostname === wanted.request.hostname))
          yield* runStep(Saga.step(steps.edge(wanted.request.hostname), { request: wanted.request, edge: wanted.edge, previous }, setUpEdgeRoute(wanted, emit), () => null))
        }
        return done
      }))))

    if (Either.isLeft(ran)) {
      const failed = ran.left
      if (failed.inDoubt === true && failed.error._tag === "NodeUnreachable") {
        return yield* new Errors.PeerFailed({
          peer: `agent on ${worker.name}`,
          operation: `deploy ${def.name}`,
          reason: `${worker.name} did not answer (${failed.error.message}), so whether it deployed ${def.name} is not known yet; ` +
            `the master asks it again until it answers and then rolls the deploy back there (deploy again after). A new change of ${def.name} asks it first`,
          retryable: true
        })
      }
      if (failed.error._tag !== "EdgeStepFailed") return yield* stepError(failed.error)
      const { cause, edgeNode, hostname } = failed.error
      const workerStep = (yield* viaDb(Saga.progress(db, sagaId))).get(steps.worker.name)
      const rollback = workerStep !== undefined && !workerStep.compensated ? yield* retryWorkerRollback(sagaId, def.name, worker, emit) : undefined
      if (rollback?._tag === "NotYet") {
        // Whether the worker runs the new definition or the old one is not known: the saga stays
        // open and its rollback is finished once the worker can (Recovery.settleOpenSagas).
        return yield* new Errors.PeerFailed({
          peer: `agent on ${worker.name}`,
          operation: `roll back ${def.name} after its edge step failed`,
          reason: `${cause.message}; ${worker.name} could not roll it back now (${rollback.reason}), so which definition it runs is not known yet; the master asks it again until it can and finishes the rollback. A new change of ${def.name} asks it first`,
          retryable: true
        })
      }
      if (rollback?._tag === "Refused") {
        const workerError = rollback.reason
        yield* rollForward(sagaId, def.name, worker, request.raw, wantedAll, `edge step failed (${cause.message}) and the worker could not be rolled back (${workerError}); the edge routes are retried by the reconciler`, emit)
        return yield* new Errors.PeerFailed({
          peer: `agent on ${worker.name}`,
          operation: `roll back ${def.name} after its edge step failed`,
          reason: `${cause.message}; rolling back failed too (${workerError}), so ${def.name} stays deployed on ${worker.name} and the master keeps retrying its edge routes`,
          retryable: true
        })
      }
      yield* viaDb(db.addEvent("master", "deploy", def.name, `deploy rolled back on every node: ${cause.message}`))
      return yield* new Errors.DeployFailed({
        service: def.name,
        step: `edge route ${hostname} on ${edgeNode}`,
        reason: cause.message,
        retryable: cause._tag === "PeerFailed" ? cause.retryable : cause._tag === "NodeUnreachable"
      })
    }

    // 3. The master's record, which ends the saga; then what the record says is to go, goes.
    yield* commitDeploy(sagaId, def.name, worker.name, request.raw, wantedAll.map((w) => w.request.hostname), placedBefore,
      `deployed on ${worker.name}${chosen.length === 0 ? "" : `; public: ${chosen.map((c) => `${c.route.hostname} via ${c.edge.name}`).join(", ")}`}`)
    yield* finishAfterCommit(def.name, worker.name, placedBefore, emit)
    if (Option.isSome(ran.right)) yield* emit(ran.right.value)
  })
