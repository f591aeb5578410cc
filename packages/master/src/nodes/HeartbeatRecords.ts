/**
 * What heartbeats store in the master's database (each node's latest resources and heartbeat
 * time), written in batches: a heartbeat only puts its node's latest into a map, and one
 * transaction a second writes what came since, one row per node however many heartbeats it sent.
 * A write per heartbeat was most of a heartbeat's cost at a few hundred a second. What is lost
 * with a killed master is at most the last second of resources; the live last-heartbeat time and
 * health come from the node supervisors, not from here.
 */
import type { Node } from "@mcp/domain"
import * as Failures from "@mcp/rpc/Failures"
import { Clock, Effect } from "effect"
import { MasterDb } from "../db/MasterDb.js"

/** How often the heartbeats received since the last write are written. */
export const FLUSH_INTERVAL = "1 second"

export class HeartbeatRecords extends Effect.Service<HeartbeatRecords>()("@mcp/master/HeartbeatRecords", {
  scoped: Effect.gen(function* () {
    const db = yield* MasterDb
    let pending = new Map<string, { readonly name: string; readonly resources: Node.Resources; readonly at: Date }>()

    // A failed write is logged and counted; the next heartbeats of those nodes write them again.
    const flush = Effect.suspend(() => {
      if (pending.size === 0) return Effect.void
      const batch = [...pending.values()]
      pending = new Map()
      return db.heartbeats(batch).pipe(Effect.catchAll((e) => Failures.reported(`writing ${batch.length} nodes' heartbeats to the master database`, e)))
    })
    yield* Effect.sleep(FLUSH_INTERVAL).pipe(Effect.zipRight(flush), Effect.forever, Effect.forkScoped)
    // What came in the last second is written on the way out.
    yield* Effect.addFinalizer(() => flush)

    /** Keeps `node`'s latest resources, received at `at` (clock millis), for the next write. */
    const recordAt = (node: string, resources: Node.Resources, at: number): void => {
      pending.set(node, { name: node, resources, at: new Date(at) })
    }
    return {
      /** Keeps `node`'s latest resources, for the next write. */
      record: (node: string, resources: Node.Resources): Effect.Effect<void> =>
        Effect.map(Clock.currentTimeMillis, (now) => recordAt(node, resources, now)),
      recordAt,
      /** Writes what is pending now (tests, and before reading what was written). */
      flush
    } as const
  })
}) {}
