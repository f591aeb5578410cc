/**
 * The CLI's commands that change a service: deploy (placement, then the cross-node saga),
 * undeploy, stop and start (cross-node: they carry the edge routes), restart (its agent's), and
 * sync of stored definitions.
 * Commands for one service go through that service's actor, so they never race across nodes.
 */
import { Deploy, Errors, Placement, Policy, type ServiceDefinition, Validation } from "@mcp/domain"
import type * as KeyedActors from "@mcp/rpc/KeyedActors"
import * as Principal from "@mcp/rpc/Principal"
import * as CallMetrics from "@mcp/rpc/CallMetrics"
import { Clock, Effect, Either, Mailbox, Option, Stream } from "effect"
import { MasterDb } from "../../db/MasterDb.js"
import { AgentClients } from "../../fleet/AgentClients.js"
import { asPeerFailure } from "../../fleet/FleetCalls.js"
import * as CrossNodeSaga from "../../services/CrossNodeSaga.js"
import { DeployActivity } from "../../services/DeployActivity.js"
import * as HostnameOwners from "../../services/HostnameOwners.js"
import { ServiceCoordinators } from "../../services/ServiceCoordinators.js"
import { type AgentClient, makeLookups, type MasterSettings, nameOf, type SomeMasterHandlers, viaDb } from "./Common.js"

/** Runs a stream inside the service's actor, so one service's deploys never overlap. */
const serialized = <A, E>(
  coordinators: KeyedActors.KeyedActors,
  service: string,
  job: (emit: (a: A) => Effect.Effect<void>) => Effect.Effect<void, E>
) =>
  Stream.unwrapScoped(
    Effect.gen(function* () {
      const mailbox = yield* Mailbox.make<A, E>()
      const run = job((a) => Effect.asVoid(mailbox.offer(a))).pipe(Effect.exit, Effect.flatMap((exit) => mailbox.done(exit)))
      yield* Effect.forkScoped(coordinators.submit(service, run))
      return Mailbox.toStream(mailbox)
    })
  )

/**
 * A deploy's steps and its end reported to DeployActivity as well as to the caller (the
 * dashboard shows them live, and charts durations).
 */
const reported = <E>(
  service: string,
  emit: (e: Deploy.DeployEvent) => Effect.Effect<void>,
  job: (emit: (e: Deploy.DeployEvent) => Effect.Effect<void>) => Effect.Effect<void, E>
) =>
  Effect.gen(function* () {
    const activity = yield* DeployActivity
    const startedAt = yield* Clock.currentTimeMillis
    return yield* job((e) => (e._tag === "DeployStep" ? Effect.zipRight(activity.step(service, e), emit(e)) : emit(e))).pipe(
      Effect.onExit((exit) => activity.ended(service, startedAt, CallMetrics.resultOf(exit)))
    )
  })

/**
 * The caller's role for the deploy policy. Handlers always run behind the auth middleware; one
 * called without a principal (a test, a future internal caller) gets the least: guest.
 */
const callerRole = Effect.map(Effect.serviceOption(Principal.CurrentPrincipal), Option.match({ onNone: () => "guest" as const, onSome: (p) => p.role }))

export const handlers = (settings: Pick<MasterSettings, "internalZone"> & Partial<Pick<MasterSettings, "policy" | "allowedDomains">>) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const agents = yield* AgentClients
    const coordinators = yield* ServiceCoordinators
    const saga = yield* CrossNodeSaga.CrossNodeSaga
    const { fleet, placedOn } = yield* makeLookups
    // Non-public route hostnames must fall under the internal zone or an allowed domain: the
    // route CA signs nothing else. Without [edge] allowed_domains, only the internal zone.
    const decode = (raw: unknown) => Validation.decodeDefinition(raw, { internalZone: settings.internalZone, allowedDomains: settings.allowedDomains ?? [] })
    const policy = settings.policy ?? Policy.defaults
    /**
     * The policy for this caller, before anything is stored, placed or sent. The node's bind
     * address is not known here: the agent checks that rule (and where host paths resolve).
     */
    const allowed = (def: ServiceDefinition.ServiceDefinition) =>
      Effect.flatMap(callerRole, (role) => {
        const violations = Policy.check(def, policy, { role })
        return violations.length === 0 ? Effect.void : Effect.fail(new Errors.PolicyViolation({ service: def.name, violations }))
      })

    /**
     * No hostname another service owns (HostnameOwners), before anything is stored, placed or
     * sent. The first definition refused is reported, all its hostnames at once.
     */
    const owned = (defs: ReadonlyArray<ServiceDefinition.ServiceDefinition>) =>
      Effect.flatMap(Effect.provideService(HostnameOwners.taken(defs, settings.internalZone), MasterDb, db), (refused) =>
        refused.length === 0 ? Effect.void : Effect.fail(new Errors.InvalidDefinition({ service: refused[0]!.service, problems: refused[0]!.problems })))

    const forward = <A, E extends { readonly _tag: string }>(service: string, operation: string, f: (agent: AgentClient) => Effect.Effect<A, E>) =>
      coordinators.submit(service, Effect.gen(function* () {
        const info = yield* placedOn(service)
        return yield* Effect.mapError(agents.call(info.name, info.addresses, f), asPeerFailure(info.name, operation))
      }))

    /** Places the decoded definition, then runs the cross-node saga, streaming its steps. */
    const deployJob = (
      def: ServiceDefinition.ServiceDefinition,
      raw: unknown,
      dryRun: boolean,
      onBehalfOf: Principal.Role,
      emit: (e: Deploy.DeployEvent) => Effect.Effect<void>
    ) =>
      Effect.gen(function* () {
        // In the service's actor, so its own previous deploy has committed (and is not "another").
        yield* owned([def])
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
        yield* saga.deploy({ definition: def, raw, worker: target, placementReason: placed.right.reason, dryRun, onBehalfOf }, emit)
      })

    /** Stores the definitions that changed, all or none: one that does not decode stores nothing. */
    const sync = (definitions: ReadonlyArray<unknown>) =>
      Effect.gen(function* () {
        const decoded = definitions.map((raw) => ({ raw, result: decode(raw) }))
        const bad = decoded.find((d) => Either.isLeft(d.result))
        if (bad !== undefined && Either.isLeft(bad.result)) {
          return yield* Effect.fail(new Errors.InvalidDefinition({ service: nameOf(bad.raw), problems: bad.result.left }))
        }
        // Stored definitions are deployed later (by whoever runs the deploy); refuse here what
        // this caller could not deploy, so sync is no way around the policy.
        for (const d of decoded) if (Either.isRight(d.result)) yield* allowed(d.result.right)
        yield* owned(decoded.flatMap((d) => (Either.isRight(d.result) ? [d.result.right] : [])))
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
      })

    return {
      // Decoded before the service's actor is looked up: a name from the network (with `../` or
      // control characters, say) is refused as InvalidDefinition and never keys an actor.
      Deploy: ({ definition: raw, dryRun }) =>
        Either.match(decode(raw), {
          onLeft: (problems) => Stream.fail(new Errors.InvalidDefinition({ service: nameOf(raw), problems })),
          onRight: (def) =>
            // The role is read here, in the caller's fiber: the job runs in the service's actor.
            Stream.unwrap(Effect.zipRight(allowed(def), Effect.map(callerRole, (role) =>
              serialized<Deploy.DeployEvent, CrossNodeSaga.DeployError>(coordinators, def.name, (emit) =>
                dryRun ? deployJob(def, raw, dryRun, role, emit) : reported(def.name, emit, (watched) => deployJob(def, raw, dryRun, role, watched))))))
        }),
      Undeploy: ({ service }) => coordinators.submit(service, Effect.flatMap(placedOn(service), (worker) => saga.undeploy(service, worker))),
      // Stop and start carry the service's public edge routes with them (StopStartSaga).
      Stop: ({ service }) => coordinators.submit(service, Effect.flatMap(placedOn(service), (worker) => saga.stop(service, worker))),
      Start: ({ service }) => coordinators.submit(service, Effect.flatMap(placedOn(service), (worker) => saga.start(service, worker))),
      Restart: ({ service }) => forward(service, `restart ${service}`, (agent) => agent.Restart({ service })),
      Sync: ({ definitions }) => sync(definitions)
    } satisfies SomeMasterHandlers
  })
