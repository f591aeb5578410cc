/**
 * ControlRpcs, served to agents: register and heartbeat. An agent's heartbeat also tells the
 * master what runs on it, which is how a master that lost its database learns placements back.
 */
import { Clock, Duration, Effect } from "effect"
import { MasterDb } from "../../db/MasterDb.js"
import { NodeSupervisors } from "../../nodes/NodeSupervisors.js"
import { type MasterSettings, type SomeControlHandlers, viaDb } from "./Common.js"

export const handlers = (settings: Pick<MasterSettings, "heartbeatInterval" | "missThreshold">) => {
  // The agents' contract counts in milliseconds.
  const heartbeatIntervalMs = Duration.toMillis(settings.heartbeatInterval)
  const deadlineMs = heartbeatIntervalMs * settings.missThreshold
  return Effect.gen(function* () {
    const db = yield* MasterDb
    const supervisors = yield* NodeSupervisors
    return {
      Register: ({ info, resources }) =>
        Effect.gen(function* () {
          yield* viaDb(db.upsertNode(info, "register", resources))
          yield* supervisors.watch(info.name, info.addresses)
          yield* supervisors.heartbeat(info.name)
          yield* viaDb(db.addEvent(info.name, "node", undefined, `registered (${info.role}, ${info.arch}, version ${info.version})`))
          return { heartbeatIntervalMs, deadlineMs }
        }),
      Heartbeat: ({ node, resources, services }) =>
        Effect.gen(function* () {
          const known = yield* supervisors.heartbeat(node)
          if (!known) return { known }
          yield* viaDb(db.heartbeat(node, resources))
          // Agents are the truth about what runs: a master that lost its database learns
          // the placements back from heartbeats. Not for a service the master is deploying or
          // undeploying, or just did: its saga (or the recovery of one a killed master left
          // open) decides, and this heartbeat may predate what it did.
          const placed = new Set((yield* viaDb(db.placements)).map((p) => p.service))
          const settledSince = new Date((yield* Clock.currentTimeMillis) - 2 * deadlineMs)
          for (const s of services) {
            if (placed.has(s.service)) continue
            if (yield* viaDb(db.busySince(s.service, settledSince))) continue
            yield* viaDb(db.place(s.service, node))
            yield* viaDb(db.addEvent(node, "node", s.service, `placement learned from ${node}'s heartbeat`))
          }
          return { known }
        })
    } satisfies SomeControlHandlers
  })
}
