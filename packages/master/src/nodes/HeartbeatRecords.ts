/**
 * What heartbeats store in the master's database, written in batches: each node's latest
 * resources and heartbeat time, and the placements heartbeats teach. A heartbeat only notes them
 * in memory, and once a second what came since is written: one row per node however many
 * heartbeats it sent, and what was learned, in transactions of a few hundred rows with the event
 * loop given back between two.
 *
 * Resources: a write per heartbeat was most of a heartbeat's cost at a few hundred a second. What
 * is lost with a killed master is at most the last second of resources; the live last-heartbeat
 * time and health come from the node supervisors, not from here.
 *
 * Placements: agents are the truth about what runs, so a master that lost its database learns
 * the placements back from heartbeats. A service a heartbeat reports that is not known placed is
 * noted with its node; the next write reads which of the noted services are placed and places the
 * rest on the node that last reported them, except a service with a saga under way or ended since
 * the note's `settledSince`: its saga decides, and the heartbeat may predate what it did. A commit
 * per learning heartbeat (with the fiber and database round trips around it) held a master
 * learning back 10,000 nodes to under a thousand heartbeats a second; noting costs a heartbeat a
 * map lookup per service, so every heartbeat can be answered at once (DirectCall.routeImmediate).
 * What a killed master had noted is noted again by the next heartbeats.
 */
import { Node } from "@mcp/domain"
import * as Failures from "@mcp/rpc/Failures"
import { inTurns } from "@mcp/rpc/IoTurn"
import { Array as Arr, Clock, Effect } from "effect"
import { MasterDb } from "../db/MasterDb.js"

/** How often what heartbeats noted since the last write is written. */
export const FLUSH_INTERVAL = "1 second"

/**
 * What one transaction of a write holds: nodes' resources, and services learned (looked up and
 * written in one statement each, under SQLite's bound on a statement's parameters). Between two
 * transactions the event loop is given back, so heartbeats are answered during a large write:
 * 1,000 nodes' resources in one transaction held the loop for about 9 ms here (22 ms with a
 * statement per row), and 10,000 for ten times that.
 */
const RESOURCES_CHUNK = 200
const LEARN_CHUNK = 500

/** A service to learn: the node that last reported it, and since when a saga of it must not have ended (clock millis). */
interface Noted {
  readonly node: string
  readonly settledSince: number
}

/**
 * A node's latest resources and heartbeat time, kept from one heartbeat to the next and written
 * over in place: a heartbeat copies its numbers into its node's slot rather than leaving its own
 * objects for the next write. What a heartbeat left lived up to a second, past V8's young
 * generation, so a master taking 2,000 heartbeats a second moved all of it to its old generation
 * and collected it there (NodeSupervisors' NodeRecord: the figures).
 */
interface Slot {
  readonly name: string
  readonly resources: { -readonly [K in keyof Node.Resources]: Node.Resources[K] }
  /** Clock millis of the heartbeat that brought them. */
  at: number
  /** Changed since the last write began: on the list of slots the next write takes. */
  dirty: boolean
}

/** A node's slot is let go once it has had no heartbeat for this long (a node removed, or gone for good). */
const SLOT_IDLE_MS = 10 * 60_000

/** The fields of Node.Resources, from its schema: what a slot holds and a heartbeat copies. */
const RESOURCE_FIELDS = Object.keys(Node.Resources.fields) as ReadonlyArray<keyof Node.Resources>

/** Copies the declared resources of `from` into `into` and returns it, keeping nothing of `from`. */
const copyResources = (into: Slot["resources"], from: Node.Resources): Slot["resources"] => {
  for (const field of RESOURCE_FIELDS) into[field] = from[field]
  return into
}

export class HeartbeatRecords extends Effect.Service<HeartbeatRecords>()("@mcp/master/HeartbeatRecords", {
  scoped: Effect.gen(function* () {
    const db = yield* MasterDb
    const slots = new Map<string, Slot>()
    let dirty: Array<Slot> = []
    let noted = new Map<string, Noted>()

    // A failed write is logged and counted; the next heartbeats of those nodes write them again.
    // In the order of the nodes' names, the key SQLite finds their rows by: a transaction then
    // rewrites neighbouring pages, not pages all over the table. 2,000 of 10,000 nodes took 12-15 µs
    // a row in name order against 26 µs in arrival order (better-sqlite3, WAL, chunks of 200).
    // A chunk's rows are read from the slots when its turn comes, a row's resources and time
    // together: a heartbeat that came meanwhile is written with it, and again with the next write.
    const writeResources = Effect.suspend(() => {
      if (dirty.length === 0) return Effect.void
      const batch = dirty.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      dirty = []
      for (const slot of batch) slot.dirty = false
      return inTurns(Arr.chunksOf(batch, RESOURCES_CHUNK), (chunk) => {
        const rows = chunk.map((slot) => ({ name: slot.name, resources: { ...slot.resources }, at: new Date(slot.at) }))
        return db.heartbeats(rows).pipe(Effect.catchAll((e) => Failures.reported(`writing ${chunk.length} nodes' heartbeats to the master database`, e)))
      })
    })

    // The slots of nodes silent for SLOT_IDLE_MS, let go once a minute: a scan of 10,000 slots is
    // well under a millisecond.
    const dropIdleSlots = Effect.map(Clock.currentTimeMillis, (now) => {
      for (const [name, slot] of slots) if (!slot.dirty && now - slot.at > SLOT_IDLE_MS) slots.delete(name)
    })
    yield* Effect.sleep("1 minute").pipe(Effect.zipRight(dropIdleSlots), Effect.forever, Effect.forkScoped)

    // A transaction per chunk of what was noted; a failed one is logged and counted, and what it
    // held is noted again by the next heartbeats that report it.
    const learn = Effect.suspend(() => {
      if (noted.size === 0) return Effect.void
      const batch = noted
      noted = new Map()
      // Per chunk, three statements whatever its size: which are placed, which have a saga that
      // decides, then the placements and their events. (A statement per service made learning
      // 10,000 nodes back hold the loop for a long time at each write: bench/heartbeats.ts.)
      const learnChunk = (chunk: ReadonlyArray<string>) =>
        Effect.gen(function* () {
          const placed = yield* db.placedAmong(chunk)
          const unplaced = chunk.filter((service) => !placed.has(service))
          const busy = yield* db.busyAmong(unplaced.map((service) => ({ service, since: new Date(batch.get(service)!.settledSince) })))
          const learned = unplaced.filter((service) => !busy.has(service)).map((service) => ({ service, node: batch.get(service)!.node }))
          const mark = yield* db.placeAll(learned)
          yield* db.addEvents(learned.map(({ node, service }) => ({ node, kind: "node" as const, service, message: `placement learned from ${node}'s heartbeat` })))
          return { mark, learned }
        })
      // Once committed, what was placed is known placed: the next heartbeats note none of it.
      return inTurns(Arr.chunksOf([...batch.keys()], LEARN_CHUNK), (chunk) =>
        db.withTransaction(learnChunk(chunk)).pipe(
          Effect.map(({ learned, mark }) => db.rememberPlaced(mark, learned.map((l) => l.service))),
          Effect.catchAll((e) => Failures.reported(`learning ${chunk.length} placements from heartbeats`, e))
        ))
    })

    const flush = Effect.zipRight(writeResources, learn)
    yield* Effect.sleep(FLUSH_INTERVAL).pipe(Effect.zipRight(flush), Effect.forever, Effect.forkScoped)
    // What came in the last second is written on the way out.
    yield* Effect.addFinalizer(() => flush)

    /** Keeps `node`'s latest resources, received at `at` (clock millis), for the next write (copied: see Slot). */
    const recordAt = (node: string, resources: Node.Resources, at: number): void => {
      const slot = slots.get(node)
      if (slot === undefined) {
        const made: Slot = { name: node, resources: copyResources({} as Slot["resources"], resources), at, dirty: true }
        slots.set(node, made)
        dirty.push(made)
        return
      }
      copyResources(slot.resources, resources)
      slot.at = at
      if (slot.dirty) return
      slot.dirty = true
      dirty.push(slot)
    }

    /**
     * Notes the services `node` reports that are not known placed, for the next write to learn
     * unless a saga of one is under way or ended after `settledSince` (clock millis). A service
     * already known placed costs a map lookup.
     */
    const noteServices = (node: string, services: ReadonlyArray<{ readonly service: string }>, settledSince: number): void => {
      for (const { service } of services) {
        if (!db.placedNow(service)) noted.set(service, { node, settledSince })
      }
    }

    return {
      recordAt,
      noteServices,
      /** Writes what is pending now (tests, and before reading what was written). */
      flush
    } as const
  })
}) {}
