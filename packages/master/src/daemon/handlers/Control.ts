/**
 * ControlRpcs, served to agents: register and heartbeat. An agent's heartbeat also tells the
 * master what runs on it, which is how a master that lost its database learns placements back.
 *
 * Every call is a node speaking for itself: the auth middleware lets through only the system
 * token named after the node the payload names (the `node` access level), and `asNode` checks it
 * again here, where the payload is acted on, so these handlers stay safe if they are ever served
 * behind another middleware. So a node's addresses and role change only by its own Register (or
 * an admin's NodesAdd), and placements are learned only from the node they are on.
 */
import * as AuthMiddleware from "@mcp/rpc/AuthMiddleware"
import * as Failures from "@mcp/rpc/Failures"
import * as Principal from "@mcp/rpc/Principal"
import type * as DirectCall from "@mcp/rpc/DirectCall"
import type { ControlRpcs } from "@mcp/rpc/Contracts"
import type { Rpc, RpcGroup } from "@effect/rpc"
import { Clock, Duration, Effect, Either, Option } from "effect"
import { MasterDb } from "../../db/MasterDb.js"
import { HeartbeatRecords } from "../../nodes/HeartbeatRecords.js"
import { NodeSupervisors } from "../../nodes/NodeSupervisors.js"
import { type MasterSettings, type SomeControlHandlers, viaDb } from "./Common.js"

export const handlers = (settings: Pick<MasterSettings, "heartbeatInterval" | "missThreshold"> & Partial<Pick<MasterSettings, "policy" | "allowedDomains">>) => {
  // The agents' contract counts in milliseconds. A node's own interval comes from its supervisor
  // (it grows with the fleet); placements are learned only from nodes settled for twice the
  // longest silence the configured interval allows.
  const deadlineMs = Duration.toMillis(settings.heartbeatInterval) * settings.missThreshold
  return Effect.gen(function* () {
    const db = yield* MasterDb
    const supervisors = yield* NodeSupervisors
    const keep = keepHeartbeat(yield* HeartbeatRecords, deadlineMs)
    /**
     * The caller must be `node` itself: the middleware's rule, re-checked. The middleware has
     * already refused anyone else with a typed Forbidden, so a refusal here means the handlers
     * were served without it: a bug, hence a defect (the call fails, nothing is written).
     */
    const asNode = (rpc: string, node: string) =>
      Effect.flatMap(Principal.CurrentPrincipal, (principal) => AuthMiddleware.authorize(principal, "node", rpc, { guestMayRead: false }, node)).pipe(Failures.fatal(`the node identity check of ${rpc} (the auth middleware should have refused this caller)`))
    return {
      Register: ({ info, resources }) =>
        Effect.gen(function* () {
          yield* asNode("Register", info.name)
          // A node the master does not know is enrolled here: its token being named after it
          // means an operator created that token for it (`mcp token create --kind system --name
          // <node>`), which is the decision to let it in. Its own Register may then change its
          // addresses and role; no other caller's may.
          // The node's row and its event are written in one transaction: one commit (one
          // fsync) per registration instead of two, and never the row without its event.
          yield* viaDb(db.withTransaction(Effect.gen(function* () {
            const before = Option.map(yield* db.node(info.name), (row) => row.info)
            const moved = Option.match(before, {
              onNone: () => "",
              onSome: (b) =>
                b.addresses.join(",") !== info.addresses.join(",") || b.role !== info.role
                  ? `; was ${b.role} at ${b.addresses.join(", ")}, now ${info.role} at ${info.addresses.join(", ")}`
                  : ""
            })
            yield* db.upsertNode(info, "register", resources)
            yield* db.addEvent(info.name, "node", undefined, `registered (${info.role}, ${info.arch}, version ${info.version})${moved}`)
          })))
          yield* supervisors.watch(info.name, info.addresses)
          // Just watched, so it is known: the interval it is given is always there.
          const heartbeatIntervalMs = Option.getOrElse(yield* supervisors.heartbeat(info.name), () => Duration.toMillis(settings.heartbeatInterval))
          // The agent enforces the fleet's rules too (issue 14): what it is deployed is checked
          // there against the same policy, with what only the node knows.
          return {
            heartbeatIntervalMs,
            deadlineMs: heartbeatIntervalMs * settings.missThreshold,
            ...(settings.policy === undefined ? {} : { policy: settings.policy }),
            ...(settings.allowedDomains === undefined ? {} : { allowedDomains: settings.allowedDomains })
          }
        }),
      Heartbeat: ({ node, resources, services }) =>
        Effect.gen(function* () {
          yield* asNode("Heartbeat", node)
          const given = yield* supervisors.heartbeat(node)
          if (Option.isNone(given)) return { known: false }
          keep(node, resources, services, yield* Clock.currentTimeMillis)
          return { known: true, heartbeatIntervalMs: given.value }
        })
    } satisfies SomeControlHandlers
  })
}

/**
 * What a heartbeat of a watched node, received at `now` (clock millis), leaves for HeartbeatRecords'
 * next write: its node's resources, and the services it runs. What a node runs is how a master
 * that lost its database learns placements back: a service placed nowhere is placed on the node
 * that reports it, unless a saga of it is under way or ended since twice the longest silence the
 * configured interval allows (`deadlineMs`): the saga decides, and the heartbeat may predate what
 * it did. The handler and the immediate path below both keep a heartbeat this way.
 */
const keepHeartbeat = (records: HeartbeatRecords, deadlineMs: number) =>
  (node: string, resources: Rpc.Payload<HeartbeatRpc>["resources"], services: Rpc.Payload<HeartbeatRpc>["services"], now: number): void => {
    records.recordAt(node, resources, now)
    records.noteServices(node, services, now - 2 * deadlineMs)
  }

type HeartbeatRpc = Rpc.ExtractTag<RpcGroup.Rpcs<typeof ControlRpcs>, "Heartbeat">

/**
 * A heartbeat answered at once (DirectCall.routeImmediate), without a fiber: all it does is step
 * its node's supervisor and note its resources and services for HeartbeatRecords, which need no
 * effect. The node identity is checked again here, as `asNode` does; a heartbeat that fails it gets
 * undefined and goes to the Heartbeat handler above, which refuses it.
 */
export const immediateHeartbeat = (
  settings: Pick<MasterSettings, "heartbeatInterval" | "missThreshold">
): Effect.Effect<DirectCall.Immediate<Rpc.Payload<HeartbeatRpc>, Rpc.Success<HeartbeatRpc>>, never, NodeSupervisors | HeartbeatRecords> =>
  Effect.gen(function* () {
    const supervisors = yield* NodeSupervisors
    const keep = keepHeartbeat(yield* HeartbeatRecords, Duration.toMillis(settings.heartbeatInterval) * settings.missThreshold)
    // The clock this was built with, as the handler's Clock.currentTimeMillis; the draw for the
    // interval's jitter needs no seed.
    const clock = yield* Effect.clock
    return ({ node, resources, services }, principal) => {
      if (Either.isLeft(AuthMiddleware.authorize(principal, "node", "Heartbeat", { guestMayRead: false }, node))) return undefined
      const now = clock.unsafeCurrentTimeMillis()
      const given = supervisors.heartbeatAt(node, now, Math.random())
      if (given === undefined) return { known: false }
      keep(node, resources, services, now)
      return { known: true, heartbeatIntervalMs: given }
    }
  })
